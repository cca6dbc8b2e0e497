/* device_tensor.c: checkpoint tensor -> device fp32, shape-checked (see device_tensor.h). */
#include "model/device_tensor.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "kernels/kernels.h"

sq_status sq_upload_checkpoint_tensor(float *dst, const sq_checkpoint *ckpt, const char *name, int ndim, int64_t d0,
                                      int64_t d1)
{
    return sq_upload_checkpoint_tensor_from(dst, ckpt, name, ndim, d0, d1, NULL);
}

sq_status sq_upload_checkpoint_tensor_from(float *dst, const sq_checkpoint *ckpt, const char *name, int ndim,
                                           int64_t d0, int64_t d1, const void *device_copy)
{
    const sq_st_tensor *t = sq_checkpoint_find(ckpt, name);
    if (!t)
        return sq_fail(SQ_ERR_NOT_FOUND, "%s: no tensor \"%s\" in the checkpoint", sq_checkpoint_dir(ckpt), name);
    bool shape_ok = t->ndim == ndim && t->shape[0] == d0 && (ndim == 1 || t->shape[1] == d1);
    if (!shape_ok) {
        char got[96] = "";
        for (int i = 0; i < t->ndim && i < 4; i++)
            snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", i ? ", " : "", (long long)t->shape[i]);
        if (ndim == 1)
            return sq_fail(SQ_ERR_MISMATCH, "%s: tensor %s has shape [%s], the config implies [%lld]",
                           sq_checkpoint_dir(ckpt), name, got, (long long)d0);
        return sq_fail(SQ_ERR_MISMATCH, "%s: tensor %s has shape [%s], the config implies [%lld, %lld]",
                       sq_checkpoint_dir(ckpt), name, got, (long long)d0, (long long)d1);
    }
    if (t->dtype != SQ_DTYPE_F32 && t->dtype != SQ_DTYPE_F16 && t->dtype != SQ_DTYPE_BF16)
        return sq_fail(SQ_ERR_UNSUPPORTED, "%s: tensor %s has dtype %s; dense weights must be F32, F16 or BF16",
                       sq_checkpoint_dir(ckpt), name, sq_dtype_name(t->dtype));
    if (device_copy)
        return kn_widen_to_f32(dst, device_copy, t->dtype, (size_t)sq_st_numel(t));
    sq_tensor_bytes bytes;
    SQ_TRY(sq_checkpoint_tensor_bytes(ckpt, name, &bytes));
    sq_status st = kn_upload_as_f32(dst, bytes.data, t->dtype, (size_t)sq_st_numel(t));
    sq_tensor_bytes_release(&bytes);
    return st;
}
