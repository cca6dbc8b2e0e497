/* base.h: the frozen base model of LoRA training — embedding, final norm and
 * LM head resident, decoder layers brought into one set of compute buffers
 * (model/layer.h's sq_layer_weights) one layer at a time.
 *
 * Base kinds:
 *  - NF4 (`base_quant: "nf4"`): every linear of a dense checkpoint is quantized
 *    once at open (lora/nf4.h) and kept in that 4-bit form in device memory;
 *    loading a layer dequantizes its linears into the compute buffers. A GPTQ
 *    checkpoint is refused here (it is already quantized: use "gptq").
 *  - GPTQ (`"gptq"`): every packed linear's codes (one byte each), scales,
 *    zero points and g_idx are read once at open (model/gptq_reader.h) and
 *    kept on the device; loading a layer dequantizes them there (kn_dequantize),
 *    the same fp32 values model/layer.c's host path gives, without reading the
 *    checkpoint again at every layer load (twice per layer per step with
 *    recomputation). A linear the checkpoint holds dense is read as stored.
 *    A 7B base takes 6.5 GB of codes plus 0.4 GB of fp32 scales and zeros at
 *    group 128. Requires a checkpoint with GPTQ-packed linears.
 *  - as stored (`"none"`: a dense checkpoint for tests and eval): the layer is
 *    read from the checkpoint as model/layer.c reads it. */
#ifndef SQ_LORA_BASE_H
#define SQ_LORA_BASE_H

#include <stdbool.h>

#include "core/status.h"
#include "lora/nf4.h"
#include "model/checkpoint.h"
#include "model/config.h"
#include "model/forward.h"

typedef enum { SQ_LORA_BASE_AS_STORED, SQ_LORA_BASE_GPTQ, SQ_LORA_BASE_NF4 } sq_lora_base_kind;

typedef struct {
    uint8_t *packed, *qabsmax; /* device */
    float *absmax2;            /* device */
    float offset;
    size_t n;
} sq_lora_nf4_linear;

typedef struct {
    uint8_t *codes;      /* device [out, in], NULL: the linear is stored dense */
    float *scale, *zero; /* device [out, ngroups] */
    int32_t *g_idx;      /* device [in] */
    int ngroups;
} sq_lora_gptq_linear;

typedef struct {
    sq_lora_base_kind kind;
    sq_model model;             /* embedding, final norm, LM head, model.layer = the resident layer */
    sq_lora_nf4_linear *nf4;    /* [num_layers * SQ_LINEAR_COUNT] for NF4 */
    sq_lora_gptq_linear *gptq;  /* [num_layers * SQ_LINEAR_COUNT] for GPTQ */
    float *code8;               /* device [256] */
    float *absmax;              /* device scratch for one linear's dequantized absmax */
} sq_lora_base;

/* "nf4" / "gptq" / "none" (as stored) -> kind; SQ_ERR_ARG otherwise. */
sq_status sq_lora_base_kind_parse(const char *name, sq_lora_base_kind *kind);

/* Open over `ckpt` (which must outlive the base). Refuses a base of the wrong kind
 * (SQ_ERR_UNSUPPORTED naming the checkpoint) before allocating the layers. */
sq_status sq_lora_base_open(sq_lora_base *b, const sq_model_config *cfg, const sq_checkpoint *ckpt,
                            sq_lora_base_kind kind);
void sq_lora_base_close(sq_lora_base *b);

/* Bring layer `layer` into b->model.layer (dequantizing an NF4 or GPTQ base on the device). */
sq_status sq_lora_base_load_layer(sq_lora_base *b, int layer);

/* The base's linear weight as the training sees it (host, fp32 [out, in]): for the merge. */
sq_status sq_lora_base_read_linear(sq_lora_base *b, int layer, sq_linear_id id, float *W);

#endif
