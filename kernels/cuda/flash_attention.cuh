/* flash_attention.cuh (CUDA backend): what the flash-attention forward
 * (flash_forward.cu) and backward (flash_backward.cu) kernels share — tile
 * loads that turn fp32 rows of a head into bf16 rows in shared memory, the
 * warp-level WMMA tile products (bf16 16x16x16, fp32 accumulators), the causal
 * mask, and the sizes of shared-memory rows.
 *
 * Every kernel gives each of its FLASH_WARPS warps 16 rows of the block's tile
 * (query rows in the forward and dQ kernels, key rows in the dK/dV kernel), so
 * only the tile loads need the whole block to synchronise. Scores are kept in
 * log2 units, x = scale·log2(e)·q·k, so the softmax is exp2f(x − lse2) where
 * lse2 = log2 Σ_s exp2(x_s) of the query row. */
#ifndef SQ_KERNELS_CUDA_FLASH_ATTENTION_CUH
#define SQ_KERNELS_CUDA_FLASH_ATTENTION_CUH

#include <cuda_bf16.h>
#include <mma.h>
#include <stdint.h>

#include "kernels/cuda/cuda_common.h"
#include "kernels/cuda/flash_attention.h"
#include "kernels/cuda/reduce.cuh"

typedef __nv_bfloat16 bf16;

#define FLASH_WARPS 4
#define FLASH_THREADS (32 * FLASH_WARPS)
#define FLASH_WARP_ROWS 16
#define FLASH_BLOCK_ROWS (FLASH_WARPS * FLASH_WARP_ROWS) /* 64 rows of the block's own tile */
/* Row padding (elements) that keeps WMMA rows 32-byte aligned and spreads shared-memory banks. */
#define FLASH_PAD_BF16 8
#define FLASH_PAD_F32 4

typedef nvcuda::wmma::fragment<nvcuda::wmma::accumulator, 16, 16, 16, float> flash_acc;
typedef nvcuda::wmma::fragment<nvcuda::wmma::matrix_a, 16, 16, 16, bf16, nvcuda::wmma::row_major> flash_a;
typedef nvcuda::wmma::fragment<nvcuda::wmma::matrix_b, 16, 16, 16, bf16, nvcuda::wmma::row_major> flash_b_rows;
typedef nvcuda::wmma::fragment<nvcuda::wmma::matrix_b, 16, 16, 16, bf16, nvcuda::wmma::col_major> flash_b_cols;

/* Shared-memory row lengths (elements) of a bf16 and of an fp32 tile `cols` wide. */
__host__ __device__ constexpr int flash_ld_bf16(int cols) { return cols + FLASH_PAD_BF16; }
__host__ __device__ constexpr int flash_ld_f32(int cols) { return cols + FLASH_PAD_F32; }

/* dst[r][c] = bf16(src[r·stride + c]) for r < ROWS, c < D; rows at or past `valid` become 0.
 * The whole block calls it. Each thread issues all its loads before it converts any, so
 * their latencies overlap; float4 loads when src allows them. */
template <int D, int ROWS>
__device__ void flash_load_rows(bf16 *dst, const float *src, size_t stride, int valid)
{
    constexpr int LD = flash_ld_bf16(D), QUADS = D / 4, PER_THREAD = ROWS * QUADS / FLASH_THREADS;
    static_assert(ROWS * QUADS % FLASH_THREADS == 0, "a tile is a whole number of float4s per thread");
    const bool vector = ((uintptr_t)src % 16) == 0 && stride % 4 == 0;
    float4 x[PER_THREAD];
#pragma unroll
    for (int j = 0; j < PER_THREAD; j++) {
        const int i = threadIdx.x + j * FLASH_THREADS, r = i / QUADS, c = i % QUADS * 4;
        x[j] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        if (r < valid) {
            const float *p = src + (size_t)r * stride + c;
            x[j] = vector ? __ldg((const float4 *)p) : make_float4(__ldg(p), __ldg(p + 1), __ldg(p + 2), __ldg(p + 3));
        }
    }
#pragma unroll
    for (int j = 0; j < PER_THREAD; j++) {
        const int i = threadIdx.x + j * FLASH_THREADS, r = i / QUADS, c = i % QUADS * 4;
        __nv_bfloat162 *d = (__nv_bfloat162 *)(dst + r * LD + c);
        d[0] = __floats2bfloat162_rn(x[j].x, x[j].y);
        d[1] = __floats2bfloat162_rn(x[j].z, x[j].w);
    }
}

/* dst[i] = src[i] for i < valid, 0 for valid <= i < n (the whole block calls it). */
__device__ inline void flash_load_row_values(float *dst, const float *src, int n, int valid)
{
    for (int i = threadIdx.x; i < n; i += blockDim.x)
        dst[i] = i < valid ? src[i] : 0.0f;
}

/* One warp: C[16][N] (fp32, ldc) = A[16][K] · Bᵀ where B is [N][K] row-major (bf16, lda/ldb):
 * the products Q Kᵀ, K Qᵀ, dO Vᵀ, V dOᵀ of tiles stored token by token. */
template <int N, int K>
__device__ void flash_warp_abt(float *C, int ldc, const bf16 *A, int lda, const bf16 *B, int ldb)
{
    flash_acc acc[N / 16];
    for (int n = 0; n < N / 16; n++)
        nvcuda::wmma::fill_fragment(acc[n], 0.0f);
    for (int kk = 0; kk < K / 16; kk++) {
        flash_a a;
        nvcuda::wmma::load_matrix_sync(a, A + kk * 16, lda);
        for (int n = 0; n < N / 16; n++) {
            flash_b_cols b;
            nvcuda::wmma::load_matrix_sync(b, B + n * 16 * ldb + kk * 16, ldb);
            nvcuda::wmma::mma_sync(acc[n], a, b, acc[n]);
        }
    }
    for (int n = 0; n < N / 16; n++)
        nvcuda::wmma::store_matrix_sync(C + n * 16, acc[n], ldc, nvcuda::wmma::mem_row_major);
}

/* One warp: acc[n] += A[16][K] · B[K][16n..16n+15] with B [K][N] row-major (bf16): the products
 * P V, Pᵀ dO, dSᵀ Q, dS K that sum over the tile's tokens into per-warp accumulators. */
template <int N, int K>
__device__ void flash_warp_ab(flash_acc *acc, const bf16 *A, int lda, const bf16 *B, int ldb)
{
    for (int kk = 0; kk < K / 16; kk++) {
        flash_a a;
        nvcuda::wmma::load_matrix_sync(a, A + kk * 16, lda);
        for (int n = 0; n < N / 16; n++) {
            flash_b_rows b;
            nvcuda::wmma::load_matrix_sync(b, B + kk * 16 * ldb + n * 16, ldb);
            nvcuda::wmma::mma_sync(acc[n], a, b, acc[n]);
        }
    }
}

/* Key s is visible from query t (causal) and both lie inside the sequence. */
__device__ inline bool flash_visible(int t, int s, int seq) { return s <= t && t < seq; }

/* One warp: rows[i] = the row (0..15) of the tile that element i of this thread's accumulator
 * fragments holds — found by loading a tile whose entries are their row numbers, so nothing
 * depends on the (undocumented) fragment layout. scratch: 16 rows of ld floats, 32-byte aligned. */
__device__ inline void flash_fragment_rows(int *rows, float *scratch, int ld)
{
    for (int i = threadIdx.x % 32; i < 16 * 16; i += 32)
        scratch[i / 16 * ld + i % 16] = (float)(i / 16);
    __syncwarp();
    flash_acc f;
    nvcuda::wmma::load_matrix_sync(f, scratch, ld, nvcuda::wmma::mem_row_major);
    for (int i = 0; i < flash_acc::num_elements; i++)
        rows[i] = (int)f.x[i];
    __syncwarp();
}

/* One warp: its accumulators acc[D/16] (16 rows) into `stage` (fp32, ld flash_ld_f32(D)). */
template <int D>
__device__ void flash_warp_stage(float *stage, const flash_acc *acc)
{
    for (int n = 0; n < D / 16; n++)
        nvcuda::wmma::store_matrix_sync(stage + n * 16, acc[n], flash_ld_f32(D), nvcuda::wmma::mem_row_major);
    __syncwarp();
}

/* The warp's 16 rows of accumulators acc[D/16] go through `stage` (fp32, its 16 rows, ld
 * flash_ld_f32(D)) to global rows dst + r·stride, multiplied by `factor`; rows at or past
 * `valid` are not written. */
template <int D>
__device__ void flash_warp_store(float *dst, size_t stride, int valid, const flash_acc *acc, float *stage,
                                 float factor)
{
    constexpr int LD = flash_ld_f32(D);
    flash_warp_stage<D>(stage, acc);
    const int lane = threadIdx.x % 32;
    for (int r = 0; r < FLASH_WARP_ROWS && r < valid; r++)
        for (int d = lane; d < D; d += 32)
            dst[(size_t)r * stride + d] = stage[r * LD + d] * factor;
    __syncwarp();
}

/* The backward's first pass (flash_forward.cu): lse2 and delta = dO·O of every query row,
 * [batch][n_heads][seq], from a recomputed forward. head_dim 64 or 128, shape checked. */
sq_status flash_forward_stats(float *lse2, float *delta, const float *dout, const float *q, const float *k,
                              const float *v, int batch, int seq, int n_heads, int n_kv_heads, int head_dim);

#endif
