/* device.c (CUDA backend): device selection and library handles. kn_init picks
 * GPU local_rank % device count, sets its memory pool to keep freed memory
 * (memory.cu), creates the cuBLAS and cuSOLVER handles every
 * other file uses, and turns CUDA/cuBLAS/cuSOLVER error codes into statuses. */
#include <stdio.h>

#include "kernels/cuda/cuda_common.h"

static cublasHandle_t blas_handle;
static cusolverDnHandle_t solver_handle;
static char device_description[512];

cublasHandle_t kn_cuda_blas(void) { return blas_handle; }
cusolverDnHandle_t kn_cuda_solver(void) { return solver_handle; }

sq_status kn_cuda_status(cudaError_t err, const char *file, int line, const char *call)
{
    if (err == cudaSuccess)
        return SQ_OK;
    return sq_fail(SQ_ERR_DEVICE, "%s:%d: %s failed: %s (%s)", file, line, call, cudaGetErrorString(err),
                   cudaGetErrorName(err));
}

sq_status kn_cublas_status(cublasStatus_t err, const char *file, int line, const char *call)
{
    if (err == CUBLAS_STATUS_SUCCESS)
        return SQ_OK;
    return sq_fail(SQ_ERR_DEVICE, "%s:%d: %s failed: %s", file, line, call, cublasGetStatusString(err));
}

sq_status kn_cusolver_status(cusolverStatus_t err, const char *file, int line, const char *call)
{
    if (err == CUSOLVER_STATUS_SUCCESS)
        return SQ_OK;
    return sq_fail(SQ_ERR_DEVICE, "%s:%d: %s failed: cusolver status %d", file, line, call, (int)err);
}

unsigned kn_cuda_blocks(size_t n, unsigned threads)
{
    size_t blocks = (n + threads - 1) / threads;
    if (blocks == 0)
        blocks = 1;
    return blocks > 0x7fffffffu ? 0x7fffffffu : (unsigned)blocks;
}

sq_status kn_init(int local_rank)
{
    if (local_rank < 0)
        return sq_fail(SQ_ERR_ARG, "kn_init: negative local rank %d", local_rank);
    int count = 0;
    CUDA_CHECK(cudaGetDeviceCount(&count));
    if (count <= 0)
        return sq_fail(SQ_ERR_DEVICE, "kn_init: no CUDA device visible");
    int device = local_rank % count;
    CUDA_CHECK(cudaSetDevice(device));
    struct cudaDeviceProp prop;
    CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
    snprintf(device_description, sizeof device_description, "%.200s (GPU %d of %d, sm_%d%d, %d SMs, %.1f GiB)",
             prop.name, device, count, prop.major, prop.minor, prop.multiProcessorCount,
             (double)prop.totalGlobalMem / (1024.0 * 1024.0 * 1024.0));
    /* kn_alloc's pool keeps freed memory for the next allocation (memory.cu). */
    cudaMemPool_t pool;
    CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, device));
    uint64_t keep_all = UINT64_MAX;
    CUDA_CHECK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep_all));
    if (!blas_handle)
        CUBLAS_CHECK(cublasCreate(&blas_handle));
    if (!solver_handle)
        CUSOLVER_CHECK(cusolverDnCreate(&solver_handle));
    return kn_cuda_indices_init();
}

void kn_shutdown(void)
{
    kn_cuda_indices_shutdown();
    kn_cuda_half_shutdown();
    kn_cuda_lora_linear_shutdown();
    kn_cuda_transfer_shutdown();
    if (solver_handle)
        cusolverDnDestroy(solver_handle);
    if (blas_handle)
        cublasDestroy(blas_handle);
    solver_handle = NULL;
    blas_handle = NULL;
}

const char *kn_backend_name(void) { return "cuda"; }

const char *kn_device_description(void) { return device_description[0] ? device_description : "cuda"; }
