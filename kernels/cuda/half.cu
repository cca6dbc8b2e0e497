/* half.cu (CUDA backend): 16-bit copies of fp32 operands for the tensor cores.
 *
 * fp16 (kn_cuda_to_half): the forward's linears and the Hessians' Xᵀ X take fp16
 * inputs with fp32 accumulation: fp16 keeps 11 significant bits, as TF32 does, so
 * the products are exact in fp32 and the results as accurate as the TF32 ones, at
 * the tensor cores' 16-bit rate (about twice TF32's). The range is fp16's: a
 * magnitude above 65504 becomes inf, one below about 6e-8 becomes 0.
 *
 * bf16 (kn_cuda_to_bf16): the backward's input gradients (dx = dy W). Loss
 * gradients are tiny (1e-8 and below is common), where fp16 flushes to zero;
 * bf16 keeps fp32's exponent range with 8 significant bits. The flash-attention
 * kernels read bf16 copies of q, k, v and dO (four slots).
 *
 * The copies live in scratch slots per format, grown as needed and kept until
 * kn_shutdown; every use is on the one stream, so a slot is free again once the
 * call that filled it has been queued. */
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "kernels/cuda/cuda_common.h"

#define SLOTS 4

/* One format's scratch slots. */
struct scratch_slots {
    kn_cuda_scratch slot[SLOTS];
};

static struct scratch_slots half_slots, bf16_slots;

__device__ __half to_16bit(float x, __half) { return __float2half_rn(x); }
__device__ __nv_bfloat16 to_16bit(float x, __nv_bfloat16) { return __float2bfloat16_rn(x); }

/* Four floats per thread through one 16-byte load where the pointer allows it. */
template <typename T> __global__ void to_16bit_kernel(T *out, const float *in, size_t n)
{
    size_t quads = ((uintptr_t)in % 16 == 0) ? n / 4 : 0;
    GRID_STRIDE(q, quads)
    {
        float4 v = reinterpret_cast<const float4 *>(in)[q];
        out[4 * q] = to_16bit(v.x, T());
        out[4 * q + 1] = to_16bit(v.y, T());
        out[4 * q + 2] = to_16bit(v.z, T());
        out[4 * q + 3] = to_16bit(v.w, T());
    }
    GRID_STRIDE(i, n - 4 * quads) out[4 * quads + i] = to_16bit(in[4 * quads + i], T());
}

/* `blocks` runs of n floats, block b starting at x + b·n, into the slot with block b at
 * b·stride elements (stride ≥ n). */
template <typename T>
static sq_status to_16bit_copy(struct scratch_slots *slots, const char *who, const float *x, size_t n, int blocks,
                               size_t stride, int slot, const void **out)
{
    if (slot < 0 || slot >= SLOTS)
        return sq_fail(SQ_ERR_ARG, "%s: no scratch slot %d", who, slot);
    kn_cuda_scratch *s = &slots->slot[slot];
    SQ_TRY(kn_cuda_scratch_reserve(s, ((size_t)(blocks - 1) * stride + n) * sizeof(T)));
    for (int b = 0; b < blocks && n > 0; b++) {
        to_16bit_kernel<T><<<kn_cuda_blocks((n + 3) / 4, 256), 256>>>((T *)s->data + (size_t)b * stride,
                                                                       x + (size_t)b * n, n);
        CUDA_CHECK_LAUNCH();
    }
    *out = s->data;
    return SQ_OK;
}

extern "C" sq_status kn_cuda_to_half(const float *x, size_t n, int slot, const void **out)
{
    return to_16bit_copy<__half>(&half_slots, "kn_cuda_to_half", x, n, 1, n, slot, out);
}

extern "C" sq_status kn_cuda_to_half_blocks(const float *x, size_t n, int blocks, size_t stride, int slot,
                                            const void **out)
{
    if (blocks < 1 || stride < n)
        return sq_fail(SQ_ERR_ARG, "kn_cuda_to_half_blocks: %d blocks of %zu at stride %zu", blocks, n, stride);
    return to_16bit_copy<__half>(&half_slots, "kn_cuda_to_half_blocks", x, n, blocks, stride, slot, out);
}

extern "C" sq_status kn_cuda_to_bf16(const float *x, size_t n, int slot, const void **out)
{
    return to_16bit_copy<__nv_bfloat16>(&bf16_slots, "kn_cuda_to_bf16", x, n, 1, n, slot, out);
}

static void free_slots(struct scratch_slots *slots)
{
    for (int s = 0; s < SLOTS; s++)
        kn_cuda_scratch_free(&slots->slot[s]);
}

extern "C" void kn_cuda_half_shutdown(void)
{
    free_slots(&half_slots);
    free_slots(&bf16_slots);
}
