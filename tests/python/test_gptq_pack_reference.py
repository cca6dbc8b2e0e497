"""Our GPTQ tensors against a NumPy packer written from AutoGPTQ's scheme.

AutoGPTQ's QuantLinear.pack (the "gptq" v1 checkpoint format) transposes the
integer weights to [in, out] and ORs them into uint32 rows: for 2/4/8 bits,
32/bits consecutive input rows per word, value j of a word shifted by
bits*j; for 3 bits, three words carry 32 values — 10 values, then value 10's
low two bits at bit 30 and its high bit at bit 0 of the next word, 10 more
values from bit 1, value 21's low bit at bit 31 and its two high bits at the
start of the third word, and 10 values from bit 2. Zeros are stored as
zero - 1 with the same scheme along the output dimension, scales as fp16
[groups, out]. Dequantization: scale[g_idx[i], o] * (q[i, o] - (qzero + 1)).
"""
import os
import pathlib
import subprocess

import numpy as np
import pytest

ROOT = pathlib.Path(os.environ.get("SHARDQ_ROOT", pathlib.Path(__file__).resolve().parents[2]))
TOOL = ROOT / "build" / "tools" / "gptq_solve"


def pack_rows(values, bits):
    """Pack uint32 values [n, m] along n into words [n*bits/32, m], AutoGPTQ style."""
    values = values.astype(np.uint32)
    n, m = values.shape
    packed = np.zeros((n // 32 * bits, m), dtype=np.uint32)
    i = row = 0
    while row < packed.shape[0]:
        if bits in (2, 4, 8):
            for j in range(i, i + 32 // bits):
                packed[row] |= values[j] << np.uint32(bits * (j - i))
            i += 32 // bits
            row += 1
        else:
            for j in range(i, i + 10):
                packed[row] |= values[j] << np.uint32(3 * (j - i))
            i += 10
            packed[row] |= values[i] << np.uint32(30)
            row += 1
            packed[row] |= (values[i] >> np.uint32(2)) & np.uint32(1)
            i += 1
            for j in range(i, i + 10):
                packed[row] |= values[j] << np.uint32(3 * (j - i) + 1)
            i += 10
            packed[row] |= values[i] << np.uint32(31)
            row += 1
            packed[row] |= (values[i] >> np.uint32(1)) & np.uint32(3)
            i += 1
            for j in range(i, i + 10):
                packed[row] |= values[j] << np.uint32(3 * (j - i) + 2)
            i += 10
            row += 1
    return packed.view(np.int32)


def unpack_rows(packed, bits, n):
    """Inverse of pack_rows through the flat little-endian bit stream of each column."""
    words = packed.view(np.uint32).astype(np.uint64)
    out = np.zeros((n, packed.shape[1]), dtype=np.int64)
    for k in range(n):
        pos = k * bits
        w, s = divmod(pos, 32)
        v = words[w] >> np.uint64(s)
        if s + bits > 32:
            v |= words[w + 1] << np.uint64(32 - s)
        out[k] = (v & np.uint64((1 << bits) - 1)).astype(np.int64)
    return out


def run(tmp, W, H=None, **opt):
    tmp.mkdir(parents=True, exist_ok=True)
    np.save(tmp / "W.npy", W.astype(np.float32))
    cmd = [str(TOOL), "--w", str(tmp / "W.npy"), "--out", str(tmp / "out"), "--pack", "1"]
    if H is None:
        cmd += ["--method", "rtn"]
    else:
        np.save(tmp / "H.npy", H.astype(np.float32))
        cmd += ["--h", str(tmp / "H.npy")]
    for key, value in opt.items():
        cmd += ["--" + key.replace("_", "-"), str(int(value) if isinstance(value, bool) else value)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    return proc, tmp / "out"


CASES = [(bits, sym, gs, desc) for bits in (2, 3, 4, 8) for sym in (True, False)
         for gs, desc in ((32, False), (-1, False), (32, True))]
# Ragged last group: 48 over 128 inputs gives scales/qzeros ceil(128/48) = 3 rows, g_idx 0,0,..,2.
CASES += [(bits, False, 48, desc) for bits in (3, 4) for desc in (False, True)]


@pytest.mark.parametrize("bits,sym,group_size,desc_act", CASES)
def test_packed_bytes_match_autogptq_scheme(tmp_path, bits, sym, group_size, desc_act):
    rng = np.random.default_rng(bits * 10 + group_size)
    out_f, in_f = 64, 128
    W = rng.standard_normal((out_f, in_f)) * 0.02
    H = None
    if desc_act:
        X = rng.standard_normal((256, in_f)) * np.exp(rng.standard_normal(in_f))
        H = 2 / 32 * X.T @ X
    proc, out = run(tmp_path, W, H, bits=bits, sym=sym, group_size=group_size, desc_act=desc_act)
    assert proc.returncode == 0, proc.stderr
    codes = np.load(out / "codes.npy").astype(np.uint32)        # [out, in]
    zeros = np.load(out / "zeros.npy").astype(np.int64)         # [out, groups]
    scales = np.load(out / "scales.npy")                        # [out, groups]
    g_idx = np.load(out / "g_idx.npy")
    assert zeros.min() >= 1, "this test's data keeps zero - 1 non-negative, as AutoGPTQ's packer assumes"

    qweight = np.load(out / "qweight.npy")
    qzeros = np.load(out / "qzeros.npy")
    assert qweight.dtype == np.int32 and qweight.shape == (in_f * bits // 32, out_f)
    assert qzeros.dtype == np.int32 and qzeros.shape == (zeros.shape[1], out_f * bits // 32)
    np.testing.assert_array_equal(qweight, pack_rows(codes.T, bits))
    np.testing.assert_array_equal(qzeros, pack_rows((zeros - 1).astype(np.uint32), bits).T)
    scales16 = np.load(out / "scales_f16.npy")
    assert scales16.dtype == np.float16
    np.testing.assert_array_equal(scales16, scales.T.astype(np.float16))

    q = unpack_rows(qweight, bits, in_f)                        # [in, out]
    z = unpack_rows(qzeros.T.copy(), bits, out_f).T + 1         # [groups, out]
    expect = (scales16.astype(np.float32)[g_idx] * (q - z[g_idx]).astype(np.float32)).T
    np.testing.assert_array_equal(np.load(out / "deq.npy"), expect)
    # fp16 scales aside, the checkpoint decodes to the weights the solve produced.
    np.testing.assert_allclose(np.load(out / "deq.npy"), np.load(out / "wq.npy"), rtol=2e-3, atol=1e-7)


def test_out_features_not_multiple_of_32_refused(tmp_path):
    W = np.random.default_rng(0).standard_normal((40, 64)) * 0.02  # 40 = 5 * (32/4): still refused
    proc, _ = run(tmp_path, W, bits=4, sym=True, group_size=32)
    assert proc.returncode != 0
    assert "divisible by 32" in proc.stderr
