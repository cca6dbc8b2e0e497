/* packed_layers.c: packed linears held from calibration to assembly (see packed_layers.h). */
#include "worker/packed_layers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

sq_status sq_packed_layers_init(sq_packed_layers *p, int num_layers, size_t budget)
{
    memset(p, 0, sizeof *p);
    size_t n = (size_t)(num_layers > 0 ? num_layers : 0) * SQ_LINEAR_COUNT;
    p->linears = calloc(n ? n : 1, sizeof *p->linears);
    p->held = calloc(n ? n : 1, sizeof *p->held);
    if (!p->linears || !p->held || pthread_mutex_init(&p->lock, NULL) != 0) {
        free(p->linears), free(p->held);
        memset(p, 0, sizeof *p);
        return sq_fail(SQ_ERR_NOMEM, "packed layers: out of memory");
    }
    if (pthread_cond_init(&p->changed, NULL) != 0) {
        pthread_mutex_destroy(&p->lock);
        free(p->linears), free(p->held);
        memset(p, 0, sizeof *p);
        return sq_fail(SQ_ERR_NOMEM, "packed layers: cannot create a condition variable");
    }
    p->num_layers = num_layers;
    p->budget = budget;
    return SQ_OK;
}

void sq_packed_layers_free(sq_packed_layers *p)
{
    if (!p->linears) /* never initialised, or freed already */
        return;
    for (int k = 0; k < p->num_layers * SQ_LINEAR_COUNT; k++)
        if (p->held[k])
            sq_gptq_packed_free(&p->linears[k]);
    free(p->linears);
    free(p->held);
    pthread_cond_destroy(&p->changed);
    pthread_mutex_destroy(&p->lock);
    memset(p, 0, sizeof *p);
}

static size_t packed_bytes(const sq_gptq_packed *q)
{
    return (size_t)q->in * q->bits / 32 * q->out * 4 + (size_t)q->ngroups * q->out * q->bits / 32 * 4 +
           (size_t)q->ngroups * q->out * 2 + (size_t)q->in * 4;
}

void sq_packed_layers_keep(sq_packed_layers *p, int layer, const sq_layer_results *results)
{
    if (layer < 0 || layer >= p->num_layers || results->form != SQ_LAYER_QUANTIZED)
        return;
    for (int i = 0; i < SQ_LINEAR_COUNT; i++) {
        size_t k = (size_t)layer * SQ_LINEAR_COUNT + i;
        char name[160];
        snprintf(name, sizeof name, "model.layers.%d.%s", layer, sq_linear_name(i));
        sq_gptq_packed q; /* packed outside the lock: the assembly may be waiting for another linear */
        if (sq_gptq_pack(&results->linear[i], name, &q) != SQ_OK) {
            sq_clear_error();
            continue;
        }
        pthread_mutex_lock(&p->lock);
        bool keep = !p->held[k] && !p->closed && p->bytes + packed_bytes(&q) <= p->budget;
        if (keep) {
            p->bytes += packed_bytes(&q);
            p->linears[k] = q;
            p->held[k] = true;
            pthread_cond_broadcast(&p->changed);
        }
        pthread_mutex_unlock(&p->lock);
        if (!keep)
            sq_gptq_packed_free(&q);
    }
}

/* Called with the lock held. */
static bool take_held(sq_packed_layers *p, size_t k, sq_gptq_packed *out)
{
    if (!p->held[k])
        return false;
    *out = p->linears[k];
    p->bytes -= packed_bytes(out);
    p->held[k] = false;
    memset(&p->linears[k], 0, sizeof p->linears[k]);
    return true;
}

bool sq_packed_layers_take(sq_packed_layers *p, int layer, int linear, sq_gptq_packed *out)
{
    if (!p || !p->linears || layer < 0 || layer >= p->num_layers || linear < 0 || linear >= SQ_LINEAR_COUNT)
        return false;
    pthread_mutex_lock(&p->lock);
    bool taken = take_held(p, (size_t)layer * SQ_LINEAR_COUNT + linear, out);
    pthread_mutex_unlock(&p->lock);
    return taken;
}

void sq_packed_layers_close(sq_packed_layers *p, sq_status outcome)
{
    if (!p->linears)
        return;
    pthread_mutex_lock(&p->lock);
    p->closed = true;
    p->outcome = outcome;
    pthread_cond_broadcast(&p->changed);
    pthread_mutex_unlock(&p->lock);
}

sq_status sq_packed_layers_wait_take(sq_packed_layers *p, int layer, int linear, sq_gptq_packed *out, bool *taken)
{
    *taken = false;
    if (!p || !p->linears || layer < 0 || layer >= p->num_layers || linear < 0 || linear >= SQ_LINEAR_COUNT)
        return SQ_OK;
    size_t k = (size_t)layer * SQ_LINEAR_COUNT + linear;
    pthread_mutex_lock(&p->lock);
    while (!(*taken = take_held(p, k, out)) && !p->closed)
        pthread_cond_wait(&p->changed, &p->lock);
    sq_status outcome = p->closed ? p->outcome : SQ_OK;
    pthread_mutex_unlock(&p->lock);
    if (!*taken && outcome != SQ_OK)
        return sq_fail(outcome, "layer %d: calibration ended before its results were kept", layer);
    return SQ_OK;
}
