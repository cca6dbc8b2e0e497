/* optimizer.cu (CUDA backend): what one optimizer step over the adapter needs —
 * the squared norm for global gradient clipping and AdamW.
 *
 * kn_sum_products (and kn_sum_squares, its y = x case: the Hessian-weighted
 * errors of mixed precision and the gradient norm) sums in double in a fixed order that depends on n alone: a
 * fixed grid (SUM_BLOCKS blocks of SUM_THREADS threads) in which thread k sums
 * x[k], x[k + stride], ... in index order, each block reduces its threads by the
 * same shuffle tree, and one block then adds the per-block partial sums by the
 * same tree. So the result is the same bits on every run and every GPU (not the
 * CPU's bits: the CPU adds in index order; both are double sums of exact
 * squares, within ~1e-15 relative of each other).
 *
 * kn_adamw repeats the CPU reference's float operations one by one (the _rn
 * intrinsics keep nvcc from fusing a multiply and an add), with the bias
 * corrections formed on the host exactly as the CPU forms them. */
#include <math.h>

#include "kernels/cuda/cuda_common.h"
#include "kernels/cuda/reduce.cuh"

#define SUM_BLOCKS 264 /* about two blocks per SM of an H100/H200 */
#define SUM_THREADS 256

/* Per-block partial sums of the last kn_sum_products; the default stream orders the calls. */
__device__ double sum_squares_partials[SUM_BLOCKS];

__global__ void sum_products_blocks(const float *x, const float *y, size_t n)
{
    double acc = 0.0;
    GRID_STRIDE(i, n) acc += (double)x[i] * y[i];
    acc = block_reduce(acc, reduce_sum());
    if (threadIdx.x == 0)
        sum_squares_partials[blockIdx.x] = acc;
}

/* One block of SUM_THREADS: *sum += Σ partials, in the fixed tree order. */
__global__ void sum_squares_finish(double *sum)
{
    double acc = 0.0;
    for (int b = threadIdx.x; b < SUM_BLOCKS; b += blockDim.x)
        acc += sum_squares_partials[b];
    acc = block_reduce(acc, reduce_sum());
    if (threadIdx.x == 0)
        *sum += acc;
}

extern "C" sq_status kn_sum_products(double *sum, const float *x, const float *y, size_t n)
{
    if (n == 0)
        return SQ_OK;
    sum_products_blocks<<<SUM_BLOCKS, SUM_THREADS>>>(x, y, n);
    CUDA_CHECK_LAUNCH();
    sum_squares_finish<<<1, SUM_THREADS>>>(sum);
    CUDA_CHECK_LAUNCH();
    return SQ_OK;
}

extern "C" sq_status kn_sum_squares(double *sum, const float *x, size_t n)
{
    return kn_sum_products(sum, x, x, n);
}

/* kernels.h: p *= 1 - lr wd;  m += (1 - b1)(g - m);  v = b2 v + (1 - b2) g²;
 * p -= lr / (1 - b1^t) · m / (sqrt(v) / sqrt(1 - b2^t) + eps). */
__global__ void adamw_kernel(float *param, const float *grad, float *m, float *v, size_t n, float beta1, float beta2,
                             float eps, float decay, float step_size, float bias2_sqrt)
{
    GRID_STRIDE(i, n)
    {
        float g = grad[i];
        float p = __fmul_rn(param[i], decay);
        float mi = __fadd_rn(m[i], __fmul_rn(1.0f - beta1, __fsub_rn(g, m[i])));
        float vi = __fadd_rn(__fmul_rn(v[i], beta2), __fmul_rn(__fmul_rn(1.0f - beta2, g), g));
        float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), bias2_sqrt), eps);
        param[i] = __fadd_rn(p, __fmul_rn(-step_size, __fdiv_rn(mi, denom)));
        m[i] = mi;
        v[i] = vi;
    }
}

extern "C" sq_status kn_adamw(float *param, const float *grad, float *m, float *v, size_t n, float lr, float beta1,
                              float beta2, float eps, float weight_decay, int t)
{
    if (t < 1)
        return sq_fail(SQ_ERR_ARG, "kn_adamw: step %d must be >= 1", t);
    if (n == 0)
        return SQ_OK;
    const float decay = 1.0f - lr * weight_decay;
    const float step_size = lr / (float)(1.0 - pow(beta1, t));
    const float bias2_sqrt = (float)sqrt(1.0 - pow(beta2, t));
    adamw_kernel<<<kn_cuda_blocks(n, 256), 256>>>(param, grad, m, v, n, beta1, beta2, eps, decay, step_size,
                                                  bias2_sqrt);
    CUDA_CHECK_LAUNCH();
    return SQ_OK;
}
