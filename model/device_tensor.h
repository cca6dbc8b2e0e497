/* device_tensor.h: copy one checkpoint tensor to device memory as fp32, after
 * checking that its shape is exactly the one the model config implies. */
#ifndef SQ_MODEL_DEVICE_TENSOR_H
#define SQ_MODEL_DEVICE_TENSOR_H

#include <stdint.h>

#include "core/status.h"
#include "model/checkpoint.h"

/* Upload tensor `name` (stored as F32, F16 or BF16) into the device buffer `dst`.
 * ndim is 1 (shape [d0], d1 ignored) or 2 (shape [d0, d1]). A missing tensor is
 * SQ_ERR_NOT_FOUND, another shape SQ_ERR_MISMATCH, another dtype SQ_ERR_UNSUPPORTED. */
sq_status sq_upload_checkpoint_tensor(float *dst, const sq_checkpoint *ckpt, const char *name, int ndim, int64_t d0,
                                      int64_t d1);

/* The same, widening `device_copy` (the tensor's stored bytes already on the device, from
 * model/layer_prefetch.h) instead of reading the checkpoint when it is not NULL. */
sq_status sq_upload_checkpoint_tensor_from(float *dst, const sq_checkpoint *ckpt, const char *name, int ndim,
                                           int64_t d0, int64_t d1, const void *device_copy);

#endif
