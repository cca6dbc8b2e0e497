/* attention.cu (CUDA backend): causal scaled dot-product attention with
 * grouped-query heads, as a simple tiled kernel (correctness first).
 *
 * A thread block takes QUERIES consecutive query positions of one (sequence,
 * head), one warp per query. It walks the keys 0..last query in tiles of 32:
 * the tile's keys and values are loaded once into shared memory and shared by
 * all warps. Each lane scores one key of the tile against its warp's query,
 * and the warp keeps a running ("online") softmax: the running maximum m, the
 * running denominator l and the unnormalised output, rescaled by exp(m_old -
 * m_new) whenever the maximum grows. Lane j holds output dims j, j+32, ...
 * head_dim may be at most 32 * MAX_DIMS_PER_LANE = 256. */
#include "kernels/cuda/cuda_common.h"

#define QUERIES 8 /* warps per block */
#define KEYS 32   /* keys per tile: one per lane */
#define MAX_DIMS_PER_LANE 8

static size_t attention_smem_bytes(int head_dim)
{
    return sizeof(float) * ((size_t)KEYS * (head_dim + 1) + (size_t)KEYS * head_dim + (size_t)QUERIES * head_dim);
}

__global__ void attention_tiles(float *out, const float *q, const float *k, const float *v, int seq, int n_heads,
                                int group, int head_dim, float scale)
{
    extern __shared__ float smem[];
    float *k_tile = smem;                                 /* [KEYS][head_dim + 1]: padded, lanes read rows */
    float *v_tile = k_tile + KEYS * (head_dim + 1);       /* [KEYS][head_dim] */
    float *q_rows = v_tile + KEYS * head_dim;             /* [QUERIES][head_dim] */
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    const int b = blockIdx.z, h = blockIdx.y, kv = h / group;
    const int first_query = blockIdx.x * QUERIES;
    const int t = first_query + warp;
    const size_t q_width = (size_t)n_heads * head_dim, kv_width = (size_t)(n_heads / group) * head_dim;
    const float *q_base = q + (size_t)b * seq * q_width + (size_t)h * head_dim;
    const float *k_base = k + (size_t)b * seq * kv_width + (size_t)kv * head_dim;
    const float *v_base = v + (size_t)b * seq * kv_width + (size_t)kv * head_dim;

    float *my_q = q_rows + warp * head_dim;
    for (int d = lane; d < head_dim; d += 32)
        my_q[d] = t < seq ? q_base[(size_t)t * q_width + d] : 0.0f;

    float acc[MAX_DIMS_PER_LANE];
#pragma unroll
    for (int i = 0; i < MAX_DIMS_PER_LANE; i++)
        acc[i] = 0.0f;
    float running_max = -INFINITY, running_sum = 0.0f;

    int last_query = min(first_query + QUERIES, seq) - 1;
    for (int key0 = 0; key0 <= last_query; key0 += KEYS) {
        __syncthreads(); /* the previous tile is no longer read */
        for (int idx = threadIdx.x; idx < KEYS * head_dim; idx += blockDim.x) {
            int row = idx / head_dim, d = idx % head_dim;
            int key = key0 + row;
            bool in = key < seq;
            k_tile[row * (head_dim + 1) + d] = in ? k_base[(size_t)key * kv_width + d] : 0.0f;
            v_tile[row * head_dim + d] = in ? v_base[(size_t)key * kv_width + d] : 0.0f;
        }
        __syncthreads();
        if (t >= seq || key0 > t)
            continue;
        int key = key0 + lane;
        float score = -INFINITY;
        if (key <= t) {
            float dot = 0.0f;
            const float *kr = k_tile + lane * (head_dim + 1);
            for (int d = 0; d < head_dim; d++)
                dot += my_q[d] * kr[d];
            score = dot * scale;
        }
        float tile_max = score;
        for (int offset = 16; offset > 0; offset /= 2)
            tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, offset));
        float new_max = fmaxf(running_max, tile_max);
        float correction = expf(running_max - new_max);
        float p = key <= t ? expf(score - new_max) : 0.0f;
        float tile_sum = p;
        for (int offset = 16; offset > 0; offset /= 2)
            tile_sum += __shfl_xor_sync(0xffffffffu, tile_sum, offset);
        running_sum = running_sum * correction + tile_sum;
        running_max = new_max;
#pragma unroll
        for (int i = 0; i < MAX_DIMS_PER_LANE; i++)
            acc[i] *= correction;
        int keys_here = min(KEYS, t - key0 + 1);
        for (int j = 0; j < keys_here; j++) {
            float pj = __shfl_sync(0xffffffffu, p, j);
            const float *vr = v_tile + j * head_dim;
#pragma unroll
            for (int i = 0; i < MAX_DIMS_PER_LANE; i++) {
                int d = lane + 32 * i;
                if (d < head_dim)
                    acc[i] += pj * vr[d];
            }
        }
    }
    if (t >= seq)
        return;
    float inv_sum = 1.0f / running_sum;
    float *o = out + ((size_t)b * seq + t) * q_width + (size_t)h * head_dim;
#pragma unroll
    for (int i = 0; i < MAX_DIMS_PER_LANE; i++) {
        int d = lane + 32 * i;
        if (d < head_dim)
            o[d] = acc[i] * inv_sum;
    }
}

extern "C" sq_status kn_attention(float *out, const float *q, const float *k, const float *v, int batch, int seq,
                                  int n_heads, int n_kv_heads, int head_dim)
{
    if (batch < 0 || seq < 0 || n_heads <= 0 || n_kv_heads <= 0 || head_dim <= 0 || n_heads % n_kv_heads)
        return sq_fail(SQ_ERR_ARG, "kn_attention: bad shape batch=%d seq=%d heads=%d kv_heads=%d head_dim=%d", batch,
                       seq, n_heads, n_kv_heads, head_dim);
    if (head_dim > 32 * MAX_DIMS_PER_LANE)
        return sq_fail(SQ_ERR_UNSUPPORTED, "kn_attention: head_dim %d exceeds the CUDA kernel's limit of %d",
                       head_dim, 32 * MAX_DIMS_PER_LANE);
    if (batch == 0 || seq == 0)
        return SQ_OK;
    if (batch > 65535 || n_heads > 65535)
        return sq_fail(SQ_ERR_UNSUPPORTED, "kn_attention: batch %d or heads %d exceed the grid limit", batch, n_heads);
    size_t smem = attention_smem_bytes(head_dim);
    CUDA_CHECK(cudaFuncSetAttribute(attention_tiles, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    dim3 grid((seq + QUERIES - 1) / QUERIES, n_heads, batch);
    attention_tiles<<<grid, QUERIES * 32, smem>>>(out, q, k, v, seq, n_heads, n_heads / n_kv_heads, head_dim,
                                                 (float)(1.0 / sqrt((double)head_dim)));
    CUDA_CHECK_LAUNCH();
    return SQ_OK;
}
