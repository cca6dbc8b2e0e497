/* smoothquant.h: SmoothQuant (Xiao et al. 2023) — migrate the quantization
 * difficulty of activation outliers into the weights before W8A8 quantization.
 *
 * For a norm and the linears that read its output (input_layernorm -> q, k, v;
 * post_attention_layernorm -> gate, up), per input channel j:
 *   a_j = max |X_j| over every calibration token (the norm's output),
 *   w_j = max |W_ij| over the rows of all those linears (clamped below at 1e-5),
 *   s_j = max(a_j^alpha / w_j^(1 - alpha), 1e-5)        (as the reference smooth.py)
 * then norm_j := norm_j / s_j (rounded to the dtype the checkpoint stores it in)
 * and W_ij := W_ij * s_j, which leaves the layer's function unchanged up to that
 * rounding while shrinking the activations' outlier channels. o_proj and
 * down_proj are left unsmoothed (down's input is silu(gate)·up: a smoothing of up's
 * output rows would be exact, but SmoothQuant and llm-compressor's Llama mappings
 * smooth only the two norms). Every linear is then quantized round-to-nearest
 * per output channel, symmetric (8 bits by default); activations are quantized at
 * run time per token (act_bits, dynamic, symmetric), which `shardq eval
 * --act-bits` simulates. */
#ifndef SQ_QUANT_SMOOTHQUANT_H
#define SQ_QUANT_SMOOTHQUANT_H

#include "core/dtype.h"
#include "core/status.h"

/* smoothquant's own options; its weight quantization is an sq_quant_options (bits, per
 * channel, symmetric). Defaults: alpha 0.5, act_bits 8. */
typedef struct {
    double alpha;  /* migration strength in [0, 1] */
    int act_bits;  /* the run-time activation bits the output declares (4 or 8) */
} sq_smooth_options;

#define SQ_SMOOTH_MIN 1e-5

/* s[j] from the ranges: act_max and weight_max are host arrays of n (see above). */
void sq_smooth_scales(const float *act_max, const float *weight_max, int n, double alpha, float *s);

/* Fold the smoothing of one norm into it and into the `count` linears that read it:
 * act_max (host [n]) is the range of the norm's output; norm (host [n], as stored in
 * `dtype`) is replaced by norm / s rounded to `dtype`; each device weight W[k]
 * ([rows[k], n]) has its columns multiplied by s; s (host [n]) receives the scales. */
sq_status sq_smooth_fold(const float *act_max, double alpha, float *norm, sq_dtype dtype, float *const *W,
                         const int *rows, int count, int n, float *s);

#endif
