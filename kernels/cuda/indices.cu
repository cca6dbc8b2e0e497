/* indices.cu (CUDA backend): range checks for index arrays that live on the
 * GPU (token ids, targets, permutations, group maps). The CPU backend checks
 * them in a host loop; here a kernel finds the first bad position and the host
 * reads it back, so a bad index is a clear error instead of a stray access. */
#include <limits.h>

#include "kernels/cuda/cuda_common.h"

__global__ void first_bad_index(const int32_t *idx, size_t n, int limit, unsigned long long *first)
{
    GRID_STRIDE(i, n)
        if (idx[i] < 0 || idx[i] >= limit)
            atomicMin(first, (unsigned long long)i);
}

/* One word of device memory for the answer, kept from kn_init to kn_shutdown so that
 * a check costs a small launch and one read-back, not an allocation. */
static unsigned long long *first_bad;

extern "C" sq_status kn_cuda_indices_init(void)
{
    if (!first_bad)
        CUDA_CHECK(cudaMalloc((void **)&first_bad, sizeof *first_bad));
    return SQ_OK;
}

extern "C" void kn_cuda_indices_shutdown(void)
{
    if (first_bad)
        cudaFree(first_bad);
    first_bad = NULL;
}

extern "C" sq_status kn_cuda_check_indices(const int32_t *idx, size_t n, int limit, const char *who,
                                           const char *what)
{
    if (n == 0)
        return SQ_OK;
    if (!first_bad)
        return sq_fail(SQ_ERR_DEVICE, "%s: the CUDA backend is not initialised (call kn_init)", who);
    unsigned long long found = ULLONG_MAX;
    int32_t bad_value = 0;
    CUDA_CHECK(cudaMemset(first_bad, 0xff, sizeof *first_bad)); /* ULLONG_MAX: none found */
    unsigned blocks = kn_cuda_blocks(n, 256);
    first_bad_index<<<blocks < 1024 ? blocks : 1024, 256>>>(idx, n, limit, first_bad);
    CUDA_CHECK_LAUNCH();
    CUDA_CHECK(cudaMemcpy(&found, first_bad, sizeof found, cudaMemcpyDeviceToHost));
    if (found == ULLONG_MAX)
        return SQ_OK;
    CUDA_CHECK(cudaMemcpy(&bad_value, idx + found, sizeof bad_value, cudaMemcpyDeviceToHost));
    return sq_fail(SQ_ERR_ARG, "%s: %s[%llu] = %d is outside [0, %d)", who, what, found, (int)bad_value, limit);
}
