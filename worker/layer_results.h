/* layer_results.h: the results of one decoder layer's seven linears, and
 * everything that moves them: between ranks (broadcast, send, receive), into
 * and out of the layer artifact kept in the job's state, and back into the fp32
 * weights the next forward pass computes with.
 *
 * A layer's results take one of two forms:
 *  - quantized (gptq, rtn, sparsegpt with bits > 0): codes, scales, zeros, g_idx;
 *  - dense (sparsegpt with bits 0, wanda, magnitude): the pruned weights in the
 *    dtype the output checkpoint stores them in (the source tensor's dtype).
 *
 * A step that rescales the layer's RMSNorm weights (smoothquant folds its smoothing
 * into them) also carries the two norms, in the dtype the checkpoint stores them in.
 *
 * The weights used downstream are always rebuilt from the stored form
 * (W = fp16(scale) * (q - zero), as a GPTQ checkpoint is dequantized; or the
 * stored dense values widened to fp32), both right after a solve and when a
 * resumed job replays a finished layer, so an interrupted and resumed job
 * computes exactly what an uninterrupted one does. */
#ifndef SQ_WORKER_LAYER_RESULTS_H
#define SQ_WORKER_LAYER_RESULTS_H

#include "core/dtype.h"
#include "core/status.h"
#include "model/config.h"
#include "model/layer.h"
#include "quant/quant_result.h"

/* A pruned linear kept dense: host [rows, cols] in `dtype` (F32, F16, BF16 or F64). */
typedef struct {
    int rows, cols;
    sq_dtype dtype;
    void *data;
} sq_dense_weights;

typedef enum { SQ_LAYER_QUANTIZED, SQ_LAYER_DENSE } sq_layer_form;

/* The layer's two RMSNorm weights. */
typedef enum { SQ_NORM_INPUT, SQ_NORM_POST_ATTENTION, SQ_NORM_COUNT } sq_norm_id;
/* "input_layernorm", "post_attention_layernorm": the name inside a layer, as Hugging Face spells it. */
const char *sq_norm_name(sq_norm_id id);
/* The layer's other tensors an awq step changed by folding its scales in (host fp32, the
 * values the layer computes with): both norms, and v_proj's bias where the layer has one
 * (its rows are divided like v_proj's weight rows). hidden 0: nothing folded. */
typedef struct {
    int hidden, v_rows;        /* v_rows 0: no v bias */
    float *input_norm;         /* [hidden] input_layernorm.weight */
    float *post_attention_norm;/* [hidden] post_attention_layernorm.weight */
    float *v_bias;             /* [v_rows] self_attn.v_proj.bias, or NULL */
} sq_folded_tensors;

typedef struct {
    sq_layer_form form;                      /* which of the two arrays holds the results */
    sq_quant_result linear[SQ_LINEAR_COUNT]; /* SQ_LAYER_QUANTIZED */
    sq_dense_weights dense[SQ_LINEAR_COUNT]; /* SQ_LAYER_DENSE */
    sq_dense_weights norm[SQ_NORM_COUNT];    /* [1, hidden] rescaled norms (smoothquant); data NULL: unchanged */
    sq_folded_tensors folded;                /* awq only */
} sq_layer_results;

/* Copy the layer's norms and v bias (device) into results->folded (allocated here). */
sq_status sq_folded_tensors_capture(sq_folded_tensors *folded, const sq_layer_weights *weights, int hidden);
/* The folded tensor named "input_layernorm.weight", "post_attention_layernorm.weight" or
 * "self_attn.v_proj.bias" (the name inside a layer), or NULL with *n 0 when it is not held. */
const float *sq_folded_tensor(const sq_folded_tensors *folded, const char *name, int *n);

void sq_layer_results_free(sq_layer_results *results);

/* Store the device weights W [rows, cols] as dense results in `dtype` (rounded as the checkpoint will hold them). */
sq_status sq_dense_weights_from_device(sq_dense_weights *dense, const float *W, int rows, int cols, sq_dtype dtype);
void sq_dense_weights_free(sq_dense_weights *dense);

/* One linear's result over MPI; receivers allocate it. */
sq_status sq_quant_result_bcast(sq_quant_result *res, int root, int my_rank);
sq_status sq_quant_result_send(const sq_quant_result *res, int dest);
sq_status sq_quant_result_recv(sq_quant_result *res, int source);
sq_status sq_layer_results_send(const sq_layer_results *results, int dest);
sq_status sq_layer_results_recv(sq_layer_results *results, int source);
sq_status sq_layer_results_bcast(sq_layer_results *results, int root, int my_rank);
/* One linear of a layer's results, in the layer's form (`results->form` must agree on every rank). */
sq_status sq_layer_result_bcast_linear(sq_layer_results *results, int linear, int root, int my_rank);

/* is_zero[r*cols + c] = 1 where a linear's output weight is exactly 0 (what the output checkpoint
 * holds): a dense weight equal to 0, or a code at its grid's zero point (0 whatever the scale). */
sq_status sq_layer_result_zero_mask(const sq_layer_results *results, int linear, uint8_t *is_zero);
/* The number of those zeros. */
sq_status sq_layer_result_zeros(const sq_layer_results *results, int linear, int64_t *zeros);

/* Upload a linear's dequantized weights into its device buffer; one linear of a
 * layer's results in either form; and all seven of a layer (with its norms when it carries them,
 * and an awq layer's folded tensors). */
sq_status sq_quant_result_install(const sq_quant_result *res, sq_linear *linear);
sq_status sq_layer_result_install_linear(const sq_layer_results *results, int linear, sq_linear *weights);
sq_status sq_layer_results_install(const sq_layer_results *results, sq_layer_weights *weights);

/* The layer artifact: one safetensors file. Quantized: per linear
 * "model.layers.N.<linear>.codes" (U8 [rows, cols]), ".scales" and ".zeros" (F32 [rows, ngroups]),
 * ".g_idx" (I32 [cols]), and metadata {"bits", "group_size", "sym"}; rescaled norms as
 * "model.layers.N.<norm>.weight" ([hidden] in their dtype). Dense: per linear
 * "model.layers.N.<linear>.weight" ([rows, cols] in its dtype) and metadata {"form": "dense"}.
 * An awq layer adds "model.layers.N.input_layernorm.weight", ".post_attention_layernorm.weight"
 * and, where the layer has one, ".self_attn.v_proj.bias" (F32) and metadata {"folded": "true"}.
 * Written atomically; sha256_hex (NULL, or SQ_SHA256_HEX_LEN + 1 chars) receives the file's
 * SHA-256, computed while writing. */
sq_status sq_layer_results_write(const sq_layer_results *results, int layer, const char *path, char *sha256_hex);
/* Read an artifact back (either form), checking every shape and dtype against the model config. */
sq_status sq_layer_results_read(sq_layer_results *results, int layer, const char *path, const sq_model_config *cfg);

#endif
