"""quant_grid_reference: the GPTQ quantizer's grid (find_params) and rounding, in
NumPy float32, written from the reference implementation's description — shared by
the GPTQ and SparseGPT reference tests."""
import numpy as np


def find_params(x, maxq, sym):
    """Per-row min/max grid of the GPTQ quantizer, in float32."""
    x = x.astype(np.float32)
    xmin = np.minimum(x.min(axis=1), 0).astype(np.float32)
    xmax = np.maximum(x.max(axis=1), 0).astype(np.float32)
    if sym:
        xmax = np.maximum(np.abs(xmin), xmax)
        xmin = np.where(xmin < 0, -xmax, xmin)
    both_zero = (xmin == 0) & (xmax == 0)
    xmin = np.where(both_zero, np.float32(-1), xmin)
    xmax = np.where(both_zero, np.float32(1), xmax)
    scale = ((xmax - xmin) / np.float32(maxq)).astype(np.float32)
    if sym:
        zero = np.full_like(scale, (maxq + 1) / 2)
    else:
        zero = np.round(-xmin / scale).astype(np.float32)  # np.round: half to even, as torch.round
    return scale, zero


def quantize(w, scale, zero, maxq):
    q = np.clip(np.round(w / scale) + zero, 0, maxq).astype(np.float32)
    return q, (scale * (q - zero)).astype(np.float32)
