/* flash_forward.cu (CUDA backend): causal grouped-query attention forward in
 * the flash-attention manner — each thread block takes 64 query rows of one
 * head and walks the key blocks up to the diagonal with an online softmax, so
 * no seq×seq matrix ever reaches device memory.
 *
 * Per key block of 64 (4 warps, each owning 16 query rows):
 *   S = Q Kᵀ            bf16 WMMA, fp32 into shared memory
 *   online softmax      fp32, per row: running max m and sum l; O rows rescaled
 *   O += P V            P rounded to bf16, O kept fp32 in shared memory
 * and O / l is written at the end. Shared memory for head_dim 128: Q, K, V
 * (bf16, 17 KiB each), S (fp32, 17 KiB), P (bf16, 9 KiB), O (fp32, 33 KiB):
 * 110 KiB, two blocks per SM. Query blocks are launched last-first, so the
 * longest (diagonal-far) blocks start first.
 *
 * The same kernel with STATS set is the backward's first pass: instead of O it
 * writes each row's lse2 = m + log2 l and delta = dO·O (the D_t of the
 * flash-attention backward), from a recomputed O and dO rounded to bf16 as the
 * backward's dP = dO Vᵀ sees it: delta then equals Σ_s P_ts dP_ts up to fp32
 * rounding, so dS = P (dP − delta) vanishes where it should (a one-key row). */
#include "kernels/cuda/flash_attention.cuh"

#define FWD_KEYS 64

/* Byte offsets of the forward kernel's shared-memory tiles. */
template <int D> struct forward_smem {
    static constexpr int LD = flash_ld_bf16(D), LDS = flash_ld_f32(FWD_KEYS), LDP = flash_ld_bf16(FWD_KEYS),
                         LDO = flash_ld_f32(D);
    static constexpr size_t q = 0, k = q + FLASH_BLOCK_ROWS * LD * 2, v = k + FWD_KEYS * LD * 2,
                            s = v + FWD_KEYS * LD * 2, p = s + FLASH_BLOCK_ROWS * LDS * 4,
                            o = p + FLASH_BLOCK_ROWS * LDP * 2, stats = o + FLASH_BLOCK_ROWS * LDO * 4,
                            bytes = stats + 2 * FLASH_BLOCK_ROWS * 4;
};

/* One warp, block-local row r (query t): folds the key block's scores into the row's running
 * max and sum, writes the row's probabilities (bf16, relative to the new max) into P and
 * rescales the row's O by exp2(old max − new max). */
template <int D>
__device__ void online_softmax_row(int r, int t, int s0, int seq, float scale_log2, const float *S, bf16 *P,
                                   float *O, float *row_max, float *row_sum)
{
    typedef forward_smem<D> L;
    const int lane = threadIdx.x % 32;
    float x[FWD_KEYS / 32], block_max = -INFINITY;
    for (int j = 0; j < FWD_KEYS / 32; j++) {
        int c = lane + 32 * j;
        x[j] = flash_visible(t, s0 + c, seq) ? S[r * L::LDS + c] * scale_log2 : -INFINITY;
        block_max = fmaxf(block_max, x[j]);
    }
    const float old_max = row_max[r];
    const float new_max = fmaxf(old_max, warp_reduce(block_max, reduce_max()));
    const float base = new_max == -INFINITY ? 0.0f : new_max; /* a row with nothing visible yet */
    float sum = 0.0f;
    for (int j = 0; j < FWD_KEYS / 32; j++) {
        float p = exp2f(x[j] - base);
        P[r * L::LDP + lane + 32 * j] = __float2bfloat16(p);
        sum += p;
    }
    sum = warp_reduce(sum, reduce_sum());
    const float rescale = exp2f(old_max - base);
    for (int d = lane; d < D; d += 32)
        O[r * L::LDO + d] *= rescale;
    if (lane == 0) {
        row_max[r] = new_max;
        row_sum[r] = row_sum[r] * rescale + sum;
    }
}

/* Grid (query blocks, n_heads, batch), FLASH_THREADS threads, forward_smem<D>::bytes of shared memory.
 * STATS: writes lse2 and delta ([batch][n_heads][seq]) instead of out. */
template <int D, bool STATS>
__global__ void __launch_bounds__(FLASH_THREADS)
    flash_forward(float *out, float *lse2, float *delta, const float *dout, const float *q, const float *k,
                  const float *v, int seq, int n_heads, int group, float scale_log2)
{
    typedef forward_smem<D> L;
    extern __shared__ __align__(128) unsigned char smem[];
    bf16 *Qs = (bf16 *)(smem + L::q), *Ks = (bf16 *)(smem + L::k), *Vs = (bf16 *)(smem + L::v);
    bf16 *Ps = (bf16 *)(smem + L::p);
    float *Ss = (float *)(smem + L::s), *Os = (float *)(smem + L::o);
    float *row_max = (float *)(smem + L::stats), *row_sum = row_max + FLASH_BLOCK_ROWS;
    const int lane = threadIdx.x % 32, row0 = threadIdx.x / 32 * FLASH_WARP_ROWS;
    const int t0 = (gridDim.x - 1 - blockIdx.x) * FLASH_BLOCK_ROWS, h = blockIdx.y, b = blockIdx.z;
    const size_t q_width = (size_t)n_heads * D, kv_width = (size_t)(n_heads / group) * D;
    const size_t q_off = (size_t)b * seq * q_width + (size_t)h * D;
    const size_t kv_off = (size_t)b * seq * kv_width + (size_t)(h / group) * D;

    flash_load_rows<D>(Qs, q + q_off + t0 * q_width, q_width, FLASH_BLOCK_ROWS, seq - t0);
    for (int i = threadIdx.x; i < FLASH_BLOCK_ROWS * L::LDO; i += blockDim.x)
        Os[i] = 0.0f;
    for (int i = threadIdx.x; i < FLASH_BLOCK_ROWS; i += blockDim.x) {
        row_max[i] = -INFINITY;
        row_sum[i] = 0.0f;
    }
    const int last_key = min(t0 + FLASH_BLOCK_ROWS, seq) - 1;
    for (int s0 = 0; s0 <= last_key; s0 += FWD_KEYS) {
        __syncthreads(); /* every warp is done with the previous K, V */
        flash_load_rows<D>(Ks, k + kv_off + s0 * kv_width, kv_width, FWD_KEYS, seq - s0);
        flash_load_rows<D>(Vs, v + kv_off + s0 * kv_width, kv_width, FWD_KEYS, seq - s0);
        __syncthreads();
        flash_warp_abt<FWD_KEYS, D>(Ss + row0 * L::LDS, L::LDS, Qs + row0 * L::LD, L::LD, Ks, L::LD);
        __syncwarp();
        for (int r = row0; r < row0 + FLASH_WARP_ROWS; r++)
            online_softmax_row<D>(r, t0 + r, s0, seq, scale_log2, Ss, Ps, Os, row_max, row_sum);
        __syncwarp();
        flash_acc acc[D / 16];
        for (int n = 0; n < D / 16; n++)
            nvcuda::wmma::load_matrix_sync(acc[n], Os + row0 * L::LDO + n * 16, L::LDO, nvcuda::wmma::mem_row_major);
        flash_warp_ab<D, FWD_KEYS>(acc, Ps + row0 * L::LDP, L::LDP, Vs, L::LD);
        for (int n = 0; n < D / 16; n++)
            nvcuda::wmma::store_matrix_sync(Os + row0 * L::LDO + n * 16, acc[n], L::LDO, nvcuda::wmma::mem_row_major);
        __syncwarp();
    }

    for (int r = row0; r < row0 + FLASH_WARP_ROWS && t0 + r < seq; r++) {
        const size_t at = q_off + (size_t)(t0 + r) * q_width;
        const float inv_sum = 1.0f / row_sum[r];
        if (!STATS) {
            for (int d = lane; d < D; d += 32)
                out[at + d] = Os[r * L::LDO + d] * inv_sum;
            continue;
        }
        float dot = 0.0f;
        for (int d = lane; d < D; d += 32)
            dot += __bfloat162float(__float2bfloat16(dout[at + d])) * Os[r * L::LDO + d] * inv_sum;
        dot = warp_reduce(dot, reduce_sum());
        if (lane == 0) {
            const size_t row = ((size_t)b * n_heads + h) * seq + t0 + r;
            lse2[row] = row_max[r] + log2f(row_sum[r]);
            delta[row] = dot;
        }
    }
}

template <int D, bool STATS>
static sq_status launch_forward(float *out, float *lse2, float *delta, const float *dout, const float *q,
                                const float *k, const float *v, int batch, int seq, int n_heads, int n_kv_heads)
{
    const size_t bytes = forward_smem<D>::bytes;
    CUDA_CHECK(cudaFuncSetAttribute(flash_forward<D, STATS>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
    const dim3 grid((unsigned)((seq + FLASH_BLOCK_ROWS - 1) / FLASH_BLOCK_ROWS), (unsigned)n_heads, (unsigned)batch);
    const float scale_log2 = (float)(M_LOG2E / sqrt((double)D));
    flash_forward<D, STATS><<<grid, FLASH_THREADS, bytes>>>(out, lse2, delta, dout, q, k, v, seq, n_heads,
                                                            n_heads / n_kv_heads, scale_log2);
    CUDA_CHECK_LAUNCH();
    return SQ_OK;
}

sq_status flash_forward_stats(float *lse2, float *delta, const float *dout, const float *q, const float *k,
                              const float *v, int batch, int seq, int n_heads, int n_kv_heads, int head_dim)
{
    if (head_dim == 64)
        return launch_forward<64, true>(NULL, lse2, delta, dout, q, k, v, batch, seq, n_heads, n_kv_heads);
    return launch_forward<128, true>(NULL, lse2, delta, dout, q, k, v, batch, seq, n_heads, n_kv_heads);
}

extern "C" bool kn_cuda_flash_supported(int head_dim) { return head_dim == 64 || head_dim == 128; }

extern "C" sq_status kn_cuda_flash_attention(float *out, const float *q, const float *k, const float *v, int batch,
                                             int seq, int n_heads, int n_kv_heads, int head_dim)
{
    SQ_TRY(kn_cuda_attention_shape("kn_attention", batch, seq, n_heads, n_kv_heads, head_dim));
    if (!kn_cuda_flash_supported(head_dim))
        return sq_fail(SQ_ERR_UNSUPPORTED, "kn_attention: the flash kernels take head_dim 64 or 128, not %d", head_dim);
    if (batch == 0 || seq == 0)
        return SQ_OK;
    if (head_dim == 64)
        return launch_forward<64, false>(out, NULL, NULL, NULL, q, k, v, batch, seq, n_heads, n_kv_heads);
    return launch_forward<128, false>(out, NULL, NULL, NULL, q, k, v, batch, seq, n_heads, n_kv_heads);
}
