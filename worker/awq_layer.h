/* awq_layer.h: the awq step's work on one decoder layer, before its linears are
 * quantized: a scale search per group of linears that read one input, the
 * scales folded into the layer, then the clipping search.
 *
 *   group       its linears      1/s folded into                      its Hessian
 *   attention   q, k, v          input_layernorm.weight               q,k,v input
 *   attn out    o                v_proj's rows (and bias), per kv head o input
 *   mlp         gate, up         post_attention_layernorm.weight      gate,up input
 *   mlp out     down             up_proj's rows                       down input
 *
 * Every search runs on the layer's unchanged weights; then every fold is
 * applied, in the table's order (so v_proj is scaled by columns, then rows; up_proj
 * likewise). The o group is exact under grouped-query attention: o's input column
 * (head h, dim d) is v_proj's output row (kv head h / (heads/kv_heads), d), so the
 * scales are tied per kv head — o's mean |x| is averaged over the heads of each kv
 * group (in head order, in double) before the search. Each input's Hessian
 * becomes diag(1/s) H diag(1/s), the Hessian of the scaled input, for the clipping
 * search and for GPTQ. Clipping (awq.h) skips q and k, whose errors pass through
 * the softmax, as AutoAWQ does. */
#ifndef SQ_WORKER_AWQ_LAYER_H
#define SQ_WORKER_AWQ_LAYER_H

#include <stdbool.h>

#include "core/status.h"
#include "model/config.h"
#include "model/layer.h"
#include "quant/awq.h"
#include "worker/layer_results.h"

enum { SQ_AWQ_ATTN, SQ_AWQ_ATTN_OUT, SQ_AWQ_MLP, SQ_AWQ_MLP_OUT, SQ_AWQ_GROUPS };

/* The statistics of the layer's four inputs, in the table's order. */
typedef struct {
    float *H[SQ_AWQ_GROUPS];          /* device Hessians, transformed in place */
    const float *mean[SQ_AWQ_GROUPS]; /* host mean |x| */
} sq_awq_layer_stats;

/* Search, fold and clip layer `layer`'s weights w in place and record its folded
 * tensors; `log`: one progress line per group (rank 0). */
sq_status sq_awq_layer(sq_layer_weights *w, const sq_model_config *cfg, sq_awq_layer_stats *stats,
                       const sq_awq_options *awq, const sq_quant_options *q, int layer, bool log,
                       sq_folded_tensors *folded);

#endif
