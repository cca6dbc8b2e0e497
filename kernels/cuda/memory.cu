/* memory.cu (CUDA backend): device memory. Buffers come from the device's
 * stream-ordered pool (cudaMallocAsync/cudaFreeAsync on the default stream,
 * where every kernel runs), which kn_init tells to keep what is freed: a
 * solve or a layer that allocates and frees the same large buffers again and
 * again reuses them instead of paying cudaMalloc's and cudaFree's device-wide
 * synchronisation each time. Host transfers are in transfer.c. Stored
 * bf16/fp16 weights are uploaded as they are and widened to fp32 on the GPU;
 * other float types are converted on the host first. */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdlib.h>

#include "kernels/cuda/cuda_common.h"

extern "C" sq_status kn_alloc(void **dev, size_t bytes)
{
    *dev = NULL;
    cudaError_t err = cudaMallocAsync(dev, bytes ? bytes : 1, 0);
    if (err == cudaErrorMemoryAllocation) {
        cudaGetLastError();
        return sq_fail(SQ_ERR_NOMEM, "kn_alloc: cannot allocate %zu bytes of GPU memory", bytes);
    }
    return CUDA_STATUS(err);
}

extern "C" void kn_free(void *dev)
{
    if (dev)
        cudaFreeAsync(dev, 0); /* stream-ordered: after the queued work that reads it */
}

extern "C" sq_status kn_cuda_scratch_reserve(kn_cuda_scratch *s, size_t bytes)
{
    if (bytes <= s->bytes)
        return SQ_OK;
    kn_cuda_scratch_free(s);
    CUDA_CHECK(cudaMalloc(&s->data, bytes));
    s->bytes = bytes;
    return SQ_OK;
}

extern "C" void kn_cuda_scratch_free(kn_cuda_scratch *s)
{
    cudaFree(s->data); /* waits for the queued work that reads it */
    s->data = NULL;
    s->bytes = 0;
}

extern "C" sq_status kn_copy(void *dev_dst, const void *dev_src, size_t bytes)
{
    CUDA_CHECK(cudaMemcpy(dev_dst, dev_src, bytes, cudaMemcpyDeviceToDevice));
    return SQ_OK;
}

extern "C" sq_status kn_synchronize(void)
{
    CUDA_CHECK(cudaDeviceSynchronize());
    return SQ_OK;
}

__global__ void widen_bf16(float *dst, const __nv_bfloat16 *src, size_t n)
{
    GRID_STRIDE(i, n)
        dst[i] = __bfloat162float(src[i]);
}

__global__ void widen_f16(float *dst, const __half *src, size_t n)
{
    GRID_STRIDE(i, n)
        dst[i] = __half2float(src[i]);
}

static sq_status upload_converted_on_host(float *dev_dst, const void *host_src, sq_dtype dtype, size_t n)
{
    float *staging = (float *)malloc(n ? n * sizeof(float) : 1);
    if (!staging)
        return sq_fail(SQ_ERR_NOMEM, "kn_upload_as_f32: cannot allocate %zu floats of staging memory", n);
    sq_status st = sq_convert_to_f32(staging, host_src, dtype, n);
    if (st == SQ_OK)
        st = kn_upload(dev_dst, staging, n * sizeof(float));
    free(staging);
    return st;
}

extern "C" sq_status kn_widen_to_f32(float *dev_dst, const void *dev_src, sq_dtype dtype, size_t n)
{
    if (dtype == SQ_DTYPE_F32)
        return kn_copy(dev_dst, dev_src, n * sizeof(float));
    if (dtype != SQ_DTYPE_BF16 && dtype != SQ_DTYPE_F16)
        return sq_fail(SQ_ERR_ARG, "kn_widen_to_f32: dtype %s is not F32, F16 or BF16", sq_dtype_name(dtype));
    if (n == 0)
        return SQ_OK;
    if (dtype == SQ_DTYPE_BF16)
        widen_bf16<<<kn_cuda_blocks(n, 256), 256>>>(dev_dst, (const __nv_bfloat16 *)dev_src, n);
    else
        widen_f16<<<kn_cuda_blocks(n, 256), 256>>>(dev_dst, (const __half *)dev_src, n);
    CUDA_CHECK_LAUNCH();
    return SQ_OK;
}

extern "C" sq_status kn_upload_as_f32(float *dev_dst, const void *host_src, sq_dtype dtype, size_t n)
{
    if (dtype == SQ_DTYPE_F32)
        return kn_upload(dev_dst, host_src, n * sizeof(float));
    if (dtype != SQ_DTYPE_BF16 && dtype != SQ_DTYPE_F16)
        return upload_converted_on_host(dev_dst, host_src, dtype, n);
    if (n == 0)
        return SQ_OK;
    void *raw = NULL;
    SQ_TRY(kn_alloc(&raw, n * 2));
    sq_status st = kn_upload(raw, host_src, n * 2);
    if (st == SQ_OK)
        st = kn_widen_to_f32(dev_dst, raw, dtype, n);
    kn_free(raw); /* after the kernel, in stream order */
    return st;
}

__global__ void fill_kernel(float *x, float value, size_t n)
{
    GRID_STRIDE(i, n)
        x[i] = value;
}

extern "C" sq_status kn_fill(float *x, float value, size_t n)
{
    if (n == 0)
        return SQ_OK;
    fill_kernel<<<kn_cuda_blocks(n, 256), 256>>>(x, value, n);
    CUDA_CHECK_LAUNCH();
    return SQ_OK;
}
