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
    if (!p->linears || !p->held) {
        sq_packed_layers_free(p);
        return sq_fail(SQ_ERR_NOMEM, "packed layers: out of memory");
    }
    p->num_layers = num_layers;
    p->budget = budget;
    return SQ_OK;
}

void sq_packed_layers_free(sq_packed_layers *p)
{
    for (int k = 0; p->held && k < p->num_layers * SQ_LINEAR_COUNT; k++)
        if (p->held[k])
            sq_gptq_packed_free(&p->linears[k]);
    free(p->linears);
    free(p->held);
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
        if (p->held[k])
            continue;
        char name[160];
        snprintf(name, sizeof name, "model.layers.%d.%s", layer, sq_linear_name(i));
        sq_gptq_packed q;
        if (sq_gptq_pack(&results->linear[i], name, &q) != SQ_OK) {
            sq_clear_error();
            continue;
        }
        if (p->bytes + packed_bytes(&q) > p->budget) {
            sq_gptq_packed_free(&q);
            return;
        }
        p->bytes += packed_bytes(&q);
        p->linears[k] = q;
        p->held[k] = true;
    }
}

bool sq_packed_layers_take(sq_packed_layers *p, int layer, int linear, sq_gptq_packed *out)
{
    if (!p || layer < 0 || layer >= p->num_layers || linear < 0 || linear >= SQ_LINEAR_COUNT)
        return false;
    size_t k = (size_t)layer * SQ_LINEAR_COUNT + linear;
    if (!p->held[k])
        return false;
    *out = p->linears[k];
    p->bytes -= packed_bytes(out);
    p->held[k] = false;
    memset(&p->linears[k], 0, sizeof p->linears[k]);
    return true;
}
