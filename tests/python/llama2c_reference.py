"""A NumPy port of llama2.c's run.c forward pass, reading its original checkpoint
(.bin, legacy v0 layout) directly: the independent reference for models converted
from llama2.c (../shared/data/stories260K). Nothing here reads the Hugging Face
directory; run.c's conventions are kept (interleaved RoPE pairs, weights as run.c
stores them, rmsnorm eps 1e-5, RoPE base 10000)."""
import struct

import numpy as np


def load_bin(path):
    """The v0 header (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len;
    a negative vocab_size means an unshared classifier) and the fp32 arrays in run.c's order."""
    raw = open(path, "rb").read()
    dim, hidden, layers, heads, kv_heads, vocab, seq_len = struct.unpack("<7i", raw[:28])
    shared = vocab > 0
    vocab = abs(vocab)
    head = dim // heads
    data = np.frombuffer(raw, np.float32, offset=28)
    at = 0

    def take(*shape):
        nonlocal at
        n = int(np.prod(shape))
        out = data[at:at + n].reshape(shape)
        at += n
        return out

    w = {"dim": dim, "hidden": hidden, "layers": layers, "heads": heads, "kv_heads": kv_heads, "vocab": vocab,
         "head": head}
    w["embed"] = take(vocab, dim)
    w["rms_att"] = take(layers, dim)
    w["wq"] = take(layers, heads * head, dim)
    w["wk"] = take(layers, kv_heads * head, dim)
    w["wv"] = take(layers, kv_heads * head, dim)
    w["wo"] = take(layers, dim, heads * head)
    w["rms_ffn"] = take(layers, dim)
    w["w1"] = take(layers, hidden, dim)
    w["w2"] = take(layers, dim, hidden)
    w["w3"] = take(layers, hidden, dim)
    w["rms_final"] = take(dim)
    take(seq_len, head // 2)  # freq_cis_real, unused by run.c
    take(seq_len, head // 2)  # freq_cis_imag
    w["wcls"] = w["embed"] if shared else take(vocab, dim)
    if at != data.size:
        raise ValueError(f"{path}: {data.size - at} floats left after the weights")
    return w


def _rmsnorm(x, weight):
    x = x.astype(np.float64)
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + 1e-5) * weight


def _rope(x, head):
    """run.c: element pairs (i, i+1) of each head rotated by pos * 10000^(-(i % head)/head)."""
    seq = x.shape[0]
    i = np.arange(0, x.shape[1], 2)
    freq = 1.0 / 10000.0 ** ((i % head) / head)
    angle = np.arange(seq)[:, None] * freq[None, :]
    cos, sin = np.cos(angle), np.sin(angle)
    out = x.copy()
    out[:, 0::2] = x[:, 0::2] * cos - x[:, 1::2] * sin
    out[:, 1::2] = x[:, 0::2] * sin + x[:, 1::2] * cos
    return out


def logits(w, tokens):
    """Logits [len(tokens), vocab] of one window (causal attention), in float64."""
    seq, head = len(tokens), w["head"]
    x = w["embed"][np.asarray(tokens)].astype(np.float64)
    mask = np.triu(np.full((seq, seq), -np.inf), 1)
    group = w["heads"] // w["kv_heads"]
    for l in range(w["layers"]):
        xb = _rmsnorm(x, w["rms_att"][l])
        q = _rope(xb @ w["wq"][l].T, head)
        k = _rope(xb @ w["wk"][l].T, head)
        v = xb @ w["wv"][l].T
        att = np.empty((seq, w["heads"] * head))
        for h in range(w["heads"]):
            kv = h // group
            qh, kh, vh = (m[:, a * head:(a + 1) * head] for m, a in ((q, h), (k, kv), (v, kv)))
            scores = qh @ kh.T / np.sqrt(head) + mask
            scores = np.exp(scores - scores.max(axis=1, keepdims=True))
            att[:, h * head:(h + 1) * head] = (scores / scores.sum(axis=1, keepdims=True)) @ vh
        x = x + att @ w["wo"][l].T
        xb = _rmsnorm(x, w["rms_ffn"][l])
        h1, h3 = xb @ w["w1"][l].T, xb @ w["w3"][l].T
        x = x + (h1 / (1.0 + np.exp(-h1)) * h3) @ w["w2"][l].T
    return _rmsnorm(x, w["rms_final"]) @ w["wcls"].T


def perplexity(w, ids, seqlen):
    """The GPTQ protocol: non-overlapping windows of seqlen, each scored at positions 1..seqlen-1."""
    nll, count = 0.0, 0
    for start in range(0, len(ids) - seqlen + 1, seqlen):
        window = ids[start:start + seqlen]
        z = logits(w, window)[:-1]
        z = z - z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        nll -= logp[np.arange(seqlen - 1), window[1:]].sum()
        count += seqlen - 1
    return float(np.exp(nll / count))
