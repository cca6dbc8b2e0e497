/* flash_attention.h (CUDA backend): the attention entry points behind
 * kn_attention / kn_attention_backward. Head dims 64 and 128 (the Llama
 * family) run flash-attention kernels (flash_forward.cu, flash_backward.cu:
 * bf16 tiles on the tensor cores, fp32 accumulation and softmax, no seq×seq
 * matrix in device memory, deterministic); other head dims run the cuBLAS
 * path of attention.cu. Arguments and layouts are those of kn_attention and
 * kn_attention_backward in kernels/kernels.h. Usable from C and CUDA C++. */
#ifndef SQ_KERNELS_CUDA_FLASH_ATTENTION_H
#define SQ_KERNELS_CUDA_FLASH_ATTENTION_H

#include <stdbool.h>

#include "kernels/kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Whether the flash kernels handle this head dim (64 and 128). */
bool kn_cuda_flash_supported(int head_dim);

/* kn_attention on the flash kernels (head dims kn_cuda_flash_supported accepts). */
sq_status kn_cuda_flash_attention(float *out, float *lse2, const float *q, const float *k, const float *v, int batch,
                                  int seq, int n_heads, int n_kv_heads, int head_dim);

/* kn_attention_backward on the flash kernels (head dims kn_cuda_flash_supported accepts):
 * the same bits on every run, and with or without the forward's out and lse2. */
sq_status kn_cuda_flash_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *out,
                                           const float *lse2, const float *q, const float *k, const float *v,
                                           int batch, int seq, int n_heads, int n_kv_heads, int head_dim);

/* Each query row's lse2 (kn_attention's), by direct sums: for head dims the flash kernels do not take. */
sq_status kn_cuda_attention_lse2(float *lse2, const float *q, const float *k, int batch, int seq, int n_heads,
                                 int n_kv_heads, int head_dim);

/* kn_attention on cuBLAS (TF32 batched GEMMs around a materialised score matrix), any head dim. */
sq_status kn_cuda_attention_cublas(float *out, const float *q, const float *k, const float *v, int batch, int seq,
                                   int n_heads, int n_kv_heads, int head_dim);

/* kn_attention_backward on cuBLAS (TF32, the probabilities recomputed into score buffers), any head dim. */
sq_status kn_cuda_attention_backward_cublas(float *dq, float *dk, float *dv, const float *dout, const float *q,
                                            const float *k, const float *v, int batch, int seq, int n_heads,
                                            int n_kv_heads, int head_dim);

#ifdef __cplusplus
}
#endif

#endif
