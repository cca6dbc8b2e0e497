/* train_state.c: training checkpoints (train_state.h). */
#include "lora/train_state.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "core/safetensors.h"
#include "kernels/kernels.h"

static const char *const names[3] = {"params", "adam_m", "adam_v"};

sq_status sq_lora_state_write(const char *path, const sq_lora_adapter *a, const sq_lora_optimizer *o)
{
    const size_t n = a->n_params;
    float *host = malloc(3 * n * sizeof *host);
    if (!host)
        return sq_fail(SQ_ERR_NOMEM, "%s: cannot stage the training state", path);
    const float *dev[3] = {a->params, o->m, o->v};
    sq_status st = SQ_OK;
    sq_st_entry e[3];
    for (int i = 0; i < 3; i++) {
        if (st == SQ_OK)
            st = kn_download(host + i * n, dev[i], n * sizeof *host);
        e[i] = (sq_st_entry){.name = names[i], .dtype = SQ_DTYPE_F32, .ndim = 1, .shape = {(int64_t)n},
                             .data = host + i * n};
    }
    char step[32], count[32], r[32];
    snprintf(step, sizeof step, "%d", o->step);
    snprintf(count, sizeof count, "%zu", n);
    snprintf(r, sizeof r, "%d", a->r);
    json_t *meta = json_pack("{s:s, s:s, s:s}", "train_step", step, "n_params", count, "r", r);
    if (st == SQ_OK)
        st = meta ? sq_st_write(path, e, 3, meta) : sq_fail(SQ_ERR_NOMEM, "out of memory");
    json_decref(meta);
    free(host);
    return st;
}

sq_status sq_lora_state_read(const char *path, sq_lora_adapter *a, sq_lora_optimizer *o)
{
    sq_st_file f;
    SQ_TRY(sq_st_open(&f, path));
    float *dev[3] = {a->params, o->m, o->v};
    sq_status st = SQ_OK;
    for (int i = 0; st == SQ_OK && i < 3; i++) {
        const sq_st_tensor *t = NULL;
        for (int k = 0; k < f.header.n_tensors; k++)
            if (!strcmp(f.header.tensors[k].name, names[i]))
                t = &f.header.tensors[k];
        if (!t || t->dtype != SQ_DTYPE_F32 || t->ndim != 1 || (size_t)t->shape[0] != a->n_params)
            st = sq_fail(SQ_ERR_MISMATCH, "%s: tensor %s must be F32 [%zu] (this adapter's size)", path, names[i],
                         a->n_params);
        else
            st = kn_upload(dev[i], sq_st_data(&f, t), a->n_params * sizeof(float));
    }
    const char *step = json_string_value(json_object_get(f.header.metadata, "train_step"));
    char *end = NULL;
    long value = step ? strtol(step, &end, 10) : -1;
    if (st == SQ_OK && (!step || *end || value < 0 || value > 1000000000))
        st = sq_fail(SQ_ERR_FORMAT, "%s: metadata train_step missing or not a step count", path);
    if (st == SQ_OK)
        o->step = (int)value;
    sq_st_close(&f);
    return st;
}
