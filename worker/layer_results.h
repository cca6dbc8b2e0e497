/* layer_results.h: the quantization results of one decoder layer's seven linears,
 * and everything that moves them: between ranks (broadcast, send, receive), into
 * and out of the layer artifact kept in the job's state, and back into the fp32
 * weights the next forward pass computes with.
 *
 * The weights used downstream are always rebuilt from the stored form
 * (W = fp16(scale) * (q - zero), as a GPTQ checkpoint is dequantized), both
 * right after a solve and when a resumed job replays a finished layer, so an
 * interrupted and resumed job computes exactly what an uninterrupted one does. */
#ifndef SQ_WORKER_LAYER_RESULTS_H
#define SQ_WORKER_LAYER_RESULTS_H

#include "core/status.h"
#include "model/config.h"
#include "model/layer.h"
#include "quant/quant_result.h"

typedef struct {
    sq_quant_result linear[SQ_LINEAR_COUNT];
} sq_layer_results;

void sq_layer_results_free(sq_layer_results *results);

/* One linear's result over MPI; receivers allocate it. */
sq_status sq_quant_result_bcast(sq_quant_result *res, int root, int my_rank);
sq_status sq_quant_result_send(const sq_quant_result *res, int dest);
sq_status sq_quant_result_recv(sq_quant_result *res, int source);
sq_status sq_layer_results_send(const sq_layer_results *results, int dest);
sq_status sq_layer_results_recv(sq_layer_results *results, int source);
sq_status sq_layer_results_bcast(sq_layer_results *results, int root, int my_rank);

/* Host W[rows, cols] = fp16(scale[r, g_idx[c]]) * (codes[r, c] - zero[r, g_idx[c]]). */
sq_status sq_quant_result_dequantize(const sq_quant_result *res, float *W);

/* Upload a linear's dequantized weights into its device buffer; and all seven of a layer. */
sq_status sq_quant_result_install(const sq_quant_result *res, sq_linear *linear);
sq_status sq_layer_results_install(const sq_layer_results *results, sq_layer_weights *weights);

/* The layer artifact: one safetensors file with, per linear
 * "model.layers.N.<linear>.codes" (U8 [rows, cols]), ".scales" and ".zeros" (F32 [rows, ngroups]),
 * ".g_idx" (I32 [cols]), and metadata {"bits", "group_size", "sym"}. Written atomically. */
sq_status sq_layer_results_write(const sq_layer_results *results, int layer, const char *path);
/* Read an artifact back, checking every shape against the model config. */
sq_status sq_layer_results_read(sq_layer_results *results, int layer, const char *path, const sq_model_config *cfg);

#endif
