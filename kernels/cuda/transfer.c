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

/* kn_upload_beside: a non-blocking stream of its own, so it neither waits for the legacy default
 * stream's work nor makes that work wait, and two pinned halves. A pageable cudaMemcpyAsync is
 * staged by the driver on the calling thread under locks the computing thread's launches also
 * take, which slowed the computation beside it (bench/RESULTS.md); here this thread copies a
 * chunk into one half while the copy engine moves the other half to the device, and the
 * driver sees only pinned copies. Made at the first use; where pinned memory cannot be had,
 * the copy is the driver's pageable one. */
#define BESIDE_HALF_BYTES ((size_t)16 << 20)

static cudaStream_t beside;
static void *beside_half[2];
static cudaEvent_t beside_half_free[2]; /* recorded after the transfer that read the half */
static bool beside_unpinned;
static pthread_mutex_t beside_lock = PTHREAD_MUTEX_INITIALIZER;

static sq_status beside_setup(void)
{
    if (beside)
        return SQ_OK;
    CUDA_CHECK(cudaStreamCreateWithFlags(&beside, cudaStreamNonBlocking));
    for (int h = 0; h < 2 && !beside_unpinned; h++) {
        if (cudaHostAlloc(&beside_half[h], BESIDE_HALF_BYTES, cudaHostAllocDefault) != cudaSuccess ||
            cudaEventCreateWithFlags(&beside_half_free[h], cudaEventDisableTiming) != cudaSuccess) {
            cudaGetLastError(); /* clear it: the pageable copy still works */
            beside_unpinned = true;
        }
    }
    return SQ_OK;
}

static sq_status upload_through_halves(char *dev_dst, const char *host_src, size_t bytes)
{
    for (size_t off = 0, k = 0; off < bytes; off += BESIDE_HALF_BYTES, k++) {
        int h = (int)(k % 2);
        size_t n = bytes - off < BESIDE_HALF_BYTES ? bytes - off : BESIDE_HALF_BYTES;
        if (k >= 2)
            CUDA_CHECK(cudaEventSynchronize(beside_half_free[h])); /* its previous transfer is done */
        memcpy(beside_half[h], host_src + off, n);
        CUDA_CHECK(cudaMemcpyAsync(dev_dst + off, beside_half[h], n, cudaMemcpyHostToDevice, beside));
        CUDA_CHECK(cudaEventRecord(beside_half_free[h], beside));
    }
    return SQ_OK;
}

sq_status kn_upload_beside(void *dev_dst, const void *host_src, size_t bytes)
{
    pthread_mutex_lock(&beside_lock);
    sq_status st = beside_setup();
    if (st == SQ_OK && beside_unpinned)
        st = CUDA_STATUS(cudaMemcpyAsync(dev_dst, host_src, bytes, cudaMemcpyHostToDevice, beside));
    else if (st == SQ_OK)
        st = upload_through_halves(dev_dst, host_src, bytes);
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
    for (int h = 0; h < 2; h++) {
        if (beside_half[h])
            cudaFreeHost(beside_half[h]);
        if (beside_half_free[h])
            cudaEventDestroy(beside_half_free[h]);
        beside_half[h] = NULL, beside_half_free[h] = NULL;
    }
    beside_unpinned = false;
    pthread_mutex_unlock(&beside_lock);
    pthread_mutex_lock(&stage_lock);
    if (stage)
        cudaFreeHost(stage);
    stage = NULL;
    stage_unavailable = false;
    pthread_mutex_unlock(&stage_lock);
}
