"""NF4 quantization of lora/nf4.c (through build/tools/lora_tool nf4) against a
NumPy implementation written here from the QLoRA paper and bitsandbytes'
documented algorithm: the NF4 table derived from normal quantiles
(create_normal_map, offset 0.9677083), blocks of 64 with absmax, nearest code;
double quantization of the absmax (minus their mean) in blocks of 256 to the
signed 8-bit dynamic map (create_dynamic_map). Codes and 8-bit absmax must be
identical, the fp32 values and the dequantized weights equal to 1e-6."""
import json
import struct
from statistics import NormalDist

import numpy as np

from shardq_testlib import ROOT, read_safetensors, run

LORA_TOOL = ROOT / "build" / "tools" / "lora_tool"


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


def write_f32(path, name, array):
    header = json.dumps({name: {"dtype": "F32", "shape": list(array.shape),
                                "data_offsets": [0, array.nbytes]}}).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header + array.astype("<f4").tobytes())


def test_nf4_table_matches_the_paper():
    table = nf4_table()
    assert table[0] == -1.0 and table[15] == 1.0 and table[7] == 0.0
    # bitsandbytes' constants, as printed in its source (and used by lora/nf4.c)
    assert np.allclose(table[[1, 8, 14]], [-0.6961928009986877, 0.07958029955625534, 0.7229568362236023], atol=1e-6)


def test_nf4_quantization_matches_numpy(tmp_path):
    rng = np.random.default_rng(4)
    w = (rng.standard_normal(64 * 300) * 0.02).astype(np.float32)  # 300 blocks: two absmax groups, one partial
    w[64:128] *= 20  # one block far larger than the rest
    write_f32(tmp_path / "w.safetensors", "w", w)
    run([LORA_TOOL, "nf4", tmp_path / "w.safetensors", tmp_path / "q.safetensors"])
    got, want = read_safetensors(tmp_path / "q.safetensors"), quantize(w)
    assert np.allclose(got["code8"], want["code8"], rtol=1e-6, atol=0)
    assert np.array_equal(got["packed"], want["packed"])
    assert np.array_equal(got["qabsmax"], want["qabsmax"])
    assert np.allclose(got["absmax2"], want["absmax2"], rtol=1e-6)
    assert np.allclose(got["offset"], want["offset"], rtol=1e-6)
    assert np.allclose(got["deq"], want["deq"], rtol=1e-5, atol=1e-8)
    # and the 4-bit model of w is a close one: NF4's error on normal weights is a few percent
    assert np.linalg.norm(got["deq"] - w) / np.linalg.norm(w) < 0.15
