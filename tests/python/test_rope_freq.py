"""test_rope_freq.py: shardq's RoPE inverse frequencies (printed by build/tools/rope_inv_freq from a
config.json, in the top-level rope_theta/rope_scaling layout and in transformers 5's rope_parameters) match a NumPy transcription of transformers' rope initialisers: default,
"linear" (inv_freq / factor) and "llama3" (_compute_llama3_parameters: low frequencies divided by
the factor, high ones kept, a linear blend in between)."""
import json
import math
import os
import subprocess

import numpy as np
import pytest

import st_numpy_reader as st

TOOL = os.path.join(st.repo_root(), "build", "tools", "rope_inv_freq")


def shardq_inv_freq(tmp_path, cfg):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    out = subprocess.run([TOOL, str(path)], check=True, capture_output=True, text=True).stdout
    return np.array([float(x) for x in out.split()])


def reference(head_dim, theta, scaling=None):
    inv = 1.0 / theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    if scaling is None:
        return inv
    if scaling["rope_type"] == "linear":
        return inv / scaling["factor"]
    factor, low, high = scaling["factor"], scaling["low_freq_factor"], scaling["high_freq_factor"]
    old = scaling["original_max_position_embeddings"]
    wavelen = 2 * math.pi / inv
    out = np.where(wavelen > old / low, inv / factor, inv)
    smooth = (old / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * out / factor + smooth * out
    medium = ~(wavelen < old / high) & ~(wavelen > old / low)
    return np.where(medium, smoothed, out)


def base_config(**extra):
    cfg = {"architectures": ["LlamaForCausalLM"], "hidden_size": 4096, "intermediate_size": 14336,
           "num_hidden_layers": 2, "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 1000}
    cfg.update(extra)
    return cfg


LLAMA31 = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
           "original_max_position_embeddings": 8192}


@pytest.mark.parametrize("theta,scaling", [(10000.0, None), (500000.0, None),
                                           (10000.0, {"rope_type": "linear", "factor": 4.0}),
                                           (500000.0, LLAMA31)])
def test_inv_freq_matches_numpy(tmp_path, theta, scaling):
    got = shardq_inv_freq(tmp_path, base_config(rope_theta=theta, rope_scaling=scaling))
    want = reference(128, theta, scaling)
    assert got.shape == want.shape == (64,)
    np.testing.assert_allclose(got, want, rtol=2e-6)


@pytest.mark.parametrize("theta,scaling", [(100000.0, None), (10000.0, {"rope_type": "linear", "factor": 4.0}),
                                           (500000.0, LLAMA31)])
def test_rope_parameters_layout_matches_numpy(tmp_path, theta, scaling):
    """transformers 5 writes theta, type and scaling together in rope_parameters."""
    params = {"rope_theta": theta, "rope_type": "default", **(scaling or {})}
    got = shardq_inv_freq(tmp_path, base_config(rope_parameters=params))
    np.testing.assert_allclose(got, reference(128, theta, scaling), rtol=2e-6)


def test_llama3_has_all_three_regions(tmp_path):
    """With Llama 3.1's numbers the 64 frequencies fall into kept, blended and divided ones."""
    got = shardq_inv_freq(tmp_path, base_config(rope_theta=500000.0, rope_scaling=LLAMA31))
    plain = reference(128, 500000.0)
    ratio = got / plain
    assert np.isclose(ratio[0], 1.0) and np.isclose(ratio[-1], 1 / 8)
    blended = (ratio < 0.999) & (ratio > 0.126)
    assert blended.sum() > 0


def test_old_style_type_key_and_head_dim(tmp_path):
    scaling = {"type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 8192}
    got = shardq_inv_freq(tmp_path, base_config(rope_theta=500000.0, rope_scaling=scaling, head_dim=64))
    want = reference(64, 500000.0, dict(scaling, rope_type="llama3"))
    np.testing.assert_allclose(got, want, rtol=2e-6)
