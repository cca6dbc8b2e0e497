/* flash_forward.cu (CUDA backend): causal grouped-query attention forward in
 * the flash-attention manner — each thread block takes 64 query rows of one
 * head and walks the key blocks up to the diagonal with an online softmax, so
 * no seq×seq matrix ever reaches device memory.
 *
 * Per key block of 64 (4 warps, each owning 16 query rows):
 *   S = Q Kᵀ            bf16 WMMA, fp32 into shared memory
 *   online softmax      fp32, per row (two lanes a row): running max m, sum l
 *   O = O·rescale + P V P rounded to bf16; O in fp32 WMMA accumulators, whose
 *                       rows are found once per thread (flash_fragment_rows)
 * and O / l is written at the end. K and V arrive by cp.async into two buffers
 * each: the next key block's copies are in flight during this one's products.
 * Shared memory for head_dim 128: Q and two K, V buffers (bf16, 17 KiB each),
 * S (fp32, 17 KiB), P (bf16, 9 KiB): 112 KiB, two blocks per SM. Query blocks
 * are launched last-first: the longest start first.
 *
 * Given lse2, it also writes each row's lse2 = m + log2 l beside O (kn_attention's
 * lse2, which the backward reads instead of recomputing it).
 *
 * The same kernel with STATS set is the backward's first pass when no lse2 was
 * kept: instead of O it writes each row's lse2 and delta = dO·O (the D_t of the
 * flash-attention backward), from a recomputed O and dO rounded to bf16 as the
 * backward's dP = dO Vᵀ sees it: delta then equals Σ_s P_ts dP_ts up to fp32
 * rounding, so dS = P (dP − delta) vanishes where it should (a one-key row). */
#include "kernels/cuda/flash_attention.cuh"

#define FWD_KEYS 64

/* Byte offsets of the forward kernel's shared-memory tiles. */
template <int D> struct forward_smem {
    static constexpr int LD = flash_ld_bf16(D), LDS = flash_ld_f32(FWD_KEYS), LDP = flash_ld_bf16(FWD_KEYS),
                         LDO = flash_ld_f32(D);
    static constexpr size_t tile = FWD_KEYS * LD * 2; /* one K or V buffer */
    static constexpr size_t q = 0, k = q + FLASH_BLOCK_ROWS * LD * 2, v = k + 2 * tile, s = v + 2 * tile,
                            p = s + FLASH_BLOCK_ROWS * LDS * 4,
                            stats = p + FLASH_BLOCK_ROWS * LDP * 2, bytes = stats + 3 * FLASH_BLOCK_ROWS * 4;
    /* The fp32 staging of O reuses Q and K once the walk is over. */
    static_assert(FLASH_BLOCK_ROWS * LDO * 4 <= v, "O staging overlaps V");
};

/* One warp, its 16 rows from row0 (block-local; query t0 + row): folds the key block's scores
 * into each row's running max and sum, writes the probabilities (bf16, relative to the new
 * max) into P, and each row's factor exp2(old max − new max) for O into row_scale. Two lanes
 * per row, on alternate columns. */
__device__ void online_softmax(int row0, int t0, int s0, int seq, float scale_log2, const float *S, bf16 *P,
                               float *row_max, float *row_sum, float *row_scale)
{
    constexpr int LDS = flash_ld_f32(FWD_KEYS), LDP = flash_ld_bf16(FWD_KEYS), PER_LANE = FWD_KEYS / 2;
    const int lane = threadIdx.x % 32, r = row0 + lane / 2, side = lane % 2;
    float x[PER_LANE], block_max = -INFINITY;
#pragma unroll
    for (int j = 0; j < PER_LANE; j++) {
        const int c = side + 2 * j;
        x[j] = flash_visible(t0 + r, s0 + c, seq) ? S[r * LDS + c] * scale_log2 : -INFINITY;
        block_max = fmaxf(block_max, x[j]);
    }
    block_max = fmaxf(block_max, __shfl_xor_sync(0xffffffffu, block_max, 1));
    const float old_max = row_max[r], new_max = fmaxf(old_max, block_max);
    const float base = new_max == -INFINITY ? 0.0f : new_max; /* a row with nothing visible yet */
    float sum = 0.0f;
#pragma unroll
    for (int j = 0; j < PER_LANE; j++) {
        const float p = exp2f(x[j] - base);
        P[r * LDP + side + 2 * j] = __float2bfloat16(p);
        sum += p;
    }
    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
    const float rescale = exp2f(old_max - base);
    __syncwarp(); /* both lanes of a row have read its old max */
    if (side == 0) {
        row_max[r] = new_max;
        row_sum[r] = row_sum[r] * rescale + sum;
        row_scale[r] = rescale;
    }
}

/* acc[n] row by row times factor[row0 + row] (rows: flash_fragment_rows). */
template <int D>
__device__ void scale_rows(flash_acc *acc, const int *rows, const float *factor)
{
    for (int i = 0; i < flash_acc::num_elements; i++) {
        const float f = factor[rows[i]];
        for (int n = 0; n < D / 16; n++)
            acc[n].x[i] *= f;
    }
}

/* Grid (query blocks, n_heads, batch), FLASH_THREADS threads, forward_smem<D>::bytes of shared memory.
 * lse2 ([batch][n_heads][seq]) is written where given. STATS: lse2 and delta instead of out. */
template <int D, bool STATS>
__global__ void __launch_bounds__(FLASH_THREADS)
    flash_forward(float *out, float *lse2, float *delta, const bf16 *dout, const bf16 *q, const bf16 *k,
                  const bf16 *v, int seq, int n_heads, int group, float scale_log2)
{
    typedef forward_smem<D> L;
    extern __shared__ __align__(128) unsigned char smem[];
    bf16 *Qs = (bf16 *)(smem + L::q), *Ps = (bf16 *)(smem + L::p);
    float *Ss = (float *)(smem + L::s);
    float *row_max = (float *)(smem + L::stats), *row_sum = row_max + FLASH_BLOCK_ROWS;
    float *row_scale = row_sum + FLASH_BLOCK_ROWS;
    const int lane = threadIdx.x % 32, row0 = threadIdx.x / 32 * FLASH_WARP_ROWS;
    const int t0 = (gridDim.x - 1 - blockIdx.x) * FLASH_BLOCK_ROWS, h = blockIdx.y, b = blockIdx.z;
    const size_t q_width = (size_t)n_heads * D, kv_width = (size_t)(n_heads / group) * D;
    const size_t q_off = (size_t)b * seq * q_width + (size_t)h * D;
    const size_t kv_off = (size_t)b * seq * kv_width + (size_t)(h / group) * D;

    /* Starts the copies of key block s0's K and V into buffer `buf`. */
    auto load_keys = [&](int s0, int buf) {
        flash_load_rows<D, FWD_KEYS>((bf16 *)(smem + L::k + buf * L::tile), k + kv_off + s0 * kv_width, kv_width,
                                     seq - s0);
        flash_load_rows<D, FWD_KEYS>((bf16 *)(smem + L::v + buf * L::tile), v + kv_off + s0 * kv_width, kv_width,
                                     seq - s0);
    };
    flash_load_rows<D, FLASH_BLOCK_ROWS>(Qs, q + q_off + t0 * q_width, q_width, seq - t0);
    load_keys(0, 0);
    flash_async_commit();
    for (int i = threadIdx.x; i < FLASH_BLOCK_ROWS; i += blockDim.x) {
        row_max[i] = -INFINITY;
        row_sum[i] = 0.0f;
    }
    int frag_rows[flash_acc::num_elements];
    flash_fragment_rows(frag_rows, Ss + row0 * L::LDS, L::LDS);
    flash_acc o_acc[D / 16]; /* the warp's 16 rows of O, unnormalised */
    for (int n = 0; n < D / 16; n++)
        nvcuda::wmma::fill_fragment(o_acc[n], 0.0f);
    const flash_a_shared own_q = {Qs + row0 * L::LD, L::LD}; /* registers are full: read at each use */
    const int last_key = min(t0 + FLASH_BLOCK_ROWS, seq) - 1;
    for (int s0 = 0, buf = 0; s0 <= last_key; s0 += FWD_KEYS, buf ^= 1) {
        __syncthreads(); /* every warp is done with the other buffer (the previous key block) */
        if (s0 + FWD_KEYS <= last_key)
            load_keys(s0 + FWD_KEYS, buf ^ 1);
        flash_async_commit();
        flash_async_wait<1>(); /* all but the next block's copies have landed */
        __syncthreads();
        const bf16 *Ks = (const bf16 *)(smem + L::k + buf * L::tile), *Vs = (const bf16 *)(smem + L::v + buf * L::tile);
        flash_warp_abt<FWD_KEYS, D>(Ss + row0 * L::LDS, L::LDS, own_q, Ks, L::LD);
        __syncwarp();
        online_softmax(row0, t0, s0, seq, scale_log2, Ss, Ps, row_max, row_sum, row_scale);
        __syncwarp();
        scale_rows<D>(o_acc, frag_rows, row_scale + row0);
        flash_warp_ab<D, FWD_KEYS>(o_acc, Ps + row0 * L::LDP, L::LDP, Vs, L::LD);
    }

    float *inv_sum = row_scale; /* now 1 / l per row */
    for (int r = row0 + lane; r < row0 + FLASH_WARP_ROWS; r += 32)
        inv_sum[r] = row_sum[r] > 0.0f ? 1.0f / row_sum[r] : 0.0f;
    __syncwarp();
    scale_rows<D>(o_acc, frag_rows, inv_sum + row0);
    __syncthreads(); /* Q and K become the staging area */
    float *stage = (float *)smem + row0 * L::LDO;
    const int valid = seq - t0 - row0;
    const size_t stats_row0 = ((size_t)b * n_heads + h) * seq + t0 + row0; /* the warp's first row in lse2 */
    if (!STATS) {
        flash_warp_store<D>(out + q_off + (size_t)(t0 + row0) * q_width, q_width, valid, o_acc, stage, 1.0f);
        if (lse2)
            for (int r = lane; r < FLASH_WARP_ROWS && r < valid; r += 32)
                lse2[stats_row0 + r] = row_max[row0 + r] + log2f(row_sum[row0 + r]);
        return;
    }
    flash_warp_stage<D>(stage, o_acc);
    for (int r = 0; r < FLASH_WARP_ROWS && r < valid; r++) {
        const size_t at = q_off + (size_t)(t0 + row0 + r) * q_width;
        float dot = 0.0f;
        for (int d = lane; d < D; d += 32)
            dot += __bfloat162float(dout[at + d]) * stage[r * L::LDO + d];
        dot = warp_reduce(dot, reduce_sum());
        if (lane == 0) {
            lse2[stats_row0 + r] = row_max[row0 + r] + log2f(row_sum[row0 + r]);
            delta[stats_row0 + r] = dot;
        }
    }
}

template <int D, bool STATS>
static sq_status launch_forward(float *out, float *lse2, float *delta, const bf16 *dout, const bf16 *q, const bf16 *k,
                                const bf16 *v, int batch, int seq, int n_heads, int n_kv_heads)
{
    const size_t bytes = forward_smem<D>::bytes;
    SQ_TRY(flash_shared_memory(flash_forward<D, STATS>, bytes));
    const dim3 grid((unsigned)((seq + FLASH_BLOCK_ROWS - 1) / FLASH_BLOCK_ROWS), (unsigned)n_heads, (unsigned)batch);
    const float scale_log2 = (float)(M_LOG2E / sqrt((double)D));
    flash_forward<D, STATS><<<grid, FLASH_THREADS, bytes>>>(out, lse2, delta, dout, q, k, v, seq, n_heads,
                                                            n_heads / n_kv_heads, scale_log2);
    CUDA_CHECK_LAUNCH();
    return SQ_OK;
}

sq_status flash_forward_stats(float *lse2, float *delta, const bf16 *dout, const bf16 *q, const bf16 *k,
                              const bf16 *v, int batch, int seq, int n_heads, int n_kv_heads, int head_dim)
{
    if (head_dim == 64)
        return launch_forward<64, true>(NULL, lse2, delta, dout, q, k, v, batch, seq, n_heads, n_kv_heads);
    return launch_forward<128, true>(NULL, lse2, delta, dout, q, k, v, batch, seq, n_heads, n_kv_heads);
}

sq_status flash_bf16_inputs(const bf16 **q16, const bf16 **k16, const bf16 **v16, const float *q, const float *k,
                            const float *v, int batch, int seq, int n_heads, int n_kv_heads, int head_dim)
{
    const size_t rows = (size_t)batch * seq;
    SQ_TRY(kn_cuda_to_bf16(q, rows * n_heads * head_dim, 0, (const void **)q16));
    SQ_TRY(kn_cuda_to_bf16(k, rows * n_kv_heads * head_dim, 1, (const void **)k16));
    return kn_cuda_to_bf16(v, rows * n_kv_heads * head_dim, 2, (const void **)v16);
}

extern "C" bool kn_cuda_flash_supported(int head_dim) { return head_dim == 64 || head_dim == 128; }

extern "C" sq_status kn_cuda_flash_attention(float *out, float *lse2, const float *q, const float *k, const float *v,
                                             int batch, int seq, int n_heads, int n_kv_heads, int head_dim)
{
    SQ_TRY(kn_cuda_attention_shape("kn_attention", batch, seq, n_heads, n_kv_heads, head_dim));
    if (!kn_cuda_flash_supported(head_dim))
        return sq_fail(SQ_ERR_UNSUPPORTED, "kn_attention: the flash kernels take head_dim 64 or 128, not %d", head_dim);
    if (batch == 0 || seq == 0)
        return SQ_OK;
    const bf16 *q16, *k16, *v16;
    SQ_TRY(flash_bf16_inputs(&q16, &k16, &v16, q, k, v, batch, seq, n_heads, n_kv_heads, head_dim));
    if (head_dim == 64)
        return launch_forward<64, false>(out, lse2, NULL, NULL, q16, k16, v16, batch, seq, n_heads, n_kv_heads);
    return launch_forward<128, false>(out, lse2, NULL, NULL, q16, k16, v16, batch, seq, n_heads, n_kv_heads);
}
