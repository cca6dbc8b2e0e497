/* cuda_common.h (CUDA backend): what every file of the backend shares — the
 * library handles created by kn_init, and the CUDA_CHECK / CUBLAS_CHECK /
 * CUSOLVER_CHECK macros that turn a failed call into
 * sq_fail(SQ_ERR_DEVICE, "file:line: call: reason") and return it.
 * Usable from C (.c files) and CUDA C++ (.cu files). All work runs on the
 * default stream, so calls are ordered and kn_synchronize waits for them. */
#ifndef SQ_KERNELS_CUDA_COMMON_H
#define SQ_KERNELS_CUDA_COMMON_H

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cusolverDn.h>

#ifdef __cplusplus
extern "C" {
#endif

#include "kernels/kernels.h"

/* Handles created by kn_init (NULL before). */
cublasHandle_t kn_cuda_blas(void);
cusolverDnHandle_t kn_cuda_solver(void);

/* SQ_OK when `err` is a success, otherwise an SQ_ERR_DEVICE failure naming the call site. */
sq_status kn_cuda_status(cudaError_t err, const char *file, int line, const char *call);
sq_status kn_cublas_status(cublasStatus_t err, const char *file, int line, const char *call);
sq_status kn_cusolver_status(cusolverStatus_t err, const char *file, int line, const char *call);

/* Fails with SQ_ERR_ARG unless every idx[i] (device int32, i < n) lies in [0, limit);
 * the message names the function, the array and the first bad entry. */
sq_status kn_cuda_check_indices(const int32_t *idx, size_t n, int limit, const char *who, const char *what);
/* The check's device word, allocated by kn_init and freed by kn_shutdown. */
sq_status kn_cuda_indices_init(void);
void kn_cuda_indices_shutdown(void);

/* Device scratch kept between calls and grown as needed: every use is on the one
 * stream, so a buffer is free again once the call that filled it has been queued. */
typedef struct {
    void *data;
    size_t bytes;
} kn_cuda_scratch;
/* Make s hold at least `bytes` (a smaller buffer is replaced; cudaFree waits for queued work reading it). */
sq_status kn_cuda_scratch_reserve(kn_cuda_scratch *s, size_t bytes);
void kn_cuda_scratch_free(kn_cuda_scratch *s);

/* An fp16 copy of x[0..n) in scratch slot `slot` (0 to 3), valid until the next call for that
 * slot; *out points to it (__half). kn_cuda_to_bf16: the same in bf16 (__nv_bfloat16), in
 * slots of its own. All the slots are freed by kn_cuda_half_shutdown (half.cu). */
sq_status kn_cuda_to_half(const float *x, size_t n, int slot, const void **out);
sq_status kn_cuda_to_bf16(const float *x, size_t n, int slot, const void **out);
/* fp16 copies of `blocks` consecutive runs of n floats, run b at element b·stride of the slot. */
sq_status kn_cuda_to_half_blocks(const float *x, size_t n, int blocks, size_t stride, int slot, const void **out);
void kn_cuda_half_shutdown(void);

/* out[r][c] += bias[c] for out [rows, cols]. */
sq_status kn_cuda_add_bias(float *out, const float *bias, int rows, int cols);
/* Free transfer.c's pinned staging buffer (kn_shutdown). */
void kn_cuda_transfer_shutdown(void);

/* Free kn_linear_lora's scratch (kn_shutdown). */
void kn_cuda_lora_linear_shutdown(void);

/* Row-major n×n A: copy the upper triangle onto the lower one (A[r][c] := A[c][r] for r > c). */
sq_status kn_cuda_copy_upper_to_lower(float *A, int n);

/* Bytes of [seq, seq] score buffers kn_attention and kn_attention_backward hold at once
 * (512 MiB unless set): heads are processed in chunks that fit. Setting 0 restores the
 * default; the GPU test lowers it so that small shapes run in several chunks. */
void kn_cuda_set_attention_score_cap(size_t bytes);
size_t kn_cuda_attention_score_cap(void);

/* SQ_OK, or an SQ_ERR_ARG failure naming `who` when an attention shape (kernels.h's
 * kn_attention arguments) is invalid: attention.cu, for every attention entry point. */
sq_status kn_cuda_attention_shape(const char *who, int batch, int seq, int n_heads, int n_kv_heads, int head_dim);

/* Blocks of `threads` needed to cover n items, capped at the grid limit. */
unsigned kn_cuda_blocks(size_t n, unsigned threads);

#ifdef __cplusplus
}
#endif

#define CUDA_STATUS(call) kn_cuda_status((call), __FILE__, __LINE__, #call)
#define CUBLAS_STATUS(call) kn_cublas_status((call), __FILE__, __LINE__, #call)
#define CUSOLVER_STATUS(call) kn_cusolver_status((call), __FILE__, __LINE__, #call)

#define CUDA_CHECK(call) SQ_TRY(CUDA_STATUS(call))
#define CUBLAS_CHECK(call) SQ_TRY(CUBLAS_STATUS(call))
#define CUSOLVER_CHECK(call) SQ_TRY(CUSOLVER_STATUS(call))
/* After a kernel launch: a bad configuration shows up here, not at the launch. */
#define CUDA_CHECK_LAUNCH() SQ_TRY(kn_cuda_status(cudaGetLastError(), __FILE__, __LINE__, "kernel launch"))

#ifdef __CUDACC__
/* Inside a kernel: let the launch's threads cover i = 0 .. n-1, whatever the grid size. */
#define GRID_STRIDE(i, n) \
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (n); i += (size_t)gridDim.x * blockDim.x)
#endif

#endif
