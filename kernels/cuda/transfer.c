/* transfer.c (CUDA backend): host <-> device copies (kn_upload, kn_download).
 *
 * A plain cudaMemcpy into pageable memory is slow for large buffers: the
 * driver stages it through its own pinned memory and copies out on one CPU
 * thread, and a freshly allocated destination is faulted in page by page on
 * that thread too. A solved 7B layer's 200 MB of codes took 160 ms that way
 * (1.2 GB/s). Copies of STAGED_FROM bytes or more therefore go through a
 * pinned staging buffer of STAGE_BYTES, a chunk at a time: the DMA runs at
 * the link's speed and every OpenMP thread copies (and faults in) its share
 * of the chunk. Uploads do the same the other way, in two halves of the buffer
 * so that one half's DMA overlaps the threads filling the other: a 7B model's
 * weights, read from the page cache through the checkpoint's mapping, went up
 * at 6.2 GB/s as plain cudaMemcpy calls. Small copies stay plain cudaMemcpy.
 * The staging buffer is allocated at the first large copy and kept until
 * kn_shutdown; a mutex serialises its users (the background saver may run
 * beside the main thread). Where pinned memory cannot be had, copies stay plain. */
#include <pthread.h>
#include <string.h>

#include "kernels/cuda/cuda_common.h"

#define STAGE_BYTES ((size_t)64 << 20)
#define STAGED_FROM ((size_t)4 << 20)

static void *stage;
static cudaEvent_t half_free[2]; /* an upload's DMA out of each half of the stage has finished */
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
    if (!stage && !stage_unavailable) {
        bool ok = cudaHostAlloc(&stage, STAGE_BYTES, cudaHostAllocDefault) == cudaSuccess;
        for (int h = 0; h < 2 && ok; h++)
            ok = cudaEventCreateWithFlags(&half_free[h], cudaEventDisableTiming) == cudaSuccess;
        if (!ok) {
            cudaGetLastError(); /* clear it: plain copies still work */
            if (stage)
                cudaFreeHost(stage);
            stage = NULL;
            stage_unavailable = true;
        }
    }
    if (stage)
        return true;
    pthread_mutex_unlock(&stage_lock);
    return false;
}

sq_status kn_upload(void *dev_dst, const void *host_src, size_t bytes)
{
    if (bytes < STAGED_FROM || !stage_acquire()) {
        CUDA_CHECK(cudaMemcpy(dev_dst, host_src, bytes, cudaMemcpyHostToDevice));
        return SQ_OK;
    }
    const size_t half = STAGE_BYTES / 2;
    sq_status st = SQ_OK;
    for (size_t off = 0, k = 0; off < bytes && st == SQ_OK; off += half, k++) {
        size_t n = bytes - off < half ? bytes - off : half;
        char *buf = (char *)stage + (k % 2) * half;
        st = CUDA_STATUS(cudaEventSynchronize(half_free[k % 2])); /* its previous DMA is done */
        if (st != SQ_OK)
            break;
        parallel_copy(buf, (const char *)host_src + off, n);
        st = CUDA_STATUS(cudaMemcpyAsync((char *)dev_dst + off, buf, n, cudaMemcpyHostToDevice, 0));
        if (st == SQ_OK)
            st = CUDA_STATUS(cudaEventRecord(half_free[k % 2], 0));
    }
    for (int h = 0; h < 2; h++) { /* the caller may free or reuse host_src once this returns */
        sq_status done = CUDA_STATUS(cudaEventSynchronize(half_free[h]));
        if (st == SQ_OK)
            st = done;
    }
    pthread_mutex_unlock(&stage_lock);
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
    pthread_mutex_lock(&stage_lock);
    if (stage) {
        cudaFreeHost(stage);
        for (int h = 0; h < 2; h++)
            cudaEventDestroy(half_free[h]);
    }
    stage = NULL;
    stage_unavailable = false;
    pthread_mutex_unlock(&stage_lock);
}
