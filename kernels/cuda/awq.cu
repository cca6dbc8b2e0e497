/* awq.cu (CUDA backend): the kernels of the AWQ step (kernels.h, AWQ section),
 * doing the CPU reference's float operations in its order: one thread per
 * column walks the rows for the |x| sums, one thread per (row, group) walks
 * its columns for the dot products (in double), and the scaling and clamp are
 * pointwise (the _rn intrinsics keep nvcc from fusing what the CPU rounds twice). */
#include "kernels/cuda/cuda_common.h"

static int group_count(int cols, int group_size) { return (cols + group_size - 1) / group_size; }

__global__ void column_abs_sums_kernel(float *sums, const float *X, int rows, int cols)
{
    GRID_STRIDE(c, (size_t)cols)
    {
        float acc = 0.0f;
        for (int r = 0; r < rows; r++)
            acc = __fadd_rn(acc, fabsf(X[(size_t)r * cols + c]));
        sums[c] = acc;
    }
}

extern "C" sq_status kn_column_abs_sums(float *sums, const float *X, int rows, int cols)
{
    if (rows < 0 || cols <= 0)
        return sq_fail(SQ_ERR_ARG, "kn_column_abs_sums: bad shape rows=%d cols=%d", rows, cols);
    column_abs_sums_kernel<<<kn_cuda_blocks((size_t)cols, 128), 128>>>(sums, X, rows, cols);
    CUDA_CHECK_LAUNCH();
    return SQ_OK;
}

__global__ void scale_rows_columns_kernel(float *W, const float *row_scale, const float *col_scale, int rows,
                                          int cols)
{
    GRID_STRIDE(i, (size_t)rows * cols)
    {
        float v = row_scale ? __fmul_rn(W[i], row_scale[i / cols]) : W[i];
        W[i] = col_scale ? __fmul_rn(v, col_scale[i % cols]) : v;
    }
}

extern "C" sq_status kn_scale_rows_columns(float *W, const float *row_scale, const float *col_scale, int rows,
                                           int cols)
{
    if (rows < 0 || cols < 0)
        return sq_fail(SQ_ERR_ARG, "kn_scale_rows_columns: bad shape rows=%d cols=%d", rows, cols);
    size_t n = (size_t)rows * cols;
    if (n == 0)
        return SQ_OK;
    scale_rows_columns_kernel<<<kn_cuda_blocks(n, 256), 256>>>(W, row_scale, col_scale, rows, cols);
    CUDA_CHECK_LAUNCH();
    return SQ_OK;
}

__global__ void group_row_dots_kernel(double *out, const float *A, const float *B, int rows, int cols,
                                      int group_size, int ngroups)
{
    GRID_STRIDE(i, (size_t)rows * ngroups)
    {
        size_t r = i / ngroups;
        int g = (int)(i % ngroups);
        int end = (g + 1) * group_size < cols ? (g + 1) * group_size : cols;
        double sum = 0.0;
        for (int c = g * group_size; c < end; c++)
            sum = __dadd_rn(sum, __dmul_rn((double)A[r * cols + c], (double)B[r * cols + c]));
        out[i] = sum;
    }
}

extern "C" sq_status kn_group_row_dots(double *out, const float *A, const float *B, int rows, int cols,
                                       int group_size)
{
    if (rows < 0 || cols <= 0 || group_size <= 0)
        return sq_fail(SQ_ERR_ARG, "kn_group_row_dots: bad shape rows=%d cols=%d group_size=%d", rows, cols,
                       group_size);
    int ngroups = group_count(cols, group_size);
    size_t n = (size_t)rows * ngroups;
    if (n == 0)
        return SQ_OK;
    group_row_dots_kernel<<<kn_cuda_blocks(n, 128), 128>>>(out, A, B, rows, cols, group_size, ngroups);
    CUDA_CHECK_LAUNCH();
    return SQ_OK;
}

__global__ void clamp_groups_kernel(float *W, const float *limit, int rows, int cols, int group_size, int ngroups)
{
    GRID_STRIDE(i, (size_t)rows * cols)
    {
        float lim = limit[(i / cols) * ngroups + (i % cols) / group_size];
        W[i] = fminf(fmaxf(W[i], -lim), lim);
    }
}

extern "C" sq_status kn_clamp_groups(float *W, const float *limit, int rows, int cols, int group_size)
{
    if (rows < 0 || cols <= 0 || group_size <= 0)
        return sq_fail(SQ_ERR_ARG, "kn_clamp_groups: bad shape rows=%d cols=%d group_size=%d", rows, cols,
                       group_size);
    size_t n = (size_t)rows * cols;
    if (n == 0)
        return SQ_OK;
    clamp_groups_kernel<<<kn_cuda_blocks(n, 256), 256>>>(W, limit, rows, cols, group_size, group_count(cols, group_size));
    CUDA_CHECK_LAUNCH();
    return SQ_OK;
}
