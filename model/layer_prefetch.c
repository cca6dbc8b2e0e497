/* layer_prefetch.c: the next layer's tensors uploaded in the background (see layer_prefetch.h). */
#include "model/layer_prefetch.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "model/checkpoint_files.h"

#define ALIGN 256 /* each tensor's device copy starts on a boundary the widening kernels read well */

static bool prefetchable(const sq_st_tensor *t)
{
    return t->dtype == SQ_DTYPE_F32 || t->dtype == SQ_DTYPE_F16 || t->dtype == SQ_DTYPE_BF16;
}

/* The checkpoint's tensors of `layer` (names "model.layers.<layer>.*"): the first run of them in its
 * sorted list, which holds them all. */
static void layer_range(const sq_checkpoint *ckpt, int layer, int *first, int *count)
{
    *first = 0, *count = 0;
    for (int i = 0; i < sq_checkpoint_tensor_count(ckpt); i++) {
        int at = -1;
        bool in_layer = sq_checkpoint_layer_part(sq_checkpoint_tensor_at(ckpt, i)->name, &at) && at == layer;
        if (!in_layer && *count > 0)
            break;
        if (!in_layer)
            continue;
        if (*count == 0)
            *first = i;
        ++*count;
    }
}

static size_t padded(uint64_t bytes) { return (size_t)((bytes + ALIGN - 1) / ALIGN * ALIGN); }

sq_status sq_layer_prefetch_init(sq_layer_prefetch *p, const sq_checkpoint *ckpt, int num_layers)
{
    memset(p, 0, sizeof *p);
    p->ckpt = ckpt;
    p->layer = -1;
    if (!sq_checkpoint_is_mapped(ckpt))
        return SQ_OK;
    int most = 0;
    for (int layer = 0; layer < num_layers; layer++) {
        int first, count;
        size_t bytes = 0;
        layer_range(ckpt, layer, &first, &count);
        for (int i = first; i < first + count; i++)
            if (prefetchable(sq_checkpoint_tensor_at(ckpt, i)))
                bytes += padded(sq_checkpoint_tensor_at(ckpt, i)->nbytes);
        p->capacity = bytes > p->capacity ? bytes : p->capacity;
        most = count > most ? count : most;
    }
    p->offset = malloc((size_t)(most > 0 ? most : 1) * sizeof *p->offset);
    if (!p->offset)
        return sq_fail(SQ_ERR_NOMEM, "layer prefetch: out of memory");
    if (p->capacity > 0 && kn_alloc(&p->device, p->capacity) != SQ_OK) {
        sq_clear_error(); /* no room for it: layers load as before */
        p->device = NULL;
    }
    return SQ_OK;
}

static sq_status upload_task(void *arg)
{
    sq_layer_prefetch *p = arg;
    for (int k = 0; k < p->count; k++) {
        if (p->offset[k] == SIZE_MAX)
            continue;
        const sq_st_tensor *t = sq_checkpoint_tensor_at(p->ckpt, p->first + k);
        sq_tensor_bytes bytes;
        SQ_TRY(sq_checkpoint_tensor_bytes(p->ckpt, t->name, &bytes));
        sq_status st = kn_upload_beside((char *)p->device + p->offset[k], bytes.data, (size_t)t->nbytes);
        sq_tensor_bytes_release(&bytes);
        SQ_TRY(st);
    }
    return SQ_OK;
}

sq_status sq_layer_prefetch_start(sq_layer_prefetch *p, int layer)
{
    if (!p->device)
        return SQ_OK;
    if (p->in_flight)
        return sq_fail(SQ_ERR_ARG, "layer prefetch: layer %d is still in flight", p->layer);
    layer_range(p->ckpt, layer, &p->first, &p->count);
    size_t at = 0;
    for (int k = 0; k < p->count; k++) {
        const sq_st_tensor *t = sq_checkpoint_tensor_at(p->ckpt, p->first + k);
        p->offset[k] = prefetchable(t) ? at : SIZE_MAX;
        at += prefetchable(t) ? padded(t->nbytes) : 0;
    }
    p->layer = layer;
    SQ_TRY(sq_background_start(&p->task, upload_task, p));
    p->in_flight = true;
    return SQ_OK;
}

sq_status sq_layer_prefetch_wait(sq_layer_prefetch *p)
{
    if (!p->in_flight)
        return SQ_OK;
    p->in_flight = false;
    sq_status st = sq_background_wait(&p->task);
    if (st != SQ_OK)
        p->layer = -1;
    return st;
}

const void *sq_layer_prefetch_find(const sq_layer_prefetch *p, const char *name)
{
    if (!p || !p->device || p->layer < 0 || p->in_flight)
        return NULL;
    for (int k = 0; k < p->count; k++)
        if (p->offset[k] != SIZE_MAX && !strcmp(sq_checkpoint_tensor_at(p->ckpt, p->first + k)->name, name))
            return (const char *)p->device + p->offset[k];
    return NULL;
}

void sq_layer_prefetch_free(sq_layer_prefetch *p)
{
    if (p->in_flight) { /* joined; its outcome no longer matters and must not replace the caller's message */
        char kept[1024];
        snprintf(kept, sizeof kept, "%s", sq_last_error());
        if (sq_layer_prefetch_wait(p) != SQ_OK) {
            if (kept[0])
                (void)sq_fail(SQ_ERR_IO, "%s", kept);
            else
                sq_clear_error();
        }
    }
    kn_free(p->device);
    free(p->offset);
    memset(p, 0, sizeof *p);
    p->layer = -1;
}
