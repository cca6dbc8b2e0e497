/* memory.c (CPU backend): "device" memory is host memory, so allocation and
 * transfers are malloc and memcpy. kn_init sets OpenBLAS to one thread (the
 * backend's threads are OpenMP's, over work split in a fixed way: see gemm.c)
 * and reports the OpenMP thread count. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>
#include <omp.h>

#include "kernels/kernels.h"

static char device_description[128];

sq_status kn_init(int local_rank)
{
    (void)local_rank;
    openblas_set_num_threads(1);
    snprintf(device_description, sizeof device_description, "cpu (%d threads, OpenBLAS)", omp_get_max_threads());
    return SQ_OK;
}

void kn_shutdown(void) {}

const char *kn_backend_name(void) { return "cpu"; }

const char *kn_device_description(void) { return device_description[0] ? device_description : "cpu"; }

sq_status kn_alloc(void **dev, size_t bytes)
{
    /* 64-byte alignment for vector loads; never a zero-size request. */
    size_t rounded = (bytes + 63) / 64 * 64;
    *dev = aligned_alloc(64, rounded ? rounded : 64);
    if (!*dev)
        return sq_fail(SQ_ERR_NOMEM, "cannot allocate %zu bytes", bytes);
    return SQ_OK;
}

void kn_free(void *dev) { free(dev); }

sq_status kn_upload(void *dev_dst, const void *host_src, size_t bytes)
{
    memcpy(dev_dst, host_src, bytes);
    return SQ_OK;
}

sq_status kn_download(void *host_dst, const void *dev_src, size_t bytes)
{
    memcpy(host_dst, dev_src, bytes);
    return SQ_OK;
}

sq_status kn_copy(void *dev_dst, const void *dev_src, size_t bytes)
{
    memmove(dev_dst, dev_src, bytes);
    return SQ_OK;
}

sq_status kn_synchronize(void) { return SQ_OK; }

sq_status kn_upload_as_f32(float *dev_dst, const void *host_src, sq_dtype dtype, size_t n)
{
    return sq_convert_to_f32(dev_dst, host_src, dtype, n);
}

sq_status kn_widen_to_f32(float *dev_dst, const void *dev_src, sq_dtype dtype, size_t n)
{
    return sq_convert_to_f32(dev_dst, dev_src, dtype, n);
}

sq_status kn_upload_beside(void *dev_dst, const void *host_src, size_t bytes)
{
    memcpy(dev_dst, host_src, bytes);
    return SQ_OK;
}

sq_status kn_fill(float *x, float value, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] = value;
    return SQ_OK;
}
