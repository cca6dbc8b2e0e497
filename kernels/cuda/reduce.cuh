/* reduce.cuh (CUDA backend): block-wide reductions (sum, max, min) built from
 * warp shuffles, for the kernels that give one thread block to each row.
 * Every thread of the block must call them; every thread gets the result. */
#ifndef SQ_KERNELS_CUDA_REDUCE_CUH
#define SQ_KERNELS_CUDA_REDUCE_CUH

#include <math.h>

struct reduce_sum { template <typename T> __device__ T operator()(T a, T b) const { return a + b; } };
struct reduce_max { template <typename T> __device__ T operator()(T a, T b) const { return fmax(a, b); } };
struct reduce_min { template <typename T> __device__ T operator()(T a, T b) const { return fmin(a, b); } };

template <typename T, typename Op> __device__ T warp_reduce(T value, Op op)
{
    for (int offset = 16; offset > 0; offset /= 2)
        value = op(value, __shfl_xor_sync(0xffffffffu, value, offset));
    return value;
}

/* blockDim.x must be a multiple of 32 and at most 1024. */
template <typename T, typename Op> __device__ T block_reduce(T value, Op op)
{
    __shared__ T partial[32];
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
    value = warp_reduce(value, op);
    __syncthreads(); /* partial may still be read by a previous call */
    if (lane == 0)
        partial[warp] = value;
    __syncthreads();
    value = partial[0];
    for (int w = 1; w < warps; w++)
        value = op(value, partial[w]);
    return value;
}

#endif
