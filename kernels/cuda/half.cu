/* half.cu (CUDA backend): fp16 copies of fp32 operands for the tensor cores. The
 * forward's linears and the Hessians' Xᵀ X take fp16 inputs with fp32 accumulation:
 * fp16 keeps 11 significant bits, as TF32 does, so the products are exact in fp32 and
 * the results as accurate as the TF32 ones, at the tensor cores' 16-bit rate (about
 * twice TF32's). The range is fp16's: a magnitude above 65504 becomes inf and shows
 * in the output. The copies live in two scratch slots, grown as needed and kept until
 * kn_shutdown; every use is on the one stream, so a slot is free again once the call
 * that filled it has been queued. */
#include <cuda_fp16.h>

#include "kernels/cuda/cuda_common.h"

#define SLOTS 2

static __half *slot_data[SLOTS];
static size_t slot_capacity[SLOTS];

/* Four floats per thread through one 16-byte load where the pointer allows it. */
__global__ void to_half_kernel(__half *out, const float *in, size_t n)
{
    size_t quads = ((uintptr_t)in % 16 == 0) ? n / 4 : 0;
    GRID_STRIDE(q, quads)
    {
        float4 v = reinterpret_cast<const float4 *>(in)[q];
        out[4 * q] = __float2half_rn(v.x);
        out[4 * q + 1] = __float2half_rn(v.y);
        out[4 * q + 2] = __float2half_rn(v.z);
        out[4 * q + 3] = __float2half_rn(v.w);
    }
    GRID_STRIDE(i, n - 4 * quads) out[4 * quads + i] = __float2half_rn(in[4 * quads + i]);
}

extern "C" sq_status kn_cuda_to_half(const float *x, size_t n, int slot, const void **out)
{
    if (slot < 0 || slot >= SLOTS)
        return sq_fail(SQ_ERR_ARG, "kn_cuda_to_half: no scratch slot %d", slot);
    if (n > slot_capacity[slot]) {
        cudaFree(slot_data[slot]); /* waits for the queued work that reads it */
        slot_data[slot] = NULL;
        slot_capacity[slot] = 0;
        CUDA_CHECK(cudaMalloc((void **)&slot_data[slot], n * sizeof(__half)));
        slot_capacity[slot] = n;
    }
    if (n > 0) {
        to_half_kernel<<<kn_cuda_blocks((n + 3) / 4, 256), 256>>>(slot_data[slot], x, n);
        CUDA_CHECK_LAUNCH();
    }
    *out = slot_data[slot];
    return SQ_OK;
}

extern "C" void kn_cuda_half_shutdown(void)
{
    for (int s = 0; s < SLOTS; s++) {
        cudaFree(slot_data[s]);
        slot_data[s] = NULL;
        slot_capacity[s] = 0;
    }
}
