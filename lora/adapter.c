/* adapter.c: shaping, allocating and initialising a LoRA adapter (adapter.h). */
#include "lora/adapter.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "kernels/kernels.h"

static const char *const target_names[SQ_LINEAR_COUNT] = {"q_proj", "k_proj", "v_proj", "o_proj",
                                                          "gate_proj", "up_proj", "down_proj"};

int sq_lora_target_id(const char *name)
{
    for (int i = 0; i < SQ_LINEAR_COUNT; i++)
        if (!strcmp(name, target_names[i]))
            return i;
    return -1;
}

const char *sq_lora_target_name(sq_linear_id id) { return id >= 0 && id < SQ_LINEAR_COUNT ? target_names[id] : "?"; }

/* in/out features of linear `id` under `cfg`, as model/layer.c shapes them. */
static void linear_dims(const sq_model_config *cfg, sq_linear_id id, int *in, int *out)
{
    int hidden = cfg->hidden_size, q = cfg->num_heads * cfg->head_dim, kv = cfg->num_kv_heads * cfg->head_dim;
    int inter = cfg->intermediate_size;
    const int ins[SQ_LINEAR_COUNT] = {hidden, hidden, hidden, q, hidden, hidden, inter};
    const int outs[SQ_LINEAR_COUNT] = {q, kv, kv, hidden, inter, inter, hidden};
    *in = ins[id];
    *out = outs[id];
}

sq_status sq_lora_adapter_check(const sq_model_config *cfg, int r, char *const *names, int n_targets,
                                unsigned *targets)
{
    *targets = 0;
    if (r <= 0)
        return sq_fail(SQ_ERR_ARG, "lora: r %d must be positive", r);
    for (int i = 0; i < n_targets; i++) {
        int id = sq_lora_target_id(names[i]);
        if (id < 0)
            return sq_fail(SQ_ERR_ARG, "lora: target module \"%s\" is not a linear of a %s layer (q_proj, k_proj, "
                           "v_proj, o_proj, gate_proj, up_proj, down_proj)", names[i], cfg->architecture);
        int in, out;
        linear_dims(cfg, (sq_linear_id)id, &in, &out);
        if (r > in || r > out)
            return sq_fail(SQ_ERR_ARG, "lora: r %d is larger than %s's dimensions [%d, %d]", r, names[i], out, in);
        *targets |= 1u << id;
    }
    return *targets ? SQ_OK : sq_fail(SQ_ERR_ARG, "lora: no target modules");
}

sq_status sq_lora_adapter_create(sq_lora_adapter *a, const sq_model_config *cfg, int r, float alpha, float dropout,
                                 char *const *names, int n_targets)
{
    memset(a, 0, sizeof *a);
    if (!(alpha > 0) || !(dropout >= 0 && dropout < 1))
        return sq_fail(SQ_ERR_ARG, "lora: alpha %g must be positive and dropout %g in [0, 1)", alpha, dropout);
    SQ_TRY(sq_lora_adapter_check(cfg, r, names, n_targets, &a->targets));
    a->r = r;
    a->alpha = alpha;
    a->dropout = dropout;
    a->scale = alpha / (float)r;
    a->num_layers = cfg->num_layers;
    a->module_index = malloc(sizeof(int) * (size_t)cfg->num_layers * SQ_LINEAR_COUNT);
    a->modules = calloc((size_t)cfg->num_layers * SQ_LINEAR_COUNT, sizeof *a->modules);
    if (!a->module_index || !a->modules) {
        sq_lora_adapter_free(a);
        return sq_fail(SQ_ERR_NOMEM, "lora: cannot allocate the module table");
    }
    for (int l = 0; l < cfg->num_layers; l++) {
        for (int id = 0; id < SQ_LINEAR_COUNT; id++) {
            a->module_index[l * SQ_LINEAR_COUNT + id] = -1;
            if (!(a->targets & (1u << id)))
                continue;
            sq_lora_module *m = &a->modules[a->n_modules];
            m->layer = l;
            m->id = (sq_linear_id)id;
            linear_dims(cfg, m->id, &m->in_features, &m->out_features);
            m->a_offset = a->n_params;
            m->b_offset = m->a_offset + (size_t)r * m->in_features;
            a->n_params = m->b_offset + (size_t)m->out_features * r;
            a->module_index[l * SQ_LINEAR_COUNT + id] = a->n_modules++;
        }
    }
    sq_status st;
    SQ_TRY_GOTO(st, kn_alloc((void **)&a->params, a->n_params * sizeof(float)), fail);
    SQ_TRY_GOTO(st, kn_alloc((void **)&a->grads, a->n_params * sizeof(float)), fail);
    SQ_TRY_GOTO(st, kn_zero(a->params, a->n_params * sizeof(float)), fail);
    SQ_TRY_GOTO(st, kn_zero(a->grads, a->n_params * sizeof(float)), fail);
    return SQ_OK;
fail:
    sq_lora_adapter_free(a);
    return st;
}

void sq_lora_adapter_free(sq_lora_adapter *a)
{
    kn_free(a->params);
    kn_free(a->grads);
    free(a->modules);
    free(a->module_index);
    memset(a, 0, sizeof *a);
}

sq_status sq_lora_adapter_init(sq_lora_adapter *a, uint64_t seed)
{
    float *host = calloc(a->n_params, sizeof *host);
    if (!host)
        return sq_fail(SQ_ERR_NOMEM, "lora: cannot allocate %zu initial parameters", a->n_params);
    sq_rng rng;
    sq_rng_seed(&rng, seed);
    for (int i = 0; i < a->n_modules; i++) {
        const sq_lora_module *m = &a->modules[i];
        /* kaiming_uniform_(a=sqrt(5)): gain sqrt(2/(1+5)), bound gain*sqrt(3/fan_in) = 1/sqrt(fan_in) */
        double bound = 1.0 / sqrt((double)m->in_features);
        for (size_t j = 0; j < (size_t)a->r * m->in_features; j++) {
            double u = (double)(sq_rng_next(&rng) >> 11) * (1.0 / 9007199254740992.0);
            host[m->a_offset + j] = (float)((2.0 * u - 1.0) * bound);
        }
    }
    sq_status st = kn_upload(a->params, host, a->n_params * sizeof *host);
    free(host);
    return st;
}

const sq_lora_module *sq_lora_find(const sq_lora_adapter *a, int layer, sq_linear_id id)
{
    int i = a->module_index[layer * SQ_LINEAR_COUNT + id];
    return i < 0 ? NULL : &a->modules[i];
}
