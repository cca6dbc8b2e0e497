/* layer_prefetch.h: the next decoder layer's stored tensors copied to the device on a
 * thread of its own while the current layer computes (the sequential calibration loop).
 *
 * Loading a layer means reading its bf16 tensors through the checkpoint's mapping and
 * copying them to the device: for a 7B layer, 400 MB at about 6 GB/s, ~65 ms of the main
 * thread for each of 32 layers, with the GPU idle meanwhile. Here a background thread
 * uploads layer L+1's float tensors, as stored, into one device buffer (kn_upload_beside:
 * a stream that does not wait for the computation), and loading L+1 then only widens them
 * to fp32 on the device (kn_widen_to_f32). The loaded weights are the same bits.
 *
 * Only a local (memory-mapped) checkpoint is prefetched (a remote one's reads share one
 * connection); tensors that are not F32/F16/BF16 (GPTQ-packed inputs) load as before. */
#ifndef SQ_MODEL_LAYER_PREFETCH_H
#define SQ_MODEL_LAYER_PREFETCH_H

#include <stdbool.h>
#include <stddef.h>

#include "core/background_task.h"
#include "model/checkpoint.h"

typedef struct {
    const sq_checkpoint *ckpt;
    void *device;     /* one layer's float tensors back to back, as stored; NULL: prefetching is off */
    size_t capacity;  /* its bytes: the largest layer's */
    int layer;        /* the layer uploaded or in flight, -1 if none */
    bool in_flight;
    int first, count; /* its tensors: [first, first + count) of the checkpoint's (sorted) list */
    size_t *offset;   /* [count]: each tensor's place in `device`, or SIZE_MAX when not prefetched */
    sq_background_task task;
} sq_layer_prefetch;

/* Ready to prefetch the layers of ckpt (num_layers of them); prefetching stays off (and every
 * lookup misses) for a remote checkpoint or where the device buffer cannot be had. */
sq_status sq_layer_prefetch_init(sq_layer_prefetch *p, const sq_checkpoint *ckpt, int num_layers);

/* Start uploading `layer` in the background. The caller must have waited for the previous one,
 * and nothing queued on the device may still read the buffer (kn_synchronize after the last load). */
sq_status sq_layer_prefetch_start(sq_layer_prefetch *p, int layer);

/* Wait for the upload in flight, if any: its failure, if it failed. */
sq_status sq_layer_prefetch_wait(sq_layer_prefetch *p);

/* The device copy of tensor `name` when it belongs to the uploaded layer, else NULL. */
const void *sq_layer_prefetch_find(const sq_layer_prefetch *p, const char *name);

void sq_layer_prefetch_free(sq_layer_prefetch *p);

#endif
