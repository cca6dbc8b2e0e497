/* kernels.h: the compute interface. Everything above kernels/ calls these
 * functions and never knows which backend runs them.
 *
 * Two backends implement it: kernels/cpu (plain C + OpenBLAS/LAPACKE, the
 * readable reference) and kernels/cuda (CUDA kernels, cuBLAS, cuSOLVER). The
 * build links exactly one of them.
 *
 * Conventions
 *  - "Device" buffers come from kn_alloc and live in the backend's memory (host
 *    memory on the CPU backend, GPU memory on CUDA). Pointers marked `host`
 *    are ordinary host memory.
 *  - Activations and weights are fp32 and row-major. A linear layer's weight is
 *    stored as Hugging Face does, [out_features, in_features], and computes
 *    y = x Wᵀ (+ b).
 *  - A sequence batch of `batch` sequences of `seq` tokens is laid out as
 *    [batch * seq, width] rows.
 *  - Every function returns SQ_OK or a status with a message (sq_last_error). */
#ifndef SQ_KERNELS_H
#define SQ_KERNELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/dtype.h"
#include "core/status.h"
#include "kernels/kv_cache_grid.h" /* kn_kv_format */

/* ---- backend and memory ------------------------------------------------ */

/* Select the device for this process (GPU = local_rank % device count) and
 * create handles. Call once before anything else. */
sq_status kn_init(int local_rank);
void kn_shutdown(void);
/* "cpu" or "cuda". */
const char *kn_backend_name(void);
/* One line describing the device ("cpu (2 threads, OpenBLAS)", "NVIDIA H100 80GB HBM3"). */
const char *kn_device_description(void);

sq_status kn_alloc(void **dev, size_t bytes);
void kn_free(void *dev);
sq_status kn_upload(void *dev_dst, const void *host_src, size_t bytes);
sq_status kn_download(void *host_dst, const void *dev_src, size_t bytes);
sq_status kn_copy(void *dev_dst, const void *dev_src, size_t bytes);
sq_status kn_synchronize(void);

/* Upload stored weights (host bytes of an F32/F16/BF16 tensor) as fp32 into `dev_dst`. */
sq_status kn_upload_as_f32(float *dev_dst, const void *host_src, sq_dtype dtype, size_t n);
/* The same from a device copy of the stored bytes (kn_upload_beside): widened on the device. */
sq_status kn_widen_to_f32(float *dev_dst, const void *dev_src, sq_dtype dtype, size_t n);

/* An upload that neither waits for nor holds up the work already queued (a stream of its own on
 * CUDA), for a thread that prefetches while another computes (model/layer_prefetch.h). It returns
 * once the bytes are on the device; the caller makes sure nothing queued still reads dev_dst. */
sq_status kn_upload_beside(void *dev_dst, const void *host_src, size_t bytes);

/* x[i] = value. */
sq_status kn_fill(float *x, float value, size_t n);
/* Set `bytes` bytes of device memory to zero (any element type). */
sq_status kn_zero(void *dev, size_t bytes);

/* ---- dense linear algebra ---------------------------------------------- */

/* C[m,n] = alpha * op(A) op(B) + beta * C, row-major with leading dimensions. */
sq_status kn_gemm(bool transpose_a, bool transpose_b, int m, int n, int k, float alpha,
                  const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc);

/* out[rows, out_features] = x[rows, in_features] Wᵀ + bias (bias may be NULL). */
sq_status kn_linear(float *out, const float *x, const float *weight, const float *bias, int rows,
                    int in_features, int out_features);

/* kn_linear on each of `blocks` consecutive blocks of `rows` rows of x, into the same blocks of
 * out: the same bits as `blocks` separate kn_linear calls (each block is its own product, of
 * the same shape and operand alignment), with the weight converted for the tensor cores once
 * for them all rather than once per call. */
sq_status kn_linear_per_block(float *out, const float *x, const float *weight, const float *bias, int blocks,
                              int rows, int in_features, int out_features);

/* A LoRA linear without dropout, as one call: u[rows, r] = x Aᵀ (written: the backward
 * needs it) and out[rows, out_features] = x Wᵀ + bias + scale · u Bᵀ, for A [r, in_features]
 * and B [out_features, r] (bias may be NULL). The CUDA backend converts x once for both
 * products and adds the low-rank term inside the base product, [x | u] · [W | scale·B]ᵀ,
 * instead of reading and writing out a second time (fp16 operands, as kn_linear). */
sq_status kn_linear_lora(float *out, float *u, const float *x, const float *weight, const float *bias,
                         const float *A, const float *B, float scale, int rows, int in_features, int out_features,
                         int r);

/* ---- transformer layer pieces ------------------------------------------ */

/* out[r] = x[r] / sqrt(mean(x[r]²) + eps) * weight, for each of `rows` rows of `dim`. */
sq_status kn_rmsnorm(float *out, const float *x, const float *weight, int rows, int dim, float eps);

/* Rotary embedding in place, Hugging Face "rotate half" convention, on
 * x[batch*seq, heads*head_dim]; token t of each sequence has position pos0 + t.
 * inv_freq (device) holds head_dim/2 frequencies (scaling already applied). */
sq_status kn_rope(float *x, const float *inv_freq, int batch, int seq, int heads, int head_dim, int pos0);

/* Causal attention with grouped-query heads: q [batch*seq, n_heads*head_dim],
 * k and v [batch*seq, n_kv_heads*head_dim]; head h reads kv head h / (n_heads/n_kv_heads).
 * out [batch*seq, n_heads*head_dim]. Scale 1/sqrt(head_dim).
 * lse2: NULL, or [batch][n_heads][seq] to receive each query row's log-sum-exp in base 2,
 * log2 Σ_s≤t exp(scale q_t·k_s), which kn_attention_backward can take with out instead of
 * recomputing the forward. */
sq_status kn_attention(float *out, float *lse2, const float *q, const float *k, const float *v, int batch, int seq,
                       int n_heads, int n_kv_heads, int head_dim);

/* out = silu(gate) * up, elementwise over n. */
sq_status kn_swiglu(float *out, const float *gate, const float *up, size_t n);

/* out += x, elementwise over n. */
sq_status kn_add_inplace(float *out, const float *x, size_t n);

/* out[i] = table[ids[i]] (rows of dim); ids (device int32) must be < vocab. */
sq_status kn_embedding(float *out, const float *table, const int32_t *ids, int n, int dim, int vocab);

/* Per-row negative log-likelihood: nll[r] = logsumexp(logits[r]) - logits[r][targets[r]]. */
sq_status kn_cross_entropy(float *nll, const float *logits, const int32_t *targets, int rows, int vocab);

/* Fake-quantize in place along rows of `dim` (per-row asymmetric min/max, `bits`):
 * used to simulate a quantized KV cache. */
sq_status kn_fake_quantize_rows(float *x, int rows, int dim, int bits);

/* Per-token symmetric fake quantization in place (the dynamic int activations of a W8A8
 * model, simulated): each row of `dim` gets scale = max|x| / qmax, qmax = 2^(bits-1) - 1,
 * and x := scale * clamp(round_half_even(x / scale), -qmax - 1, qmax); a zero row stays.
 * bits 2..16. */
sq_status kn_fake_quantize_tokens(float *x, int rows, int dim, int bits);
/* A quantized KV cache with static scales (kernels/kv_cache_grid.h has the exact
 * arithmetic): x [rows, heads*head_dim] in place, head h divided by scales[h]
 * (device [heads]), rounded onto the grid, multiplied back. KN_KV_INT8: round half
 * to even, clamped to [-128, 127]. KN_KV_FP8: fp8 e4m3 (e4m3fn: 4 exponent bits,
 * bias 7, 3 mantissa bits, no infinities), round to nearest even, saturating at ±448. */
sq_status kn_kv_quantize_static(float *x, const float *scales, int rows, int heads, int head_dim,
                                kn_kv_format format);

/* absmax (device [heads]) := max(absmax[h], max over rows and d of |x[r, h*head_dim + d]|):
 * the calibration of static KV scales (a max: the same bits in any order). */
sq_status kn_kv_head_absmax(float *absmax, const float *x, int rows, int heads, int head_dim);

/* KIVI's keys: x [batch*seq, channels] fake-quantized per channel over blocks of
 * `group` consecutive tokens of each sequence (asymmetric min/max grid of `bits`, the
 * arithmetic of kn_fake_quantize_rows); the last seq % group tokens of each sequence,
 * an unfinished block, are left in full precision as KIVI keeps them. */
sq_status kn_kv_quantize_channel_groups(float *x, int batch, int seq, int channels, int group, int bits);

/* ---- calibration: Hessians and solves ---------------------------------- */

/* H[cols,cols] = beta * H + alpha * Xᵀ X for X[rows, cols] (full, exactly symmetric result).
 * The CUDA backend computes it on the tensor cores from X rounded to fp16 (fp32 sums). */
sq_status kn_hessian_accumulate(float *H, const float *X, int rows, int cols, float alpha, float beta);
/* H's upper triangle (row-major, i <= j) := Xᵀ X, the values kn_hessian_accumulate gives with
 * alpha 1 and beta 0; the strict lower triangle is left as the product wrote it (not mirrored),
 * for sums that read only the upper triangle and mirror once at the end (quant/hessian.c). */
sq_status kn_hessian_upper(float *H, const float *X, int rows, int cols);

/* Exact sums of fp32 values whose result does not depend on the order of the
 * additions, so not on how samples were split over ranks or batches
 * (kernels/fixed_sum.h): acc holds KN_FIXED_LANES lanes of n int64, lane-major
 * ([lane * n + i]), zeroed with kn_zero; acc += x[c * stride + i] for the `count` arrays
 * c = 0 .. count-1 (one pass over acc for all of them; the same integers as count calls).
 * Adding the lanes of several accumulators (an int64 all-reduce) gives the accumulator
 * of all their addends. */
sq_status kn_fixed_accumulate(int64_t *acc, const float *x, size_t n, int count, size_t stride);
/* out[i] = (float)(scale * sum i). SQ_ERR_NUMERIC when an addend of some entry
 * was not finite or beyond ±2^47. */
sq_status kn_fixed_to_f32(float *out, const int64_t *acc, double scale, size_t n);
/* The two above over the upper triangle (i <= j) of row-major cols x cols matrices (n = cols²):
 * kn_fixed_accumulate_upper neither reads nor writes the other entries' lanes, and
 * kn_fixed_to_f32_symmetric writes each upper sum to [i, j] and [j, i]. Half the memory traffic
 * of the full calls for a symmetric sum, and the same floats as summing mirrored matrices. */
sq_status kn_fixed_accumulate_upper(int64_t *acc, const float *x, int cols, int count, size_t stride);
sq_status kn_fixed_to_f32_symmetric(float *out, const int64_t *acc, double scale, int cols);

/* Sum of squares of each column: norms[c] = beta*norms[c] + Σ_r X[r,c]² (Wanda's ‖x‖²);
 * with beta 0, as in BLAS, norms is only written (its old contents may be anything). */
sq_status kn_column_sq_norms(float *norms, const float *X, int rows, int cols, float beta);

/* Diagonal of A[n,n] into diag (device). */
sq_status kn_diagonal(float *diag, const float *A, int n);

/* SmoothQuant's ranges and folding: colmax[c] = max(colmax[c], max_r |X[r,c]|) for X[rows, cols]
 * (a running maximum: start from zeros; exact in any order, so independent of how rows are split);
 * and W[r, c] *= s[c] for W[rows, cols]. */
sq_status kn_column_abs_max(float *colmax, const float *X, int rows, int cols);
sq_status kn_scale_columns(float *W, const float *s, int rows, int cols);

/* Prepare a Hessian for GPTQ/SparseGPT as the reference does: columns whose H_ii
 * is 0 are dead (H_ii := 1, W[:, i] := 0); then H_ii += damp for every i.
 * W is [rows, n]. */
sq_status kn_hessian_prepare(float *H, float *W, int rows, int n, float damp);

/* B[i][j] = A[perm[i]][perm[j]] (symmetric permutation, n×n); perm is device int32. */
sq_status kn_permute_symmetric(float *B, const float *A, const int32_t *perm, int n);
/* B[r][j] = A[r][perm[j]] for A[rows, n]. */
sq_status kn_permute_columns(float *B, const float *A, const int32_t *perm, int rows, int n);
/* Inverse: B[r][perm[j]] = A[r][j]. */
sq_status kn_unpermute_columns(float *B, const float *A, const int32_t *perm, int rows, int n);

/* A[n,n] symmetric positive definite := A⁻¹ (via Cholesky). SQ_ERR_NUMERIC if not PD. */
sq_status kn_spd_inverse(float *A, int n);
/* A[n,n] symmetric positive definite := U, upper Cholesky factor (A = Uᵀ U), lower part zeroed. */
sq_status kn_cholesky_upper(float *A, int n);
/* A[n,n] symmetric positive definite := the upper Cholesky factor of A⁻¹ (GPTQ's Hinv):
 * what kn_spd_inverse then kn_cholesky_upper give, up to rounding. SQ_ERR_NUMERIC if not PD. */
sq_status kn_inverse_cholesky_upper(float *A, int n);

/* ---- quantization grids and the GPTQ inner loop ------------------------- */

/* Quantization grid of one group, per output row r over columns [col0, col0+ncols)
 * of W[rows, ld]: xmin = min(0, min x), xmax = max(0, max x); sym: xmax = max(|xmin|, xmax),
 * xmin = -xmax (when xmin < 0); both 0 -> [-1, 1]; scale = (xmax - xmin) / maxq;
 * zero = sym ? (maxq + 1) / 2 : round(-xmin / scale). Writes scale[r*ldg + g], zero[r*ldg + g]. */
sq_status kn_quant_grid(float *scale, float *zero, int ldg, int g, const float *W, int rows, int ld,
                        int col0, int ncols, int bits, bool sym);

/* Round-to-nearest onto a grid: for every element of W[rows, n] in column c,
 * q = clamp(round(w / s) + z, 0, maxq) with s, z = scale/zero[r*ldg + group_of_column[c]];
 * codes[r*n + c] = q; W := s * (q - z) (dequantized in place). */
sq_status kn_quantize_rtn(float *W, uint8_t *codes, const float *scale, const float *zero, int ldg,
                          const int32_t *group_of_column, int rows, int n, int bits);

/* A quantized linear rebuilt from its stored form: for W[rows, n],
 * W[r, c] = s * (codes[r*n + c] - z) with s, z = scale/zero[r*ldg + group_of_column[c]]
 * (the caller passes the scales as the checkpoint stores them, e.g. rounded to fp16). */
sq_status kn_dequantize(float *W, const uint8_t *codes, const float *scale, const float *zero, int ldg,
                        const int32_t *group_of_column, int rows, int n);

/* One GPTQ block (columns [col0, col0+ncols) of W[rows, n], in the solve's column
 * order) with the upper Cholesky factor Hinv[n, n] of H⁻¹. For each column j in the
 * block, in order:
 *   if compute_groups and group_size > 0 and j % group_size == 0:
 *       kn_quant_grid for group j/group_size from columns [j, min(j+group_size, n)) of
 *       W_start (W as it was when this block started, i.e. with earlier blocks'
 *       lazy updates but not this block's); the last group is shorter where
 *       group_size does not divide n
 *   quantize column j with the grid of group group_of_column[j] -> codes, dequantized q;
 *       where masked[r*n + j] is nonzero, 0 is quantized instead of w (code = the zero
 *       point, q = 0 exactly), as kn_sparsegpt_block does for a pruned entry
 *   err = (w - q) / Hinv[j][j];  W[:, j+1 .. block end) -= err * Hinv[j][j+1 ..]
 *   Err[r*ncols + (j - col0)] = err; W[:, j] := q
 * The caller then applies the lazy update W[:, end:] -= Err · Hinv[block, end:] with kn_gemm.
 * scale/zero are [rows, ldg]; codes and masked are [rows, n]; masked NULL masks nothing
 * (the grids never depend on the mask). */
sq_status kn_gptq_block(float *W, uint8_t *codes, float *Err, const float *Hinv, float *scale, float *zero,
                        int ldg, const int32_t *group_of_column, bool compute_groups, int group_size,
                        int rows, int n, int col0, int ncols, int bits, bool sym, const uint8_t *masked);

/* ---- pruning (SparseGPT, Wanda, magnitude) ------------------------------ */

/* Prune the lowest scores of each row of W[rows, n] in place: the columns form groups of
 * `group` consecutive columns (n a multiple of group), and in every (row, group) the
 * `count` entries of lowest score |W[r,c]| · col_scale[c] (col_scale NULL: |W[r,c]|) are
 * set to 0.0f; equal scores go to the lower column first. Unstructured: group = n; N:M:
 * group = M, count = N. */
sq_status kn_prune_lowest(float *W, const float *col_scale, int rows, int n, int group, int count);

/* mask[i] = 1 where x[i] is zero (+0 or -0), else 0: the sparsity mask GPTQ keeps. */
sq_status kn_mark_zeros(uint8_t *mask, const float *x, size_t n);

/* One SparseGPT block: kn_gptq_block (same arguments and steps) with pruning. The block's
 * columns form groups of prune_group consecutive columns (ncols a multiple of prune_group);
 * when the walk reaches a group's first column, in each row the prune_count columns of the
 * group with the lowest score w²/Hinv_cc² (w as W is at that moment; equal scores: the lower
 * column first) are marked pruned. Each column j is then replaced by q = 0 where pruned,
 * else w; with bits > 0, q is then rounded onto its grid (a pruned entry gets the zero
 * point as its code and dequantizes to exactly 0). bits 0 means no quantization: codes,
 * scale, zero and group_of_column are not used and may be NULL. err = (w - q)/Hinv_jj is
 * spread over the block's later columns and written to Err as in kn_gptq_block.
 * Unstructured: prune_group = ncols; N:M: prune_group = M, prune_count = N. */
sq_status kn_sparsegpt_block(float *W, uint8_t *codes, float *Err, const float *Hinv, float *scale, float *zero,
                             int ldg, const int32_t *group_of_column, bool compute_groups, int group_size,
                             int rows, int n, int col0, int ncols, int bits, bool sym, int prune_group,
                             int prune_count);

/* ---- AWQ: activation-aware scales and the weight-clipping search ------ */

/* sums[c] = Σ_r |X[r, c]| for X[rows, cols], the rows added in order in fp32 (one
 * sequence's share of AWQ's mean |x| per input channel). */
sq_status kn_column_abs_sums(float *sums, const float *X, int rows, int cols);
/* W[r, c] = (W[r, c] · row_scale[r]) · col_scale[c] for W[rows, cols]; a NULL scale is 1
 * (and its multiply is skipped). Folds AWQ's scales into weights, norms and Hessians. */
sq_status kn_scale_rows_columns(float *W, const float *row_scale, const float *col_scale, int rows, int cols);
/* out[r * ngroups + g] = Σ_{c in group g} A[r, c] · B[r, c], for A, B [rows, cols] and groups of
 * group_size consecutive columns (the last one shorter where group_size does not divide cols;
 * ngroups = ceil(cols / group_size)); each sum runs in column order in double. With B = A·H
 * (H a Hessian block) it is the output error Σ_x (a_g · x_g)² of each row and group. */
sq_status kn_group_row_dots(double *out, const float *A, const float *B, int rows, int cols, int group_size);
/* W[r, c] := min(max(W[r, c], -limit[r * ngroups + g]), limit[r * ngroups + g]) for c in group g
 * (groups as kn_group_row_dots). */
sq_status kn_clamp_groups(float *W, const float *limit, int rows, int cols, int group_size);

/* ---- training: backward passes, chunked loss, optimizer ---------------
 * LoRA training (lora/) runs these over device buffers; frozen weights (norms,
 * base linears, embedding, LM head) get no gradient, so none is formed. Each
 * backward kernel names the forward line it inverts; `d` prefixes a gradient
 * of the loss. Backward kernels ACCUMULATE into their outputs (dx += ...) where
 * the comment says +=, so that gradients reaching one tensor by several paths
 * (the residual stream, q/k/v sharing one input) add up without extra copies. */

/* Forward: y = x * inv * w, inv = 1/sqrt(mean(x²) + eps), per row of dim.
 * dx_j += inv * w_j * dy_j - x_j * inv³ / dim * Σ_i x_i w_i dy_i. */
sq_status kn_rmsnorm_backward(float *dx, const float *dy, const float *x, const float *weight, int rows, int dim,
                              float eps);

/* Forward (kn_rope): (y1, y2) = (x1 c - x2 s, x2 c + x1 s). The rotation is orthogonal, so
 * dx = Rᵀ dy: (dx1, dx2) = (dy1 c + dy2 s, dy2 c - dy1 s), in place on d (same shapes as kn_rope). */
sq_status kn_rope_backward(float *d, const float *inv_freq, int batch, int seq, int heads, int head_dim, int pos0);

/* Forward (kn_attention): p_ts = softmax_s≤t(scale q_t·k_s), o_t = Σ_s p_ts v_s. The
 * probabilities are recomputed here, then
 *   dv_s += p_ts do_t;   dp_ts = do_t·v_s;   dz_ts = p_ts (dp_ts - do_t·o_t)
 *   dq_t = scale Σ_s dz_ts k_s;   dk_s += scale dz_ts q_t
 * dq is written; dk, dv are written too (zeroed first), with the heads of one
 * kv group summed into their kv head in head order. Shapes as kn_attention.
 * out and lse2: both NULL, or the output and lse2 of kn_attention on these q, k, v. The CUDA
 * flash kernels then read each row's statistics instead of recomputing the forward for
 * them (the same bits either way); the other paths recompute regardless. */
sq_status kn_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *out,
                                const float *lse2, const float *q, const float *k, const float *v, int batch, int seq,
                                int n_heads, int n_kv_heads, int head_dim);

/* Forward (kn_swiglu): y = silu(g) u, silu(g) = g σ(g).
 * dg = dy u σ(g) (1 + g (1 - σ(g)));  du = dy silu(g). Written, not accumulated. */
sq_status kn_swiglu_backward(float *dgate, float *dup, const float *dy, const float *gate, const float *up,
                             size_t n);

/* Forward (kn_linear): y[rows,out] = x[rows,in] Wᵀ.
 * dx (+)= dy W (accumulate_dx chooses += or =; dx NULL skips it);
 * dweight += dyᵀ x (NULL skips it: a frozen weight). */
sq_status kn_linear_backward(float *dx, float *dweight, const float *dy, const float *x, const float *weight,
                             int rows, int in_features, int out_features, bool accumulate_dx);

/* Inverted dropout with a counter-based mask: out[i] = keep(i) ? x[i] / (1 - p) : 0, where
 * keep(i) = u(seed, i) >= p and u(seed, i) = (splitmix64(seed + i) >> 40) / 2^24. The same
 * seed gives the same mask, so the backward (dx = mask ⊙ dy / (1 - p)) is this call on dy,
 * and a recomputed forward drops the same entries. p = 0 copies. */
sq_status kn_dropout(float *out, const float *x, size_t n, float p, uint64_t seed);

/* Cross-entropy over vocabulary chunks, so that at most [rows, chunk] logits exist:
 * for chunk c of columns [v0, v0 + n) with logits z = h · lm_head[v0 : v0+n]ᵀ,
 *   kn_ce_chunk_forward: online logsumexp per row, state[0..rows) = running max m,
 *     state[rows..2rows) = running Σ e^(z - m), state[2rows..3rows) = z[target] once seen
 *     (m' = max(m, max_j z_j), s' = s e^(m - m') + Σ_j e^(z_j - m'));
 *     call kn_ce_begin(state, rows) first;
 *   kn_ce_finish: lse[r] = m + log s, nll[r] = lse[r] - z_target (0 where target < 0);
 *   kn_ce_chunk_backward (logits of the chunk recomputed): in place on z,
 *     dz_rj = row_weight[r] (e^(z_rj - lse[r]) - [v0 + j == target[r]]), 0 where target < 0;
 *     the caller then forms dh += dz · lm_head[v0 : v0+n] (kn_linear_backward).
 * targets (device int32) are < vocab; a negative target marks a row without loss. */
sq_status kn_ce_begin(float *state, int rows);
sq_status kn_ce_chunk_forward(float *state, const float *logits, const int32_t *targets, int rows, int v0, int n);
sq_status kn_ce_finish(float *nll, float *lse, const float *state, const int32_t *targets, int rows);
sq_status kn_ce_chunk_backward(float *logits, const float *lse, const int32_t *targets, const float *row_weight,
                               int rows, int v0, int n);

/* *sum (device double) += Σ x[i]², summed in index order in double (a fixed order,
 * for the global gradient norm). */
sq_status kn_sum_squares(double *sum, const float *x, size_t n);
/* *sum (device double) += Σ x[i]·y[i], in the order of kn_sum_squares (which is this with y = x;
 * the Hessian-weighted errors of quant/mixed_precision.c). */
sq_status kn_sum_products(double *sum, const float *x, const float *y, size_t n);
/* x[i] *= s. */
sq_status kn_scale(float *x, float s, size_t n);

/* One AdamW step as torch.optim.AdamW (decoupled weight decay, bias correction), t >= 1:
 *   p *= 1 - lr wd;  m += (1 - b1)(g - m);  v = b2 v + (1 - b2) g²
 *   p -= lr / (1 - b1^t) · m / (sqrt(v) / sqrt(1 - b2^t) + eps) */
sq_status kn_adamw(float *param, const float *grad, float *m, float *v, size_t n, float lr, float beta1, float beta2,
                   float eps, float weight_decay, int t);

/* NF4 base weights (bitsandbytes' layout, lora/nf4.h): W[i] = nf4_table[code_i] · absmax[i / 64],
 * code_i the high nibble of packed[i/2] for even i, the low nibble for odd i; n a multiple of 64.
 * absmax comes from kn_dequantize_blockwise8 (double quantization):
 *   absmax[i] = code8[q[i]] · absmax2[i / 256] + offset. */
sq_status kn_dequantize_nf4(float *W, const uint8_t *packed, const float *absmax, size_t n);
sq_status kn_dequantize_blockwise8(float *out, const uint8_t *q, const float *code8, const float *absmax2,
                                   float offset, size_t n);

#endif
