/* indices.cu (CUDA backend): range checks for index arrays that live on the
 * GPU (token ids, targets, permutations, group maps). The CPU backend checks
 * them in a host loop; here a kernel finds the first bad position and the host
 * reads it back, so a bad index is a clear error instead of a stray access. */
#include <limits.h>

#include "kernels/cuda/cuda_common.h"

__global__ void first_bad_index(const int32_t *idx, size_t n, int limit, unsigned long long *first_bad)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        if (idx[i] < 0 || idx[i] >= limit)
            atomicMin(first_bad, (unsigned long long)i);
}

extern "C" sq_status kn_cuda_check_indices(const int32_t *idx, size_t n, int limit, const char *who,
                                           const char *what)
{
    if (n == 0)
        return SQ_OK;
    unsigned long long *first_bad = NULL;
    unsigned long long found = ULLONG_MAX;
    int32_t bad_value = 0;
    CUDA_CHECK(cudaMalloc((void **)&first_bad, sizeof *first_bad));
    sq_status st = CUDA_STATUS(cudaMemcpy(first_bad, &found, sizeof found, cudaMemcpyHostToDevice));
    if (st == SQ_OK) {
        first_bad_index<<<kn_cuda_blocks(n, 256) < 1024 ? kn_cuda_blocks(n, 256) : 1024, 256>>>(idx, n, limit,
                                                                                               first_bad);
        st = CUDA_STATUS(cudaGetLastError());
    }
    if (st == SQ_OK)
        st = CUDA_STATUS(cudaMemcpy(&found, first_bad, sizeof found, cudaMemcpyDeviceToHost));
    if (st == SQ_OK && found != ULLONG_MAX)
        st = CUDA_STATUS(cudaMemcpy(&bad_value, idx + found, sizeof bad_value, cudaMemcpyDeviceToHost));
    cudaFree(first_bad);
    if (st != SQ_OK || found == ULLONG_MAX)
        return st;
    return sq_fail(SQ_ERR_ARG, "%s: %s[%llu] = %d is outside [0, %d)", who, what, found, (int)bad_value, limit);
}
