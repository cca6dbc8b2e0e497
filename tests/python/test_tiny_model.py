"""test_tiny_model.py: the fixture tool build/tools/make_tiny_model writes a checkpoint that
independent readers accept: safetensors parsed by st_numpy_reader (struct+json+numpy), the
tokenizer loaded by Hugging Face `tokenizers`, HF tensor names and shapes for each architecture,
deterministic weights whatever the shard count, and a next-token distribution that is peaked."""
import json
import os
import subprocess

import numpy as np
import pytest
from tokenizers import Tokenizer

import st_numpy_reader as st

ROOT = st.repo_root()
TOOL = os.path.join(ROOT, "build", "tools", "make_tiny_model")


def make(tmp_path, name, *args):
    out = tmp_path / name
    subprocess.run([TOOL, str(out), *args], check=True)
    return out


def load_all(model_dir):
    """{name: float32 array} over the single file or every shard of the index."""
    index_path = model_dir / "model.safetensors.index.json"
    files = ["model.safetensors"]
    if index_path.exists():
        files = sorted(set(json.loads(index_path.read_text())["weight_map"].values()))
    out = {}
    for f in files:
        header, tensors = st.read(model_dir / f)
        for name, arr in tensors.items():
            assert name not in out
            out[name] = st.bf16_to_f32(arr) if header[name]["dtype"] == "BF16" else arr.astype(np.float32)
    return out


def expected_shapes(cfg, bias=False):
    h, i, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    hd = h // cfg["num_attention_heads"]
    q, kv = cfg["num_attention_heads"] * hd, cfg["num_key_value_heads"] * hd
    shapes = {"model.embed_tokens.weight": (v, h), "model.norm.weight": (h,)}
    if not cfg["tie_word_embeddings"]:
        shapes["lm_head.weight"] = (v, h)
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        shapes.update({
            p + "input_layernorm.weight": (h,), p + "post_attention_layernorm.weight": (h,),
            p + "self_attn.q_proj.weight": (q, h), p + "self_attn.k_proj.weight": (kv, h),
            p + "self_attn.v_proj.weight": (kv, h), p + "self_attn.o_proj.weight": (h, q),
            p + "mlp.gate_proj.weight": (i, h), p + "mlp.up_proj.weight": (i, h), p + "mlp.down_proj.weight": (h, i),
        })
        if bias:
            shapes.update({p + "self_attn.q_proj.bias": (q,), p + "self_attn.k_proj.bias": (kv,),
                           p + "self_attn.v_proj.bias": (kv,)})
    return shapes


def test_default_checkpoint(tmp_path):
    d = make(tmp_path, "default")
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["architectures"] == ["LlamaForCausalLM"] and cfg["model_type"] == "llama"
    assert (cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]) == (64, 160, 2)
    assert (cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["vocab_size"]) == (4, 2, 512)
    assert cfg["rms_norm_eps"] == 1e-5 and cfg["torch_dtype"] == "bfloat16"
    assert cfg["bos_token_id"] == 1 and cfg["eos_token_id"] == 2 and cfg["tie_word_embeddings"] is False
    header, _ = st.read(d / "model.safetensors")
    assert header["__metadata__"] == {"format": "pt"}
    assert {e["dtype"] for k, e in header.items() if k != "__metadata__"} == {"BF16"}
    weights = load_all(d)
    assert {k: v.shape for k, v in weights.items()} == expected_shapes(cfg)
    # Scales documented in the tool.
    assert 0.95 < weights["model.embed_tokens.weight"].std() < 1.05
    assert abs(weights["lm_head.weight"].std() - 2 / 8) < 0.02
    assert abs(weights["model.layers.0.mlp.up_proj.weight"].std() - 0.5 / 8) < 0.01
    assert abs(weights["model.norm.weight"].mean() - 1) < 0.02


def test_qwen2_tied_fp16_sharded(tmp_path):
    d = make(tmp_path, "qwen", "--arch", "qwen2", "--tie", "--dtype", "fp16", "--shards", "3", "--layers", "3")
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["architectures"] == ["Qwen2ForCausalLM"] and cfg["tie_word_embeddings"] is True
    assert cfg["torch_dtype"] == "float16"
    index = json.loads((d / "model.safetensors.index.json").read_text())
    files = sorted(set(index["weight_map"].values()))
    assert files == [f"model-0000{k}-of-00003.safetensors" for k in (1, 2, 3)]
    assert not (d / "model.safetensors").exists()
    total = 0
    for f in files:
        header, tensors = st.read(d / f)
        for name, arr in tensors.items():
            assert index["weight_map"][name] == f
            assert header[name]["dtype"] == "F16"
            total += arr.nbytes
    assert index["metadata"]["total_size"] == total
    weights = load_all(d)
    assert {k: v.shape for k, v in weights.items()} == expected_shapes(cfg, bias=True)


def test_mistral_arch(tmp_path):
    d = make(tmp_path, "mistral", "--arch", "mistral", "--dtype", "f32")
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["architectures"] == ["MistralForCausalLM"] and cfg["model_type"] == "mistral"
    assert {k: v.shape for k, v in load_all(d).items()} == expected_shapes(cfg)


def test_weights_depend_only_on_seed(tmp_path):
    one = load_all(make(tmp_path, "one", "--seed", "7"))
    sharded = load_all(make(tmp_path, "sharded", "--seed", "7", "--shards", "4"))
    other = load_all(make(tmp_path, "other", "--seed", "8"))
    assert one.keys() == sharded.keys()
    for name in one:
        np.testing.assert_array_equal(one[name], sharded[name])
    assert not np.array_equal(one["model.embed_tokens.weight"], other["model.embed_tokens.weight"])


def test_next_token_distribution_is_peaked(tmp_path):
    """Through the embedding, final norm and lm_head alone, the softmax is far from uniform."""
    w = load_all(make(tmp_path, "peak"))
    x = w["model.embed_tokens.weight"][:64]
    x = x / np.sqrt((x * x).mean(axis=1, keepdims=True) + 1e-5) * w["model.norm.weight"]
    logits = x @ w["lm_head.weight"].T
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    entropy = -(p * np.log(p)).sum(axis=1).mean()
    assert entropy < np.log(512) - 1.0


def test_tokenizer_loads_and_round_trips(tmp_path):
    d = make(tmp_path, "tok")
    tok = Tokenizer.from_file(str(d / "tokenizer.json"))
    assert tok.get_vocab_size() <= 512
    assert tok.token_to_id("<unk>") == 0 and tok.token_to_id("<s>") == 1 and tok.token_to_id("</s>") == 2
    assert tok.token_to_id("A") == 3 + ord("A") and tok.token_to_id("\u0120") == 3 + ord(" ")
    enc = tok.encode("the cat in the hat")
    assert enc.ids[0] == 1  # <s> from the post-processor, as add_bos_token says
    assert "Ġthe" in enc.tokens and "in" in enc.tokens
    text = "Grüße, 世界!\n\ttabs and  spaces"
    assert tok.decode(tok.encode(text).ids, skip_special_tokens=True) == text
    for b in range(256):  # every byte has its own token
        assert len(tok.encode(bytes([b]).decode("latin-1")).ids) >= 2
    cfg = json.loads((d / "tokenizer_config.json").read_text())
    assert cfg["bos_token"] == "<s>" and cfg["eos_token"] == "</s>" and cfg["add_bos_token"] is True


@pytest.mark.parametrize("args", [["--hidden", "60"], ["--kv-heads", "3"], ["--vocab", "100"], ["--dtype", "int4"],
                                  ["--layers", "0"], ["--shards", "999"]])
def test_bad_options_are_refused(tmp_path, args):
    r = subprocess.run([TOOL, str(tmp_path / "bad"), *args], capture_output=True, text=True)
    assert r.returncode != 0 and r.stderr
