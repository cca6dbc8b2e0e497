"""test_forward_reference.py: `shardq eval --data-ids` against an independent
NumPy (float64) Llama-family forward pass.

The reference (llama_reference.py) is written from the architecture (Llama /
Qwen2 as in Hugging Face transformers: RMSNorm, rotate-half RoPE with optional
llama3 / linear scaling, grouped-query causal attention, SwiGLU MLP, tied or
separate LM head) and reads checkpoints with its own safetensors parser
(struct + json + numpy; bf16 as uint16 << 16). Perplexity follows the GPTQ protocol:
nsamples = ntokens // seqlen non-overlapping windows, every position but the
first scored, ppl = exp(mean NLL). shardq must agree to 1e-4 relative.

Fixtures come from build/tools/make_tiny_model (Llama / Mistral / Qwen2,
GQA on and off, shards, bf16/fp16/f32) and from a small writer here for what
that tool does not make (llama3 and linear RoPE scaling, in the top-level layout and in transformers
5's rope_parameters, Llama with attention_bias).
"""
import json
import math
import os
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

from llama_reference import load_model, read_checkpoint, reference_nll

ROOT = Path(os.environ.get("SHARDQ_ROOT", Path(__file__).resolve().parents[2]))
SHARDQ = ROOT / "shardq"
MAKE_TINY = ROOT / "build" / "tools" / "make_tiny_model"
WORK = ROOT / "build" / "test-forward-reference"

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
                  dtype="BF16", shards=1, attention_bias=False, tied=True, rope_scaling=None, model_type="llama",
                  rope_theta=10000.0, rope_layout="top-level"):
    """Llama's attention_bias puts biases on q/k/v/o; Qwen2 always has q/k/v biases and no o bias.
    rope_layout "top-level" writes rope_theta and rope_scaling as transformers < 5 does,
    "rope_parameters" one rope_parameters object (theta, type and scaling) as transformers >= 5 does."""
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
        qkv_bias = attention_bias or model_type == "qwen2"
        linear(p + "self_attn.q_proj", heads * head_dim, hidden, qkv_bias)
        linear(p + "self_attn.k_proj", kv_heads * head_dim, hidden, qkv_bias)
        linear(p + "self_attn.v_proj", kv_heads * head_dim, hidden, qkv_bias)
        linear(p + "self_attn.o_proj", hidden, heads * head_dim, attention_bias and model_type == "llama")
        t[p + "post_attention_layernorm.weight"] = 1 + 0.1 * rng.normal(size=hidden)
        linear(p + "mlp.gate_proj", inter, hidden)
        linear(p + "mlp.up_proj", inter, hidden)
        linear(p + "mlp.down_proj", hidden, inter)
    t["model.norm.weight"] = 1 + 0.1 * rng.normal(size=hidden)
    if not tied:
        t["lm_head.weight"] = rng.normal(0, 0.15, (vocab, hidden))

    model_dir = Path(model_dir)
    shutil.rmtree(model_dir, ignore_errors=True)
    model_dir.mkdir(parents=True)
    arch = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM"}[model_type]
    config = {
        "architectures": [arch], "model_type": model_type, "hidden_size": hidden, "intermediate_size": inter,
        "num_hidden_layers": layers, "num_attention_heads": heads, "num_key_value_heads": kv_heads,
        "vocab_size": vocab, "max_position_embeddings": 512, "rms_norm_eps": 1e-5,
        "tie_word_embeddings": tied, "bos_token_id": 1, "eos_token_id": 2,
        "torch_dtype": "bfloat16" if dtype == "BF16" else "float32", "hidden_act": "silu",
    }
    if model_type == "llama":
        config["attention_bias"] = attention_bias
    if rope_layout == "rope_parameters":
        config["rope_parameters"] = {"rope_theta": rope_theta, "rope_type": "default", **(rope_scaling or {})}
    else:
        config["rope_theta"] = rope_theta
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


def reference_ppl_of(model, ids, seqlen, max_windows=None, kv_bits=0):
    """(windows, perplexity) of a loaded (config, tensors) model over non-overlapping windows."""
    nsamples = len(ids) // seqlen
    if max_windows:
        nsamples = min(nsamples, max_windows)
    nll = np.concatenate([reference_nll(None, ids[i * seqlen : (i + 1) * seqlen], model=model, kv_bits=kv_bits)
                          for i in range(nsamples)])
    return nsamples, nll, math.exp(nll.mean())


def reference_ppl(model_dir, ids, seqlen, max_windows=None, kv_bits=0):
    return reference_ppl_of(load_model(model_dir), ids, seqlen, max_windows, kv_bits)


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


# llama3 scaling with an original context of 16 positions: over 24-token windows every regime
# (kept, blended, divided frequencies) matters.
LLAMA3_SHORT = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                "original_max_position_embeddings": 16}

CASES = {
    "gqa-bf16": dict(kv_heads=2),
    "mha-f32": dict(kv_heads=4, dtype="F32"),
    "sharded-untied": dict(kv_heads=2, shards=3, tied=False),
    "llama-attention-bias": dict(kv_heads=2, attention_bias=True, dtype="F32"),
    "llama3-rope": dict(kv_heads=1, rope_scaling=LLAMA3_SHORT),
    "linear-rope": dict(kv_heads=2, rope_scaling={"type": "linear", "factor": 4.0}, rope_theta=100.0),
    # transformers >= 5: theta and scaling in rope_parameters (a small theta, so a wrong one shows)
    "rope-parameters-theta": dict(kv_heads=2, rope_layout="rope_parameters", rope_theta=100.0),
    "rope-parameters-llama3": dict(kv_heads=1, rope_layout="rope_parameters", rope_theta=500.0,
                                   rope_scaling=LLAMA3_SHORT),
    "rope-parameters-linear": dict(kv_heads=2, rope_layout="rope_parameters", rope_theta=100.0,
                                   rope_scaling={"rope_type": "linear", "factor": 4.0}),
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
    assert metrics["data_tokens"] == len(ids)
    assert metrics["seqlen"] == seqlen
    assert metrics["ppl"] == pytest.approx(ppl, rel=1e-4)
    assert metrics["nll"] == pytest.approx(nll.mean(), rel=1e-4)
    # random weights predict random ids poorly, but not uniformly: a real signal to match
    assert abs(math.log(ppl) - math.log(256)) > 0.05
    if "rope" in case:
        # The RoPE settings matter to the result: without them (theta 10000, no scaling) the
        # reference gives another perplexity, so reading them wrongly cannot pass.
        cfg, weights = load_model(model_dir)
        plain = {k: v for k, v in cfg.items() if k not in ("rope_theta", "rope_scaling", "rope_parameters")}
        _, _, plain_ppl = reference_ppl_of((plain, weights), ids, seqlen)
        assert abs(plain_ppl - ppl) > 1e-3 * ppl, (plain_ppl, ppl)


def test_max_windows_micro_batches_and_logit_chunks(tmp_path):
    model_dir = write_fixture(WORK / "gqa-small-batch", seed=3, kv_heads=2)
    seqlen = 16
    ids = random_ids(9, 256, 5 * seqlen)
    windows, nll, ppl = reference_ppl(model_dir, ids, seqlen, max_windows=3)
    metrics, _ = shardq_eval(model_dir, ids, seqlen, tmp_path,
                             ["--max-windows", "3", "--batch", "2", "--logits-chunk", "4"])
    assert metrics["windows"] == windows == 3
    assert metrics["ppl"] == pytest.approx(ppl, rel=1e-4)


def test_kv_cache_quantization_matches_reference(tmp_path):
    model_dir = write_fixture(WORK / "kv-quant", seed=4, kv_heads=2)
    seqlen = 24
    ids = random_ids(6, 256, 3 * seqlen)
    _, _, exact_ppl = reference_ppl(model_dir, ids, seqlen)
    for bits in (4, 2):
        _, _, ppl = reference_ppl(model_dir, ids, seqlen, kv_bits=bits)
        metrics, _ = shardq_eval(model_dir, ids, seqlen, tmp_path, ["--kv-cache-bits", str(bits)])
        assert metrics["kv_cache_bits"] == bits
        assert metrics["ppl"] == pytest.approx(ppl, rel=1e-4)
        assert abs(ppl - exact_ppl) > 1e-3 * exact_ppl  # the simulation does change the result


def test_out_of_vocabulary_id_is_a_clear_error(tmp_path):
    model_dir = write_fixture(WORK / "gqa-bf16-oov", seed=2)
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("1 2 3 999 4\n")
    proc = subprocess.run([str(SHARDQ), "eval", "--model", str(model_dir), "--data-ids", str(ids_file),
                           "--seqlen", "2"], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "ids.txt: token 3 has id 999" in proc.stderr


TINY_MODEL_CASES = {
    "tiny-llama-gqa": ["--kv-heads", "2"],
    "tiny-llama-mha": ["--kv-heads", "4", "--tie"],
    "tiny-llama-sharded": ["--kv-heads", "2", "--shards", "3", "--dtype", "fp16"],
    "tiny-qwen2-bias": ["--arch", "qwen2", "--kv-heads", "2", "--dtype", "f32"],
    "tiny-mistral-1kv": ["--arch", "mistral", "--kv-heads", "1", "--layers", "3"],
}


@pytest.mark.parametrize("case", sorted(TINY_MODEL_CASES))
def test_eval_on_make_tiny_model_fixtures(case, tmp_path):
    assert MAKE_TINY.exists(), "build/tools/make_tiny_model is built by make"
    model_dir = WORK / case
    shutil.rmtree(model_dir, ignore_errors=True)
    subprocess.run([str(MAKE_TINY), str(model_dir), "--seed", "17", *TINY_MODEL_CASES[case]], check=True,
                   capture_output=True, timeout=120)
    cfg = json.loads((model_dir / "config.json").read_text())
    if case == "tiny-qwen2-bias":
        assert any(name.endswith("q_proj.bias") for name in read_checkpoint(model_dir))
    seqlen = 20
    ids = random_ids(7, cfg["vocab_size"], 3 * seqlen + 5)
    windows, nll, ppl = reference_ppl(model_dir, ids, seqlen)
    metrics, _ = shardq_eval(model_dir, ids, seqlen, tmp_path)
    assert metrics["windows"] == windows == 3
    assert metrics["ppl"] == pytest.approx(ppl, rel=1e-4)
    assert abs(math.log(ppl) - math.log(cfg["vocab_size"])) > 0.05


def test_eval_on_text_tokenized_like_the_reference(tmp_path):
    """--data TEXT: the model's tokenizer.json applied by the `tokenizers` library (its
    post-processor adds BOS) gives the ids the reference scores."""
    tokenizers = pytest.importorskip("tokenizers")
    model_dir = WORK / "tiny-llama-text"
    shutil.rmtree(model_dir, ignore_errors=True)
    subprocess.run([str(MAKE_TINY), str(model_dir), "--seed", "23", "--kv-heads", "2"], check=True,
                   capture_output=True, timeout=120)
    wiki = Path("/work/shared/data/wikitext-2/test.txt")
    text = wiki.read_text(encoding="utf-8")[:2500] if wiki.exists() else "The quick brown fox. " * 100
    text_file = tmp_path / "corpus.txt"
    text_file.write_text(text, encoding="utf-8")
    ids = tokenizers.Tokenizer.from_file(str(model_dir / "tokenizer.json")).encode(text).ids
    assert ids[0] == 1  # BOS
    seqlen = 32
    windows, nll, ppl = reference_ppl(model_dir, ids, seqlen, max_windows=4)
    out = tmp_path / "metrics.json"
    proc = subprocess.run([str(SHARDQ), "eval", "--model", str(model_dir), "--data", str(text_file), "--seqlen",
                           str(seqlen), "--max-windows", "4", "--out", str(out)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads(out.read_text())
    assert metrics["data_format"] == "text"
    assert metrics["data_tokens"] == len(ids)
    assert metrics["windows"] == windows == 4
    assert metrics["ppl"] == pytest.approx(ppl, rel=1e-4)
    assert f"ppl {metrics['ppl']:.4f}" in proc.stdout


def test_usage_errors(tmp_path):
    def run(*args):
        return subprocess.run([str(SHARDQ), "eval", *args], capture_output=True, text=True, timeout=60)

    assert run("--data-ids", "x").returncode == 2  # no --model
    assert run("--model", "m", "--data", "a", "--data-ids", "b").returncode == 2  # two data sources
    assert run("--model", "m", "--data-ids", "b", "--seqlen", "1").returncode == 2
    model_dir = write_fixture(WORK / "gqa-bf16-usage", seed=2)
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("1 2 3\n")
    proc = run("--model", str(model_dir), "--data-ids", str(ids_file), "--seqlen", "8")
    assert proc.returncode == 1
    assert "3 tokens make no window of 8 tokens" in proc.stderr
