/* adapter.h: the LoRA adapter of a model — a pair (A [r, in], B [out, r]) for
 * every targeted linear of every layer — and its gradients.
 *
 *   y = W x + (alpha / r) · B A dropout(x)
 *
 * A starts Kaiming-uniform with a = sqrt(5), as torch's nn.init.kaiming_uniform_
 * and so peft: U(-1/sqrt(in), 1/sqrt(in)); B starts at zero, so a fresh adapter
 * leaves the model unchanged. All parameters live in ONE device buffer (and the
 * gradients in another of the same layout), so the optimizer, the gradient norm,
 * the sum over ranks and the journal each handle one flat vector. Layout: layers
 * in order, in each the targeted linears in sq_linear_id order (q k v o gate up
 * down), for each A then B, row-major. */
#ifndef SQ_LORA_ADAPTER_H
#define SQ_LORA_ADAPTER_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "model/config.h"
#include "model/layer.h"

typedef struct {
    int layer;
    sq_linear_id id;
    int in_features, out_features;
    size_t a_offset, b_offset; /* floats into params / grads */
} sq_lora_module;

typedef struct {
    int r;
    float alpha, dropout, scale; /* scale = alpha / r */
    unsigned targets;            /* bit sq_linear_id set for each targeted linear */
    int num_layers;
    int n_modules;
    sq_lora_module *modules; /* host */
    int *module_index;       /* host [num_layers * SQ_LINEAR_COUNT]: index into modules, -1 when not targeted */
    size_t n_params;
    float *params; /* device [n_params] */
    float *grads;  /* device [n_params] */
} sq_lora_adapter;

/* "q_proj" ... "down_proj" (the name peft's target_modules uses) -> id; -1 if unknown. */
int sq_lora_target_id(const char *name);
/* "q_proj" etc. for an id. */
const char *sq_lora_target_name(sq_linear_id id);

/* The refusals of sq_lora_adapter_create alone, without allocating: an unknown target name, an r
 * larger than a targeted linear's smaller dimension. */
sq_status sq_lora_adapter_check(const sq_model_config *cfg, int r, char *const *target_names, int n_targets,
                                unsigned *targets);

/* Shape the adapter for `cfg` and allocate it (params and grads zero). Refuses (SQ_ERR_ARG)
 * an unknown target name and an r larger than a targeted linear's smaller dimension. */
sq_status sq_lora_adapter_create(sq_lora_adapter *a, const sq_model_config *cfg, int r, float alpha, float dropout,
                                 char *const *target_names, int n_targets);
void sq_lora_adapter_free(sq_lora_adapter *a);

/* peft's initialisation: every A Kaiming-uniform (a = sqrt(5)) from a splitmix64 stream
 * seeded with `seed`, in layout order; every B zero. */
sq_status sq_lora_adapter_init(sq_lora_adapter *a, uint64_t seed);

/* The module of (layer, id), or NULL when that linear carries no adapter. */
const sq_lora_module *sq_lora_find(const sq_lora_adapter *a, int layer, sq_linear_id id);

#endif
