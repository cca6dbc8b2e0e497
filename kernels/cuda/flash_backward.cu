/* flash_backward.cu (CUDA backend): causal grouped-query attention backward in
 * the flash-attention manner, deterministic (no atomics: every output float is
 * summed by one warp in a fixed order), never forming seq×seq in device memory.
 *
 * Three launches:
 *   1. flash_forward_stats (flash_forward.cu): a recomputed forward that keeps,
 *      per query row, lse2 = log2 Σ_s exp2(x_s) and delta = dO·O. Given the
 *      forward's out and lse2, only delta is formed (flash_delta, from that O:
 *      the same operands and order, so the same bits), at a fraction of the cost.
 *   2. dK, dV: one block per (key block of 64, kv head, sequence), 4 warps each
 *      owning 16 keys; it walks the heads of the kv group in head order and, for
 *      each, the query blocks of 32 from the diagonal on, with
 *        Pᵀ = exp2(K Qᵀ·c − lse2),  dPᵀ = V dOᵀ,  dSᵀ = Pᵀ (dPᵀ − delta)
 *        dV += Pᵀ dO,  dK += dSᵀ Q          (fp32 WMMA accumulators in registers)
 *      and writes dK·scale, dV: the group's heads summed into their kv head.
 *   3. dQ: one block per (query block of 64, head, sequence), walking the key
 *      blocks of 32 up to the diagonal: dQ += dS K, written ×scale.
 * Operands are bf16 in shared memory (from bf16 copies of q, k, v, dO made once
 * per call), products and the softmax are fp32. The tiles a kernel walks over
 * (Q, dO, lse2, delta in the dK/dV kernel; K, V in the dQ kernel) arrive by
 * cp.async into two buffers, the next step's copies in flight during this one's
 * products. Shared memory for head_dim 128: 97 KiB (dK/dV), 92 KiB (dQ); two
 * blocks per SM. */
#include "kernels/cuda/flash_attention.cuh"

#define BWD_QUERIES 32 /* queries per step of the dK/dV kernel */
#define BWD_KEYS 32    /* keys per step of the dQ kernel */

/* Byte offsets of the dK/dV kernel's shared memory: K, V of the block's 64 keys, two buffers of
 * a step's Q and of its dO, one step's scores, dP, P, dS, then two buffers of lse2 and of delta. */
template <int D> struct dkdv_smem {
    static constexpr int LD = flash_ld_bf16(D), LDS = flash_ld_f32(BWD_QUERIES), LDP = flash_ld_bf16(BWD_QUERIES);
    static constexpr size_t tile = BWD_QUERIES * LD * 2, values = BWD_QUERIES * 4; /* one buffer of each */
    static constexpr size_t k = 0, v = k + FLASH_BLOCK_ROWS * LD * 2, q = v + FLASH_BLOCK_ROWS * LD * 2,
                            dout = q + 2 * tile, s = dout + 2 * tile, dp = s + FLASH_BLOCK_ROWS * LDS * 4,
                            p = dp + FLASH_BLOCK_ROWS * LDS * 4, ds = p + FLASH_BLOCK_ROWS * LDP * 2,
                            lse = ds + FLASH_BLOCK_ROWS * LDP * 2, delta = lse + 2 * values,
                            bytes = delta + 2 * values;
    /* The fp32 staging of the results reuses K and V once the walk is over. */
    static_assert(FLASH_BLOCK_ROWS * flash_ld_f32(D) * 4 <= q, "dK/dV staging overlaps Q");
};

/* Byte offsets of the dQ kernel's shared memory: Q, dO of the block's 64 queries, two buffers of
 * a step's K and of its V, one step's scores, dP, dS, then lse2, delta of the block's queries. */
template <int D> struct dq_smem {
    static constexpr int LD = flash_ld_bf16(D), LDS = flash_ld_f32(BWD_KEYS), LDP = flash_ld_bf16(BWD_KEYS);
    static constexpr size_t tile = BWD_KEYS * LD * 2; /* one K or V buffer */
    static constexpr size_t q = 0, dout = q + FLASH_BLOCK_ROWS * LD * 2, k = dout + FLASH_BLOCK_ROWS * LD * 2,
                            v = k + 2 * tile, s = v + 2 * tile, dp = s + FLASH_BLOCK_ROWS * LDS * 4,
                            ds = dp + FLASH_BLOCK_ROWS * LDS * 4, lse = ds + FLASH_BLOCK_ROWS * LDP * 2,
                            delta = lse + FLASH_BLOCK_ROWS * 4, bytes = delta + FLASH_BLOCK_ROWS * 4;
    /* The fp32 staging of dQ reuses Q and dO once the walk is over. */
    static_assert(FLASH_BLOCK_ROWS * flash_ld_f32(D) * 4 <= k, "dQ staging overlaps K");
};

/* Grid (key blocks, n_kv_heads, batch). */
template <int D>
__global__ void __launch_bounds__(FLASH_THREADS)
    flash_backward_dkdv(float *dk, float *dv, const bf16 *dout, const bf16 *q, const bf16 *k, const bf16 *v,
                        const float *lse2, const float *delta, int seq, int n_heads, int group, float scale_log2,
                        float scale)
{
    typedef dkdv_smem<D> L;
    extern __shared__ __align__(128) unsigned char smem[];
    bf16 *Ks = (bf16 *)(smem + L::k), *Vs = (bf16 *)(smem + L::v);
    bf16 *Ps = (bf16 *)(smem + L::p), *dSs = (bf16 *)(smem + L::ds);
    float *Ss = (float *)(smem + L::s), *dPs = (float *)(smem + L::dp);
    const int lane = threadIdx.x % 32, row0 = threadIdx.x / 32 * FLASH_WARP_ROWS;
    const int s0 = blockIdx.x * FLASH_BLOCK_ROWS, kv_head = blockIdx.y, b = blockIdx.z;
    const size_t q_width = (size_t)n_heads * D, kv_width = (size_t)(n_heads / group) * D;
    const size_t kv_off = (size_t)b * seq * kv_width + (size_t)kv_head * D;

    const int first_t0 = s0 / BWD_QUERIES * BWD_QUERIES; /* the first query step that sees a key */
    /* Starts the copies of step (head g of the group, queries from t0) into buffer `buf`. */
    auto load_step = [&](int g, int t0, int buf) {
        const int h = kv_head * group + g;
        const size_t q_off = (size_t)b * seq * q_width + (size_t)h * D, stats = ((size_t)b * n_heads + h) * seq;
        flash_load_rows<D, BWD_QUERIES>((bf16 *)(smem + L::q + buf * L::tile), q + q_off + t0 * q_width, q_width,
                                        seq - t0);
        flash_load_rows<D, BWD_QUERIES>((bf16 *)(smem + L::dout + buf * L::tile), dout + q_off + t0 * q_width,
                                        q_width, seq - t0);
        flash_load_row_values((float *)(smem + L::lse + buf * L::values), lse2 + stats + t0, BWD_QUERIES, seq - t0);
        flash_load_row_values((float *)(smem + L::delta + buf * L::values), delta + stats + t0, BWD_QUERIES,
                              seq - t0);
    };
    flash_load_rows<D, FLASH_BLOCK_ROWS>(Ks, k + kv_off + s0 * kv_width, kv_width, seq - s0);
    flash_load_rows<D, FLASH_BLOCK_ROWS>(Vs, v + kv_off + s0 * kv_width, kv_width, seq - s0);
    load_step(0, first_t0, 0);
    flash_async_commit();
    flash_acc dk_acc[D / 16], dv_acc[D / 16];
    for (int n = 0; n < D / 16; n++) {
        nvcuda::wmma::fill_fragment(dk_acc[n], 0.0f);
        nvcuda::wmma::fill_fragment(dv_acc[n], 0.0f);
    }
    const flash_a_shared own_k = {Ks + row0 * L::LD, L::LD}, own_v = {Vs + row0 * L::LD, L::LD};
    int buf = 0;
    for (int g = 0; g < group; g++) {
        for (int t0 = first_t0; t0 < seq; t0 += BWD_QUERIES, buf ^= 1) {
            __syncthreads(); /* every warp is done with the other buffers (the previous step) */
            const bool same_head = t0 + BWD_QUERIES < seq;
            if (same_head || g + 1 < group)
                load_step(same_head ? g : g + 1, same_head ? t0 + BWD_QUERIES : first_t0, buf ^ 1);
            flash_async_commit();
            flash_async_wait<1>(); /* all but the next step's copies have landed */
            __syncthreads();
            const bf16 *Qs = (const bf16 *)(smem + L::q + buf * L::tile);
            const bf16 *dOs = (const bf16 *)(smem + L::dout + buf * L::tile);
            const float *lse_s = (const float *)(smem + L::lse + buf * L::values);
            const float *delta_s = (const float *)(smem + L::delta + buf * L::values);
            flash_warp_abt<BWD_QUERIES, D>(Ss + row0 * L::LDS, L::LDS, own_k, Qs, L::LD);
            flash_warp_abt<BWD_QUERIES, D>(dPs + row0 * L::LDS, L::LDS, own_v, dOs, L::LD);
            __syncwarp();
            for (int i = lane; i < FLASH_WARP_ROWS * BWD_QUERIES; i += 32) {
                const int r = row0 + i / BWD_QUERIES, c = i % BWD_QUERIES;
                const float p = flash_visible(t0 + c, s0 + r, seq) ? exp2f(Ss[r * L::LDS + c] * scale_log2 - lse_s[c])
                                                                   : 0.0f;
                Ps[r * L::LDP + c] = __float2bfloat16(p);
                dSs[r * L::LDP + c] = __float2bfloat16(p * (dPs[r * L::LDS + c] - delta_s[c]));
            }
            __syncwarp();
            flash_warp_ab<D, BWD_QUERIES>(dv_acc, Ps + row0 * L::LDP, L::LDP, dOs, L::LD);
            flash_warp_ab<D, BWD_QUERIES>(dk_acc, dSs + row0 * L::LDP, L::LDP, Qs, L::LD);
        }
    }
    __syncthreads(); /* K and V become the staging area */
    float *stage = (float *)smem + row0 * flash_ld_f32(D);
    const size_t first = kv_off + (size_t)(s0 + row0) * kv_width;
    flash_warp_store<D>(dk + first, kv_width, seq - s0 - row0, dk_acc, stage, scale);
    flash_warp_store<D>(dv + first, kv_width, seq - s0 - row0, dv_acc, stage, 1.0f);
}

/* Grid (query blocks, n_heads, batch). */
template <int D>
__global__ void __launch_bounds__(FLASH_THREADS)
    flash_backward_dq(float *dq, const bf16 *dout, const bf16 *q, const bf16 *k, const bf16 *v, const float *lse2,
                      const float *delta, int seq, int n_heads, int group, float scale_log2, float scale)
{
    typedef dq_smem<D> L;
    extern __shared__ __align__(128) unsigned char smem[];
    bf16 *Qs = (bf16 *)(smem + L::q), *dOs = (bf16 *)(smem + L::dout), *dSs = (bf16 *)(smem + L::ds);
    float *Ss = (float *)(smem + L::s), *dPs = (float *)(smem + L::dp);
    float *lse_s = (float *)(smem + L::lse), *delta_s = (float *)(smem + L::delta);
    const int lane = threadIdx.x % 32, row0 = threadIdx.x / 32 * FLASH_WARP_ROWS;
    const int t0 = (gridDim.x - 1 - blockIdx.x) * FLASH_BLOCK_ROWS, h = blockIdx.y, b = blockIdx.z;
    const size_t q_width = (size_t)n_heads * D, kv_width = (size_t)(n_heads / group) * D;
    const size_t q_off = (size_t)b * seq * q_width + (size_t)h * D;
    const size_t kv_off = (size_t)b * seq * kv_width + (size_t)(h / group) * D;
    const size_t stats = ((size_t)b * n_heads + h) * seq + t0;

    flash_load_rows<D, FLASH_BLOCK_ROWS>(Qs, q + q_off + t0 * q_width, q_width, seq - t0);
    flash_load_rows<D, FLASH_BLOCK_ROWS>(dOs, dout + q_off + t0 * q_width, q_width, seq - t0);
    flash_load_row_values(lse_s, lse2 + stats, FLASH_BLOCK_ROWS, seq - t0);
    flash_load_row_values(delta_s, delta + stats, FLASH_BLOCK_ROWS, seq - t0);
    /* Starts the copies of the key step from s0 into buffer `buf`. */
    auto load_keys = [&](int s0, int buf) {
        flash_load_rows<D, BWD_KEYS>((bf16 *)(smem + L::k + buf * L::tile), k + kv_off + s0 * kv_width, kv_width,
                                     seq - s0);
        flash_load_rows<D, BWD_KEYS>((bf16 *)(smem + L::v + buf * L::tile), v + kv_off + s0 * kv_width, kv_width,
                                     seq - s0);
    };
    load_keys(0, 0);
    flash_async_commit();
    flash_acc dq_acc[D / 16];
    for (int n = 0; n < D / 16; n++)
        nvcuda::wmma::fill_fragment(dq_acc[n], 0.0f);
    flash_a_held<D> own_q, own_dout;
    const int last_key = min(t0 + FLASH_BLOCK_ROWS, seq) - 1;
    for (int s0 = 0, buf = 0; s0 <= last_key; s0 += BWD_KEYS, buf ^= 1) {
        __syncthreads(); /* every warp is done with the other buffer (the previous step) */
        if (s0 + BWD_KEYS <= last_key)
            load_keys(s0 + BWD_KEYS, buf ^ 1);
        flash_async_commit();
        flash_async_wait<1>(); /* all but the next step's copies have landed */
        __syncthreads();
        const bf16 *Ks = (const bf16 *)(smem + L::k + buf * L::tile), *Vs = (const bf16 *)(smem + L::v + buf * L::tile);
        if (s0 == 0) { /* Q and dO have landed: the warp's rows of them stay in registers */
            own_q.load(Qs + row0 * L::LD, L::LD);
            own_dout.load(dOs + row0 * L::LD, L::LD);
        }
        flash_warp_abt<BWD_KEYS, D>(Ss + row0 * L::LDS, L::LDS, own_q, Ks, L::LD);
        flash_warp_abt<BWD_KEYS, D>(dPs + row0 * L::LDS, L::LDS, own_dout, Vs, L::LD);
        __syncwarp();
        for (int i = lane; i < FLASH_WARP_ROWS * BWD_KEYS; i += 32) {
            const int r = row0 + i / BWD_KEYS, c = i % BWD_KEYS;
            const float p = flash_visible(t0 + r, s0 + c, seq) ? exp2f(Ss[r * L::LDS + c] * scale_log2 - lse_s[r])
                                                               : 0.0f;
            dSs[r * L::LDP + c] = __float2bfloat16(p * (dPs[r * L::LDS + c] - delta_s[r]));
        }
        __syncwarp();
        flash_warp_ab<D, BWD_KEYS>(dq_acc, dSs + row0 * L::LDP, L::LDP, Ks, L::LD);
    }
    __syncthreads(); /* Q and dO become the staging area */
    float *stage = (float *)smem + row0 * flash_ld_f32(D);
    flash_warp_store<D>(dq + q_off + (size_t)(t0 + row0) * q_width, q_width, seq - t0 - row0, dq_acc, stage, scale);
}

/* Launch 1 when the forward kept lse2: delta = dO·O of each query row ([batch][n_heads][seq]),
 * one warp a row, each lane summing d = lane, lane + 32, ... and then the warp: the operands
 * (dO in bf16, O in fp32) and the order of flash_forward's STATS pass, hence its bits. */
template <int D>
__global__ void flash_delta(float *delta, const bf16 *dout, const float *out, int seq, int n_heads, size_t rows)
{
    const size_t row = (size_t)blockIdx.x * FLASH_WARPS + threadIdx.x / 32; /* the same for the whole warp */
    if (row >= rows)
        return;
    const int lane = threadIdx.x % 32, t = (int)(row % seq), h = (int)(row / seq % n_heads);
    const size_t b = row / seq / n_heads;
    const size_t at = (b * seq + t) * n_heads * D + (size_t)h * D;
    float dot = 0.0f;
    for (int d = lane; d < D; d += 32)
        dot += __bfloat162float(dout[at + d]) * out[at + d];
    dot = warp_reduce(dot, reduce_sum());
    if (lane == 0)
        delta[row] = dot;
}

template <int D>
static sq_status launch_delta(float *delta, const bf16 *dout, const float *out, int seq, int n_heads, size_t rows)
{
    flash_delta<D><<<(unsigned)((rows + FLASH_WARPS - 1) / FLASH_WARPS), FLASH_THREADS>>>(delta, dout, out, seq,
                                                                                       n_heads, rows);
    CUDA_CHECK_LAUNCH();
    return SQ_OK;
}

/* Launches 2 and 3, after the statistics of launch 1. */
template <int D>
static sq_status launch_backward(float *dq, float *dk, float *dv, const bf16 *dout, const bf16 *q, const bf16 *k,
                                 const bf16 *v, const float *lse2, const float *delta, int batch, int seq,
                                 int n_heads, int n_kv_heads)
{
    const int group = n_heads / n_kv_heads, blocks = (seq + FLASH_BLOCK_ROWS - 1) / FLASH_BLOCK_ROWS;
    const float scale = (float)(1.0 / sqrt((double)D)), scale_log2 = (float)(M_LOG2E / sqrt((double)D));
    const size_t dkdv_bytes = dkdv_smem<D>::bytes, dq_bytes = dq_smem<D>::bytes;
    SQ_TRY(flash_shared_memory(flash_backward_dkdv<D>, dkdv_bytes));
    SQ_TRY(flash_shared_memory(flash_backward_dq<D>, dq_bytes));
    flash_backward_dkdv<D><<<dim3((unsigned)blocks, (unsigned)n_kv_heads, (unsigned)batch), FLASH_THREADS,
                             dkdv_bytes>>>(dk, dv, dout, q, k, v, lse2, delta, seq, n_heads, group, scale_log2, scale);
    CUDA_CHECK_LAUNCH();
    flash_backward_dq<D><<<dim3((unsigned)blocks, (unsigned)n_heads, (unsigned)batch), FLASH_THREADS, dq_bytes>>>(
        dq, dout, q, k, v, lse2, delta, seq, n_heads, group, scale_log2, scale);
    CUDA_CHECK_LAUNCH();
    return SQ_OK;
}

extern "C" sq_status kn_cuda_flash_attention_backward(float *dq, float *dk, float *dv, const float *dout,
                                                      const float *out, const float *lse2, const float *q,
                                                      const float *k, const float *v, int batch, int seq,
                                                      int n_heads, int n_kv_heads, int head_dim)
{
    SQ_TRY(kn_cuda_attention_shape("kn_attention_backward", batch, seq, n_heads, n_kv_heads, head_dim));
    if (!kn_cuda_flash_supported(head_dim))
        return sq_fail(SQ_ERR_UNSUPPORTED, "kn_attention_backward: the flash kernels take head_dim 64 or 128, not %d",
                       head_dim);
    if (!out != !lse2)
        return sq_fail(SQ_ERR_ARG, "kn_attention_backward: the forward's out and lse2 go together (one is NULL)");
    if (batch == 0 || seq == 0)
        return SQ_OK;
    const bf16 *q16, *k16, *v16, *dout16;
    SQ_TRY(flash_bf16_inputs(&q16, &k16, &v16, q, k, v, batch, seq, n_heads, n_kv_heads, head_dim));
    const size_t rows = (size_t)batch * n_heads * seq;
    SQ_TRY(kn_cuda_to_bf16(dout, rows * head_dim, 3, (const void **)&dout16));
    float *stats = NULL; /* [lse2 then] delta, [batch][n_heads][seq] each: lse2 only where the forward kept none */
    const bool kept = out != NULL;
    CUDA_CHECK(cudaMallocAsync((void **)&stats, (kept ? 1 : 2) * rows * sizeof(float), 0));
    const float *row_lse2 = kept ? lse2 : stats;
    float *delta = kept ? stats : stats + rows;
    sq_status st;
    if (kept)
        st = head_dim == 64 ? launch_delta<64>(delta, dout16, out, seq, n_heads, rows)
                            : launch_delta<128>(delta, dout16, out, seq, n_heads, rows);
    else
        st = flash_forward_stats(stats, delta, dout16, q16, k16, v16, batch, seq, n_heads, n_kv_heads, head_dim);
    if (st == SQ_OK)
        st = head_dim == 64 ? launch_backward<64>(dq, dk, dv, dout16, q16, k16, v16, row_lse2, delta, batch, seq,
                                                  n_heads, n_kv_heads)
                            : launch_backward<128>(dq, dk, dv, dout16, q16, k16, v16, row_lse2, delta, batch, seq,
                                                   n_heads, n_kv_heads);
    sq_status freed = CUDA_STATUS(cudaFreeAsync(stats, 0));
    return st != SQ_OK ? st : freed;
}
