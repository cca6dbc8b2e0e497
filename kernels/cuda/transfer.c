/* transfer.c (CUDA backend): host <-> device copies (kn_upload, kn_download).
 *
 * A plain cudaMemcpy into pageable memory is slow for large buffers: the
 * driver stages it through its own pinned memory and copies out on one CPU
 * thread, and a freshly allocated destination is faulted in page by page on
 * that thread too. A solved 7B layer's 200 MB of codes took 160 ms that way
 * (1.2 GB/s). Downloads of STAGED_FROM bytes or more therefore go through a
 * pinned staging buffer of STAGE_BYTES, a chunk at a time: the DMA runs at
 * the link's speed and every OpenMP thread copies (and faults in) its share
 * of the chunk. Uploads, whose sources are already resident, and small
 * downloads stay plain cudaMemcpy. The staging buffer is allocated at the
 * first large download and kept until kn_shutdown; a mutex serialises its
 * users (the background saver may run beside the main thread). Where pinned
 * memory cannot be had, downloads stay plain. */
#include <pthread.h>
#include <string.h>

#include "kernels/cuda/cuda_common.h"

#define STAGE_BYTES ((size_t)64 << 20)
#define STAGED_FROM ((size_t)4 << 20)

static void *stage;
static bool stage_unavailable;
static pthread_mutex_t stage_lock = PTHREAD_MUTEX_INITIALIZER;

/* memcpy of n bytes by all threads, each a contiguous share. */
static void parallel_copy(char *dst, const char *src, size_t n)
{
    const size_t piece = (size_t)1 << 20;
    const long pieces = (long)((n + piece - 1) / piece);
#pragma omp parallel for schedule(static)
    for (long i = 0; i < pieces; i++) {
        size_t off = (size_t)i * piece;
        memcpy(dst + off, src + off, n - off < piece ? n - off : piece);
    }
}

/* Locks the staging buffer (allocating it the first time); false where it cannot be had. */
static bool stage_acquire(void)
{
    pthread_mutex_lock(&stage_lock);
    if (!stage && !stage_unavailable && cudaHostAlloc(&stage, STAGE_BYTES, cudaHostAllocDefault) != cudaSuccess) {
        cudaGetLastError(); /* clear it: plain copies still work */
        stage = NULL;
        stage_unavailable = true;
    }
    if (stage)
        return true;
    pthread_mutex_unlock(&stage_lock);
    return false;
}

sq_status kn_upload(void *dev_dst, const void *host_src, size_t bytes)
{
    CUDA_CHECK(cudaMemcpy(dev_dst, host_src, bytes, cudaMemcpyHostToDevice));
    return SQ_OK;
}

/* kn_upload_beside's stream: non-blocking, so it neither waits for the legacy default stream's
 * work nor makes that work wait; made at the first use. */
static cudaStream_t beside;
static pthread_mutex_t beside_lock = PTHREAD_MUTEX_INITIALIZER;

sq_status kn_upload_beside(void *dev_dst, const void *host_src, size_t bytes)
{
    pthread_mutex_lock(&beside_lock);
    sq_status st = beside ? SQ_OK : CUDA_STATUS(cudaStreamCreateWithFlags(&beside, cudaStreamNonBlocking));
    if (st == SQ_OK)
        st = CUDA_STATUS(cudaMemcpyAsync(dev_dst, host_src, bytes, cudaMemcpyHostToDevice, beside));
    if (st == SQ_OK)
        st = CUDA_STATUS(cudaStreamSynchronize(beside));
    pthread_mutex_unlock(&beside_lock);
    return st;
}

sq_status kn_download(void *host_dst, const void *dev_src, size_t bytes)
{
    if (bytes < STAGED_FROM || !stage_acquire()) {
        CUDA_CHECK(cudaMemcpy(host_dst, dev_src, bytes, cudaMemcpyDeviceToHost));
        return SQ_OK;
    }
    sq_status st = SQ_OK;
    for (size_t off = 0; off < bytes && st == SQ_OK; off += STAGE_BYTES) {
        size_t n = bytes - off < STAGE_BYTES ? bytes - off : STAGE_BYTES;
        st = CUDA_STATUS(cudaMemcpy(stage, (const char *)dev_src + off, n, cudaMemcpyDeviceToHost));
        if (st == SQ_OK)
            parallel_copy((char *)host_dst + off, stage, n);
    }
    pthread_mutex_unlock(&stage_lock);
    return st;
}

void kn_cuda_transfer_shutdown(void)
{
    pthread_mutex_lock(&beside_lock);
    if (beside)
        cudaStreamDestroy(beside);
    beside = NULL;
    pthread_mutex_unlock(&beside_lock);
    pthread_mutex_lock(&stage_lock);
    if (stage)
        cudaFreeHost(stage);
    stage = NULL;
    stage_unavailable = false;
    pthread_mutex_unlock(&stage_lock);
}
