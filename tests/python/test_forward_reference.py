"""test_forward_reference.py: `shardq eval --data-ids` against an independent
NumPy (float64) Llama-family forward pass.

The reference below is written from the architecture (Llama / Qwen2 as in
Hugging Face transformers: RMSNorm, rotate-half RoPE with optional llama3 /
linear scaling, grouped-query causal attention, SwiGLU MLP, tied or separate
LM head) and reads checkpoints with its own safetensors parser (struct + json
+ numpy; bf16 as uint16 << 16). Perplexity follows the GPTQ protocol:
nsamples = ntokens // seqlen non-overlapping windows, every position but the
first scored, ppl = exp(mean NLL). shardq must agree to 1e-4 relative.

Fixtures are written here too (random weights, bf16/f32, one file or shards,
optional q/k/v biases), and with build/tools/make_tiny_model when present.
"""
import json
import math
import os
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(os.environ.get("SHARDQ_ROOT", Path(__file__).resolve().parents[2]))
SHARDQ = ROOT / "shardq"
MAKE_TINY = ROOT / "build" / "tools" / "make_tiny_model"
WORK = ROOT / "build" / "test-forward-reference"

# ---------------------------------------------------------------- safetensors

DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64}


def read_safetensors(path):
    data = Path(path).read_bytes()
    (header_len,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + header_len])
    base = 8 + header_len
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        raw = data[base + begin : base + end]
        if info["dtype"] == "BF16":
            bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
            arr = bits.view(np.float32)
        else:
            arr = np.frombuffer(raw, dtype=np.dtype(DTYPES[info["dtype"]]).newbyteorder("<"))
        tensors[name] = arr.astype(np.float64).reshape(info["shape"])
    return tensors


def read_checkpoint(model_dir):
    model_dir = Path(model_dir)
    index = model_dir / "model.safetensors.index.json"
    if index.exists():
        files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    tensors = {}
    for f in files:
        tensors.update(read_safetensors(model_dir / f))
    return tensors


def to_bf16_bits(x):
    """fp32 -> bf16 bit patterns, round to nearest even."""
    u = np.asarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return rounded.astype(np.uint16)


def write_safetensors(path, tensors, dtype):
    header, blobs, offset = {}, [], 0
    for name, arr in tensors.items():
        if dtype == "BF16":
            raw = to_bf16_bits(arr).astype("<u2").tobytes()
        else:
            raw = np.asarray(arr, dtype="<f4").tobytes()
        header[name] = {"dtype": dtype, "shape": list(arr.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)
    Path(path).write_bytes(struct.pack("<Q", len(head)) + head + b"".join(blobs))


# ---------------------------------------------------------------- fixtures


def write_fixture(model_dir, *, seed, hidden=64, heads=4, kv_heads=2, inter=160, layers=2, vocab=256,
                  dtype="BF16", shards=1, qkv_bias=False, tied=True, rope_scaling=None, model_type="llama"):
    rng = np.random.default_rng(seed)
    head_dim = hidden // heads
    t = {"model.embed_tokens.weight": rng.normal(0, 0.15, (vocab, hidden))}

    def linear(name, out_f, in_f, bias=False):
        t[name + ".weight"] = rng.normal(0, 1.0 / math.sqrt(in_f), (out_f, in_f))
        if bias:
            t[name + ".bias"] = rng.normal(0, 0.2, (out_f,))

    for l in range(layers):
        p = f"model.layers.{l}."
        t[p + "input_layernorm.weight"] = 1 + 0.1 * rng.normal(size=hidden)
        linear(p + "self_attn.q_proj", heads * head_dim, hidden, qkv_bias)
        linear(p + "self_attn.k_proj", kv_heads * head_dim, hidden, qkv_bias)
        linear(p + "self_attn.v_proj", kv_heads * head_dim, hidden, qkv_bias)
        linear(p + "self_attn.o_proj", hidden, heads * head_dim)
        t[p + "post_attention_layernorm.weight"] = 1 + 0.1 * rng.normal(size=hidden)
        linear(p + "mlp.gate_proj", inter, hidden)
        linear(p + "mlp.up_proj", inter, hidden)
        linear(p + "mlp.down_proj", hidden, inter)
    t["model.norm.weight"] = 1 + 0.1 * rng.normal(size=hidden)
    if not tied:
        t["lm_head.weight"] = rng.normal(0, 0.15, (vocab, hidden))

    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    for f in model_dir.glob("*.safetensors*"):
        f.unlink()
    arch = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM"}[model_type]
    config = {
        "architectures": [arch], "model_type": model_type, "hidden_size": hidden, "intermediate_size": inter,
        "num_hidden_layers": layers, "num_attention_heads": heads, "num_key_value_heads": kv_heads,
        "vocab_size": vocab, "max_position_embeddings": 512, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
        "tie_word_embeddings": tied, "bos_token_id": 1, "eos_token_id": 2,
        "torch_dtype": "bfloat16" if dtype == "BF16" else "float32", "hidden_act": "silu",
    }
    if model_type == "llama":
        config["attention_bias"] = qkv_bias
    if rope_scaling:
        config["rope_scaling"] = rope_scaling
    (model_dir / "config.json").write_text(json.dumps(config, indent=2))
    names = list(t)
    if shards == 1:
        write_safetensors(model_dir / "model.safetensors", t, dtype)
    else:
        weight_map = {}
        per = math.ceil(len(names) / shards)
        for s in range(shards):
            fname = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
            part = {n: t[n] for n in names[s * per : (s + 1) * per]}
            write_safetensors(model_dir / fname, part, dtype)
            weight_map.update({n: fname for n in part})
        (model_dir / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return model_dir


# ---------------------------------------------------------------- reference model


def rope_inv_freq(cfg, head_dim):
    theta = cfg.get("rope_theta", 10000.0)
    inv = 1.0 / theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    rs = cfg.get("rope_scaling") or {}
    kind = rs.get("rope_type", rs.get("type"))
    if kind == "linear":
        inv = inv / rs["factor"]
    elif kind == "llama3":
        factor, lo, hi = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"]
        old = rs["original_max_position_embeddings"]
        wavelen = 2 * math.pi / inv
        low_wavelen, high_wavelen = old / lo, old / hi
        scaled = np.where(wavelen > low_wavelen, inv / factor, inv)
        smooth = (old / wavelen - lo) / (hi - lo)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
        inv = np.where(medium, smoothed, scaled)
    return inv


def rmsnorm(x, w, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def apply_rope(x, inv_freq):  # x [seq, heads, head_dim]
    pos = np.arange(x.shape[0], dtype=np.float64)
    ang = np.outer(pos, inv_freq)  # [seq, half]
    cos = np.concatenate([np.cos(ang), np.cos(ang)], axis=-1)[:, None, :]
    sin = np.concatenate([np.sin(ang), np.sin(ang)], axis=-1)[:, None, :]
    half = x.shape[-1] // 2
    rotated = np.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return x * cos + rotated * sin


def reference_nll(model_dir, window):
    """Per-token NLL (float64) of positions 1..len-1 of one window of ids."""
    cfg = json.loads((Path(model_dir) / "config.json").read_text())
    W = read_checkpoint(model_dir)
    hidden, nh = cfg["hidden_size"], cfg["num_attention_heads"]
    nkv = cfg.get("num_key_value_heads", nh)
    hd = cfg.get("head_dim", hidden // nh)
    eps = cfg["rms_norm_eps"]
    inv_freq = rope_inv_freq(cfg, hd)
    seq = len(window)
    x = W["model.embed_tokens.weight"][np.asarray(window)]

    def lin(name, inp):
        y = inp @ W[name + ".weight"].T
        return y + W[name + ".bias"] if name + ".bias" in W else y

    mask = np.triu(np.full((seq, seq), -np.inf), k=1)
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        n = rmsnorm(x, W[p + "input_layernorm.weight"], eps)
        q = apply_rope(lin(p + "self_attn.q_proj", n).reshape(seq, nh, hd), inv_freq)
        k = apply_rope(lin(p + "self_attn.k_proj", n).reshape(seq, nkv, hd), inv_freq)
        v = lin(p + "self_attn.v_proj", n).reshape(seq, nkv, hd)
        heads = []
        for h in range(nh):
            kv = h // (nh // nkv)
            s = q[:, h, :] @ k[:, kv, :].T / math.sqrt(hd) + mask
            s = np.exp(s - s.max(axis=-1, keepdims=True))
            heads.append((s / s.sum(axis=-1, keepdims=True)) @ v[:, kv, :])
        x = x + lin(p + "self_attn.o_proj", np.concatenate(heads, axis=-1))
        n = rmsnorm(x, W[p + "post_attention_layernorm.weight"], eps)
        g = lin(p + "mlp.gate_proj", n)
        x = x + lin(p + "mlp.down_proj", g / (1 + np.exp(-g)) * lin(p + "mlp.up_proj", n))
    x = rmsnorm(x, W["model.norm.weight"], eps)
    head = W["model.embed_tokens.weight"] if cfg.get("tie_word_embeddings", False) else W["lm_head.weight"]
    logits = x[:-1] @ head.T
    m = logits.max(axis=-1, keepdims=True)
    lse = (m + np.log(np.exp(logits - m).sum(axis=-1, keepdims=True)))[:, 0]
    return lse - logits[np.arange(seq - 1), np.asarray(window[1:])]


def reference_ppl(model_dir, ids, seqlen, max_windows=None):
    nsamples = len(ids) // seqlen
    if max_windows:
        nsamples = min(nsamples, max_windows)
    nll = np.concatenate([reference_nll(model_dir, ids[i * seqlen : (i + 1) * seqlen]) for i in range(nsamples)])
    return nsamples, nll, math.exp(nll.mean())


# ---------------------------------------------------------------- shardq


def shardq_eval(model_dir, ids, seqlen, tmp, extra=()):
    ids_file, out = tmp / "ids.txt", tmp / "metrics.json"
    ids_file.write_text(" ".join(map(str, ids)) + "\n")
    proc = subprocess.run(
        [str(SHARDQ), "eval", "--model", str(model_dir), "--data-ids", str(ids_file), "--seqlen", str(seqlen),
         "--out", str(out), *extra],
        capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "2"})
    assert proc.returncode == 0, proc.stderr
    return json.loads(out.read_text()), proc


def random_ids(seed, vocab, n):
    return np.random.default_rng(seed).integers(0, vocab, n).tolist()


CASES = {
    "gqa-bf16": dict(kv_heads=2),
    "mha-f32": dict(kv_heads=4, dtype="F32"),
    "sharded-untied": dict(kv_heads=2, shards=3, tied=False),
    "qwen2-bias": dict(kv_heads=2, qkv_bias=True, model_type="qwen2"),
    "llama3-rope": dict(kv_heads=1, rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                                  "high_freq_factor": 4.0,
                                                  "original_max_position_embeddings": 16}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_eval_matches_numpy_reference(case, tmp_path):
    model_dir = write_fixture(WORK / case, seed=sorted(CASES).index(case) + 11, **CASES[case])
    seqlen = 24
    ids = random_ids(5, 256, 4 * seqlen + 7)  # 4 windows and a dropped tail
    windows, nll, ppl = reference_ppl(model_dir, ids, seqlen)
    metrics, _ = shardq_eval(model_dir, ids, seqlen, tmp_path)
    assert metrics["windows"] == windows == 4
    assert metrics["tokens"] == windows * (seqlen - 1)
    assert metrics["seqlen"] == seqlen
    assert metrics["ppl"] == pytest.approx(ppl, rel=1e-4)
    assert metrics["nll"] == pytest.approx(nll.mean(), rel=1e-4)
    # random weights predict random ids poorly, but not uniformly: a real signal to match
    assert abs(math.log(ppl) - math.log(256)) > 0.05


def test_max_windows_micro_batches_and_logit_chunks(tmp_path):
    model_dir = write_fixture(WORK / "gqa-small-batch", seed=3, kv_heads=2)
    seqlen = 16
    ids = random_ids(9, 256, 5 * seqlen)
    windows, nll, ppl = reference_ppl(model_dir, ids, seqlen, max_windows=3)
    metrics, _ = shardq_eval(model_dir, ids, seqlen, tmp_path,
                             ["--max-windows", "3", "--batch", "2", "--logits-chunk", "4"])
    assert metrics["windows"] == windows == 3
    assert metrics["ppl"] == pytest.approx(ppl, rel=1e-4)


def test_kv_cache_quantization_changes_ppl_a_little(tmp_path):
    model_dir = write_fixture(WORK / "kv-quant", seed=4, kv_heads=2)
    seqlen = 24
    ids = random_ids(6, 256, 3 * seqlen)
    exact, _ = shardq_eval(model_dir, ids, seqlen, tmp_path)
    q8, _ = shardq_eval(model_dir, ids, seqlen, tmp_path, ["--kv-cache-bits", "8"])
    q2, _ = shardq_eval(model_dir, ids, seqlen, tmp_path, ["--kv-cache-bits", "2"])
    assert q8["kv_cache_bits"] == 8
    assert abs(q8["ppl"] - exact["ppl"]) / exact["ppl"] < 1e-2
    assert abs(q2["ppl"] - exact["ppl"]) > abs(q8["ppl"] - exact["ppl"])


def test_out_of_vocabulary_id_is_a_clear_error(tmp_path):
    model_dir = write_fixture(WORK / "gqa-bf16-oov", seed=2)
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("1 2 3 999 4\n")
    proc = subprocess.run([str(SHARDQ), "eval", "--model", str(model_dir), "--data-ids", str(ids_file),
                           "--seqlen", "2"], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "ids.txt: token 3 has id 999" in proc.stderr


@pytest.mark.skipif(not MAKE_TINY.exists(), reason="build/tools/make_tiny_model not built")
def test_eval_on_make_tiny_model_fixture(tmp_path):
    model_dir = WORK / "make-tiny-model"
    subprocess.run([str(MAKE_TINY), str(model_dir)], check=True, capture_output=True, timeout=120)
    cfg = json.loads((model_dir / "config.json").read_text())
    seqlen = 16
    ids = random_ids(7, cfg["vocab_size"], 3 * seqlen + 1)
    windows, nll, ppl = reference_ppl(model_dir, ids, seqlen)
    metrics, _ = shardq_eval(model_dir, ids, seqlen, tmp_path)
    assert metrics["windows"] == windows
    assert metrics["ppl"] == pytest.approx(ppl, rel=1e-4)
