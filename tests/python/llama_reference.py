"""llama_reference.py: an independent NumPy (float64) Llama-family forward pass
for the tests, written from the architecture as Hugging Face transformers
defines it (RMSNorm, rotate-half RoPE with llama3 / linear scaling,
grouped-query causal attention, SwiGLU, tied or separate LM head), reading
checkpoints with its own safetensors parser. It shares no code with shardq.
Also: sampling text from a model, so that a test can score models on text
whose true distribution is known (the model's own)."""
import json
import math
import struct
from pathlib import Path

import numpy as np


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




def rope_settings(cfg):
    """(theta, scaling dict) as transformers reads them: from rope_parameters (transformers >= 5:
    {"rope_theta", "rope_type", "factor", ...}) when the config has it, else from the top-level
    rope_theta and rope_scaling of earlier versions."""
    params = cfg.get("rope_parameters")
    if params:
        return params.get("rope_theta", cfg.get("rope_theta", 10000.0)), params
    return cfg.get("rope_theta", 10000.0), cfg.get("rope_scaling") or {}


def rope_inv_freq(cfg, head_dim):
    theta, rs = rope_settings(cfg)
    inv = 1.0 / theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
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


def fake_quantize_rows(x, bits):
    """Per-row asymmetric min/max grid of 2**bits levels over the last axis (a simulated KV cache)."""
    lo, hi = x.min(axis=-1, keepdims=True), x.max(axis=-1, keepdims=True)
    scale = (hi - lo) / (2**bits - 1)
    safe = np.where(scale > 0, scale, 1.0)
    return np.where(scale > 0, lo + safe * np.round((x - lo) / safe), x)


def fake_quantize_tokens(x, bits):
    """Per-row symmetric grid over the last axis (dynamic per-token int activations, as vLLM's
    W8A8): scale = max|x| / (2**(bits-1) - 1), values rounded half to even and clamped."""
    qmax = 2 ** (bits - 1) - 1
    scale = np.abs(x).max(axis=-1, keepdims=True) / qmax
    safe = np.where(scale > 0, scale, 1.0)
    return np.where(scale > 0, safe * np.clip(np.round(x / safe), -qmax - 1, qmax), x)


def load_model(model_dir):
    """(config dict, {tensor name: float64 array}) of a model directory."""
    return json.loads((Path(model_dir) / "config.json").read_text()), read_checkpoint(model_dir)


def decoder_layer(model, l, x, kv_bits=0, act_bits=0, on_linear_input=None, kv_transform=None):
    """Decoder layer l on the residual stream x [seq, hidden] of one sequence (float64); kv_bits,
    act_bits and kv_transform as reference_logits; on_linear_input(name, input), when given, sees
    each linear's input."""
    cfg, W = model
    hidden, nh = cfg["hidden_size"], cfg["num_attention_heads"]
    nkv = cfg.get("num_key_value_heads", nh)
    hd = cfg.get("head_dim", hidden // nh)
    eps = cfg["rms_norm_eps"]
    inv_freq = rope_inv_freq(cfg, hd)
    seq = x.shape[0]

    def lin(name, inp):
        if on_linear_input:
            on_linear_input(name, inp)
        if act_bits:
            inp = fake_quantize_tokens(inp, act_bits)
        y = inp @ W[name + ".weight"].T
        return y + W[name + ".bias"] if name + ".bias" in W else y

    mask = np.triu(np.full((seq, seq), -np.inf), k=1)
    p = f"model.layers.{l}."
    n = rmsnorm(x, W[p + "input_layernorm.weight"], eps)
    q = apply_rope(lin(p + "self_attn.q_proj", n).reshape(seq, nh, hd), inv_freq)
    k = apply_rope(lin(p + "self_attn.k_proj", n).reshape(seq, nkv, hd), inv_freq)
    v = lin(p + "self_attn.v_proj", n).reshape(seq, nkv, hd)
    if kv_bits:
        k, v = fake_quantize_rows(k, kv_bits), fake_quantize_rows(v, kv_bits)
    if kv_transform:
        k, v = kv_transform(l, k, v)
    heads = []
    for h in range(nh):
        kv = h // (nh // nkv)
        s = q[:, h, :] @ k[:, kv, :].T / math.sqrt(hd) + mask
        s = np.exp(s - s.max(axis=-1, keepdims=True))
        heads.append((s / s.sum(axis=-1, keepdims=True)) @ v[:, kv, :])
    x = x + lin(p + "self_attn.o_proj", np.concatenate(heads, axis=-1))
    n = rmsnorm(x, W[p + "post_attention_layernorm.weight"], eps)
    g = lin(p + "mlp.gate_proj", n)
    return x + lin(p + "mlp.down_proj", g / (1 + np.exp(-g)) * lin(p + "mlp.up_proj", n))


def reference_logits(model, window, kv_bits=0, act_bits=0, inputs=None, kv_transform=None):
    """Logits [len, vocab] (float64) of every position of one window of ids; kv_bits > 0
    fake-quantizes each token's key (after RoPE) and value per head; act_bits > 0 each token's
    input of every decoder linear (fake_quantize_tokens); `inputs` (a dict), when given,
    collects each linear's input [len, in] under its name (a list, one per call);
    kv_transform(layer, k, v) -> (k, v), with k, v [len, kv_heads, head_dim], replaces them
    (another KV cache)."""
    cfg, W = model
    collect = (lambda name, inp: inputs.setdefault(name, []).append(inp)) if inputs is not None else None
    x = W["model.embed_tokens.weight"][np.asarray(window)]
    for l in range(cfg["num_hidden_layers"]):
        x = decoder_layer(model, l, x, kv_bits, act_bits, collect, kv_transform)
    x = rmsnorm(x, W["model.norm.weight"], cfg["rms_norm_eps"])
    head = W["model.embed_tokens.weight"] if cfg.get("tie_word_embeddings", False) else W["lm_head.weight"]
    return x @ head.T


def reference_nll(model_dir, window, model=None, kv_bits=0, act_bits=0, kv_transform=None):
    """Per-token NLL (float64) of positions 1..len-1 of one window of ids."""
    seq = len(window)
    logits = reference_logits(model or load_model(model_dir), window, kv_bits, act_bits,
                              kv_transform=kv_transform)[:-1]
    m = logits.max(axis=-1, keepdims=True)
    lse = (m + np.log(np.exp(logits - m).sum(axis=-1, keepdims=True)))[:, 0]
    return lse - logits[np.arange(seq - 1), np.asarray(window[1:])]


def sample(model_dir, n_seqs, seqlen, seed, first_token=1):
    """n_seqs sequences of seqlen ids drawn from the model itself (temperature 1),
    each starting with first_token (BOS)."""
    model = load_model(model_dir)
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_seqs):
        ids = [first_token]
        while len(ids) < seqlen:
            logits = reference_logits(model, ids)[-1]
            p = np.exp(logits - logits.max())
            ids.append(int(rng.choice(len(p), p=p / p.sum())))
        out.extend(ids)
    return out
