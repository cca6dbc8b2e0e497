/* flash_attention.cuh (CUDA backend): what the flash-attention forward
 * (flash_forward.cu) and backward (flash_backward.cu) kernels share — the bf16
 * copies of the inputs, asynchronous tile loads into shared memory, the
 * warp-level WMMA tile products (bf16 16x16x16, fp32 accumulators), the causal
 * mask, and the sizes of shared-memory rows.
 *
 * The kernels read bf16 copies of their inputs (kn_cuda_to_bf16, made once per call
 * into its scratch slots) with cp.async, the next tile's copies in flight while the current
 * tile's products run (two buffers of each streamed tile).
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

/* Asynchronous copies global → shared (cp.async, Ampere and later): `bytes` (4 or 16) bytes, or
 * zeros when !valid (src is then not read). A thread's copies form a group at flash_async_commit;
 * flash_async_wait<N> waits until at most N of its groups are still in flight. */
template <int BYTES>
__device__ inline void flash_async_copy(void *dst, const void *src, bool valid)
{
    const unsigned to = (unsigned)__cvta_generic_to_shared(dst);
    if (BYTES == 16)
        asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(to), "l"(src), "r"(valid ? 16 : 0));
    else
        asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(to), "l"(src), "r"(valid ? 4 : 0));
}
__device__ inline void flash_async_commit(void) { asm volatile("cp.async.commit_group;\n" ::); }
template <int N> __device__ inline void flash_async_wait(void) { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }

/* Starts dst[r][c] = src[r·stride + c] for r < ROWS, c < D (bf16, 16 bytes a copy); rows at or
 * past `valid` become 0. src and stride must keep every row 16-byte aligned (the bf16 copies
 * of kn_cuda_to_bf16 do). The whole block calls it; the copies land after flash_async_wait and
 * a __syncthreads. */
template <int D, int ROWS>
__device__ void flash_load_rows(bf16 *dst, const bf16 *src, size_t stride, int valid)
{
    constexpr int LD = flash_ld_bf16(D), CHUNKS = D / 8, PER_THREAD = ROWS * CHUNKS / FLASH_THREADS;
    static_assert(ROWS * CHUNKS % FLASH_THREADS == 0, "a tile is a whole number of 16-byte copies per thread");
#pragma unroll
    for (int j = 0; j < PER_THREAD; j++) {
        const int i = threadIdx.x + j * FLASH_THREADS, r = i / CHUNKS, c = i % CHUNKS * 8;
        flash_async_copy<16>(dst + r * LD + c, r < valid ? src + (size_t)r * stride + c : src, r < valid);
    }
}

/* Starts dst[i] = src[i] for i < valid, 0 for valid <= i < n (fp32; the whole block calls it). */
__device__ inline void flash_load_row_values(float *dst, const float *src, int n, int valid)
{
    for (int i = threadIdx.x; i < n; i += blockDim.x)
        flash_async_copy<4>(dst + i, i < valid ? src + i : src, i < valid);
}

/* Lets `kernel` take `bytes` of dynamic shared memory, with the SM's shared memory at its
 * largest so two blocks fit on one SM. */
template <typename Kernel> sq_status flash_shared_memory(Kernel kernel, size_t bytes)
{
    CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
    CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributePreferredSharedMemoryCarveout,
                                    (int)cudaSharedmemCarveoutMaxShared));
    return SQ_OK;
}

/* The A operand of a warp's product, 16 rows of K columns: read from shared memory
 * (flash_a_shared) at each use, or held in registers (flash_a_held) by a warp that multiplies
 * the same 16 rows at every step. at(a, kk) gives columns 16kk..16kk+15. */
struct flash_a_shared {
    const bf16 *A;
    int lda;
    __device__ void at(flash_a &a, int kk) const { nvcuda::wmma::load_matrix_sync(a, A + kk * 16, lda); }
};
template <int K> struct flash_a_held {
    flash_a f[K / 16];
    __device__ void load(const bf16 *A, int lda)
    {
#pragma unroll
        for (int kk = 0; kk < K / 16; kk++)
            nvcuda::wmma::load_matrix_sync(f[kk], A + kk * 16, lda);
    }
    __device__ void at(flash_a &a, int kk) const { a = f[kk]; }
};

/* One warp: C[16][N] (fp32, ldc) = A[16][K] · Bᵀ where B is [N][K] row-major (bf16, ldb):
 * the products Q Kᵀ, K Qᵀ, dO Vᵀ, V dOᵀ of tiles stored token by token. */
template <int N, int K, typename ASource>
__device__ void flash_warp_abt(float *C, int ldc, const ASource &A, const bf16 *B, int ldb)
{
    flash_acc acc[N / 16];
    for (int n = 0; n < N / 16; n++)
        nvcuda::wmma::fill_fragment(acc[n], 0.0f);
#pragma unroll
    for (int kk = 0; kk < K / 16; kk++) {
        flash_a a;
        A.at(a, kk);
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
sq_status flash_forward_stats(float *lse2, float *delta, const bf16 *dout, const bf16 *q, const bf16 *k,
                              const bf16 *v, int batch, int seq, int n_heads, int n_kv_heads, int head_dim);

/* bf16 copies of q, k, v (kn_cuda_to_bf16 slots 0, 1, 2), valid until those slots are refilled. */
sq_status flash_bf16_inputs(const bf16 **q16, const bf16 **k16, const bf16 **v16, const float *q, const float *k,
                            const float *v, int batch, int seq, int n_heads, int n_kv_heads, int head_dim);

#endif
