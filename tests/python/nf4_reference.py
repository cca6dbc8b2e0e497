"""nf4_reference: NF4 quantization in NumPy, written from the QLoRA paper and
bitsandbytes' documented algorithm (not from lora/nf4.c): the NF4 table
derived from normal quantiles (create_normal_map, offset 0.9677083), blocks of
64 with absmax, nearest code; double quantization of the absmax (minus their
mean) in blocks of 256 to the signed 8-bit dynamic map (create_dynamic_map)."""
from statistics import NormalDist

import numpy as np


def nf4_table():
    ppf = NormalDist().inv_cdf
    offset = 0.9677083
    pos = [ppf(float(p)) for p in np.linspace(offset, 0.5, 9, dtype=np.float32)[:-1]]
    neg = [-ppf(float(p)) for p in np.linspace(offset, 0.5, 8, dtype=np.float32)[:-1]]
    values = np.sort(np.array(pos + [0.0] + neg))
    return (values / values.max()).astype(np.float32)


def dynamic_map():
    data = []
    for i in range(7):
        bounds = np.linspace(0.1, 1, 2 ** i + 1)
        means = (bounds[:-1] + bounds[1:]) / 2
        data += list(10.0 ** (i - 6) * means) + list(-(10.0 ** (i - 6)) * means)
    data += [0.0, 1.0]
    assert len(data) == 256
    return np.sort(np.array(data)).astype(np.float32)


def nearest(table, x):
    return np.abs(x[:, None] - table[None, :]).argmin(axis=1)  # argmin: ties to the lower index


def quantize(w):
    table, code8 = nf4_table(), dynamic_map()
    blocks = w.reshape(-1, 64)
    absmax = np.abs(blocks).max(axis=1)
    codes = nearest(table, (blocks / absmax[:, None]).ravel().astype(np.float32))
    packed = (codes[0::2] << 4 | codes[1::2]).astype(np.uint8)
    offset = np.float32(absmax.astype(np.float64).mean())
    centred = (absmax - offset).astype(np.float32)
    pad = (-len(centred)) % 256
    groups = np.concatenate([centred, np.zeros(pad, np.float32)]).reshape(-1, 256)
    absmax2 = np.abs(groups).max(axis=1)
    qabsmax = nearest(code8, (groups / absmax2[:, None]).ravel().astype(np.float32))[:len(centred)]
    absmax_deq = code8[qabsmax] * np.repeat(absmax2, 256)[:len(centred)] + offset
    deq = table[codes] * np.repeat(absmax_deq, 64)
    return dict(packed=packed, qabsmax=qabsmax.astype(np.uint8), absmax2=absmax2, offset=offset, code8=code8,
                deq=deq.astype(np.float32))


def dequantized(w):
    """The weights as an NF4 base gives them back (float32, same shape)."""
    return quantize(np.ascontiguousarray(w, dtype=np.float32).ravel())["deq"].reshape(w.shape)
