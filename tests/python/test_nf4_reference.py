"""NF4 quantization of lora/nf4.c (through build/tools/lora_tool nf4) against a
NumPy implementation (nf4_reference.py) written from the QLoRA paper and bitsandbytes'
documented algorithm: the NF4 table derived from normal quantiles
(create_normal_map, offset 0.9677083), blocks of 64 with absmax, nearest code;
double quantization of the absmax (minus their mean) in blocks of 256 to the
signed 8-bit dynamic map (create_dynamic_map). Codes and 8-bit absmax must be
identical, the fp32 values and the dequantized weights equal to 1e-6."""
import json
import struct

import numpy as np

from nf4_reference import nf4_table, quantize
from shardq_testlib import ROOT, read_safetensors, run

LORA_TOOL = ROOT / "build" / "tools" / "lora_tool"


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
    # the blocks are spread over OpenMP threads: two threads write the same bytes
    run([LORA_TOOL, "nf4", tmp_path / "w.safetensors", tmp_path / "q2.safetensors"], env={"OMP_NUM_THREADS": "2"})
    assert (tmp_path / "q2.safetensors").read_bytes() == (tmp_path / "q.safetensors").read_bytes()
