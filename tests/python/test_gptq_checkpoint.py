"""The GPTQ checkpoint directory, read back with an independent safetensors parser.

A tiny Llama-style model (bf16 and fp32 tensors, a q_proj bias, tokenizer
files) is written here by hand; build/tools/gptq_checkpoint_tool quantizes
its layer-0 linears by round-to-nearest and writes the GPTQ checkpoint. We
check every tensor's name, dtype, shape and bytes (packed with a NumPy
packer in AutoGPTQ's scheme, the rest converted to fp16), config.json's
quantization_config (and its RoPE settings kept in transformers 5's rope_parameters layout), the copied tokenizer files, manifest.json's sizes and
sha256, sharding with an index, the dequantizing reader, and the refusal of
a linear whose out_features is not a multiple of 32.
"""
import hashlib
import json
import os
import pathlib
import shutil
import struct
import subprocess
import sys

import numpy as np
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from test_gptq_pack_reference import pack_rows  # noqa: E402
from test_gptq_reference import find_params, quantize  # noqa: E402

ROOT = pathlib.Path(os.environ.get("SHARDQ_ROOT", pathlib.Path(__file__).resolve().parents[2]))
TOOL = ROOT / "build" / "tools" / "gptq_checkpoint_tool"
HIDDEN, INTER, VOCAB = 64, 128, 100
LINEARS = {
    "self_attn.q_proj": (64, 64), "self_attn.k_proj": (32, 64), "self_attn.v_proj": (32, 64),
    "self_attn.o_proj": (64, 64), "mlp.gate_proj": (128, 64), "mlp.up_proj": (128, 64),
    "mlp.down_proj": (64, 128),
}
DTYPES = {"F32": np.float32, "F16": np.float16, "I32": np.int32}


def to_bf16_bits(x):
    return (np.asarray(x, np.float32).view(np.uint32) >> 16).astype(np.uint16)


def bf16_to_f32(bits):
    return (bits.astype(np.uint32) << 16).view(np.float32)


def write_safetensors(path, tensors):
    """tensors: name -> (dtype name, numpy array of the stored bytes' type)."""
    header, blobs, offset = {}, [], 0
    for name, (dtype, array) in tensors.items():
        raw = np.ascontiguousarray(array).tobytes()
        header[name] = {"dtype": dtype, "shape": list(array.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def read_safetensors(path):
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    header.pop("__metadata__", None)
    out = {}
    for name, info in header.items():
        begin, end = info["data_offsets"]
        raw = data[8 + n + begin:8 + n + end]
        out[name] = (info["dtype"], np.frombuffer(raw, DTYPES[info["dtype"]]).reshape(info["shape"]))
    return out


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    d = tmp_path_factory.mktemp("src")
    rng = np.random.default_rng(3)
    tensors = {"model.embed_tokens.weight": ("BF16", to_bf16_bits(rng.standard_normal((VOCAB, HIDDEN)))),
               "lm_head.weight": ("BF16", to_bf16_bits(rng.standard_normal((VOCAB, HIDDEN)) * 0.1)),
               "model.norm.weight": ("F32", np.ones(HIDDEN, np.float32)),
               "model.layers.0.input_layernorm.weight": ("F32", rng.random(HIDDEN).astype(np.float32)),
               "model.layers.0.post_attention_layernorm.weight": ("F32", rng.random(HIDDEN).astype(np.float32)),
               "model.layers.0.self_attn.q_proj.bias": ("F32", rng.standard_normal(64).astype(np.float32))}
    for lin, shape in LINEARS.items():
        tensors[f"model.layers.0.{lin}.weight"] = ("BF16", to_bf16_bits(rng.standard_normal(shape) * 0.05))
    write_safetensors(d / "model.safetensors", tensors)
    config = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": HIDDEN,
              "intermediate_size": INTER, "num_hidden_layers": 1, "num_attention_heads": 4,
              "num_key_value_heads": 2, "vocab_size": VOCAB, "rms_norm_eps": 1e-6, "torch_dtype": "bfloat16",
              "max_position_embeddings": 128, "tie_word_embeddings": False,
              "rope_parameters": {"rope_theta": 100000.0, "rope_type": "default"}}  # transformers 5's layout
    (d / "config.json").write_text(json.dumps(config))
    (d / "tokenizer.json").write_text('{"model": {"type": "BPE", "vocab": {}, "merges": []}}')
    (d / "tokenizer_config.json").write_text('{"bos_token": "<s>"}')
    return d, tensors, config


def run_write(src, out, *extra, group=32):
    linears = ",".join(f"model.layers.0.{lin}" for lin in LINEARS)
    return subprocess.run([str(TOOL), "write", str(src), str(out), "--linears", linears, "--bits", "4",
                           "--group-size", str(group), "--sym", "0", *extra], capture_output=True, text=True)


def expected_linear(bits_array, bits=4, group=32):
    W = bf16_to_f32(bits_array)
    out_f, in_f = W.shape
    maxq = 2**bits - 1
    codes, scales, zeros = np.zeros_like(W), [], []
    for c0 in range(0, in_f, group):  # the last group is shorter where group does not divide in_f
        s, z = find_params(W[:, c0:c0 + group], maxq, False)
        q, _ = quantize(W[:, c0:c0 + group], s[:, None], z[:, None], maxq)
        codes[:, c0:c0 + group] = q
        scales.append(s)
        zeros.append(z)
    scales, zeros = np.stack(scales), np.stack(zeros).astype(np.int64)  # [groups, out]
    return (pack_rows(codes.T.astype(np.uint32), bits), pack_rows((zeros - 1).T.astype(np.uint32), bits).T,
            scales.astype(np.float16), np.arange(in_f, dtype=np.int32) // group)


def test_single_file_checkpoint(source, tmp_path):
    src, tensors, config = source
    out = tmp_path / "gptq"
    proc = run_write(src, out)
    assert proc.returncode == 0, proc.stderr
    got = read_safetensors(out / "model.safetensors")
    names = set()
    for name, (dtype, array) in tensors.items():
        lin = name[len("model.layers.0."):-len(".weight")] if name.startswith("model.layers.0.") else None
        if lin in LINEARS:
            base = name[:-len(".weight")]
            qweight, qzeros, scales, g_idx = expected_linear(array)
            for suffix, want_dtype, want in ((".qweight", "I32", qweight), (".qzeros", "I32", qzeros),
                                             (".scales", "F16", scales), (".g_idx", "I32", g_idx)):
                have_dtype, have = got[base + suffix]
                assert have_dtype == want_dtype, base + suffix
                np.testing.assert_array_equal(have, want, err_msg=base + suffix)
                names.add(base + suffix)
        else:
            values = bf16_to_f32(array) if dtype == "BF16" else array
            assert got[name][0] == "F16", name
            np.testing.assert_array_equal(got[name][1], values.astype(np.float16), err_msg=name)
            names.add(name)
    assert set(got) == names

    cfg = json.loads((out / "config.json").read_text())
    assert cfg["torch_dtype"] == "float16"
    assert cfg["hidden_size"] == HIDDEN and cfg["architectures"] == config["architectures"]
    # The RoPE settings stay in the layout the input used (no top-level rope_theta added).
    assert cfg["rope_parameters"] == config["rope_parameters"]
    assert "rope_theta" not in cfg and "rope_scaling" not in cfg
    assert cfg["quantization_config"] == {"quant_method": "gptq", "bits": 4, "group_size": 32, "desc_act": False,
                                          "sym": False, "damp_percent": 0.01, "static_groups": False,
                                          "true_sequential": True, "checkpoint_format": "gptq"}
    assert json.loads((out / "quantize_config.json").read_text()) == cfg["quantization_config"]
    for name in ("tokenizer.json", "tokenizer_config.json"):
        assert (out / name).read_bytes() == (src / name).read_bytes()
    assert not (out / "special_tokens_map.json").exists()

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["format"] == "shardq-manifest/1"
    assert manifest["method"] == "gptq" and manifest["quantization"] == cfg["quantization_config"]
    listed = manifest["files"]
    assert all(set(entry) == {"sha256", "size"} for entry in listed.values())
    on_disk = {p.name for p in out.iterdir() if p.name != "manifest.json"}
    assert set(listed) == on_disk
    for name, entry in listed.items():
        blob = (out / name).read_bytes()
        assert entry["size"] == len(blob)
        assert entry["sha256"] == hashlib.sha256(blob).hexdigest()

    # The reader dequantizes exactly what the tensors say.
    lin = "model.layers.0.mlp.down_proj"
    proc = subprocess.run([str(TOOL), "read", str(out), lin, str(tmp_path / "w.f32")], capture_output=True,
                          text=True, check=True)
    assert proc.stdout.split() == ["64", "128", "4"]
    W = np.fromfile(tmp_path / "w.f32", np.float32).reshape(64, 128)
    qweight, qzeros, scales, g_idx = (got[lin + s][1] for s in (".qweight", ".qzeros", ".scales", ".g_idx"))
    q = np.stack([(qweight.view(np.uint32)[i * 4 // 32] >> np.uint32(4 * (i % 8))) & 15 for i in range(128)])
    z = np.stack([(qzeros.view(np.uint32)[:, o // 8] >> np.uint32(4 * (o % 8))) & 15 for o in range(64)], 1) + 1
    expect = (scales.astype(np.float32)[g_idx] * (q.astype(np.float32) - z[g_idx].astype(np.float32))).T
    np.testing.assert_array_equal(W, expect)
    source_w = bf16_to_f32(tensors[lin + ".weight"][1])
    assert np.abs(W - source_w).max() <= np.abs(scales).max() * 0.51  # within half a step (+ fp16 scale rounding)

    assert subprocess.run([str(TOOL), "is-gptq", str(out)], capture_output=True, text=True).stdout == "gptq\n"
    assert subprocess.run([str(TOOL), "is-gptq", str(src)], capture_output=True, text=True).stdout == "dense\n"


def test_sharded_checkpoint(source, tmp_path):
    src, tensors, _ = source
    out = tmp_path / "sharded"
    proc = run_write(src, out, "--max-shard-bytes", "16000")
    assert proc.returncode == 0, proc.stderr
    shards = sorted(p.name for p in out.glob("model-*.safetensors"))
    assert len(shards) > 1 and shards[0] == f"model-00001-of-{len(shards):05d}.safetensors"
    assert not (out / "model.safetensors").exists()
    index = json.loads((out / "model.safetensors.index.json").read_text())
    seen = {}
    for shard in shards:
        for name, (_, array) in read_safetensors(out / shard).items():
            assert index["weight_map"][name] == shard
            seen[name] = array.nbytes
    assert set(seen) == set(index["weight_map"])
    assert index["metadata"]["total_size"] == sum(seen.values())
    listed = set(json.loads((out / "manifest.json").read_text())["files"])
    assert set(shards) | {"model.safetensors.index.json", "config.json"} <= listed
    proc = subprocess.run([str(TOOL), "read", str(out), "model.layers.0.self_attn.k_proj", str(tmp_path / "k.f32")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["32", "64", "4"]
    # Writing a single file over it removes the index that readers would otherwise follow.
    assert run_write(src, out).returncode == 0
    assert (out / "model.safetensors").exists() and not (out / "model.safetensors.index.json").exists()


def test_transformers5_dtype_key_kept(source, tmp_path):
    """A transformers 5 config says "dtype" instead of "torch_dtype": it is read, and the output
    says float16 under the same key (not a second, contradicting key)."""
    src, _, config = source
    t5 = tmp_path / "t5"
    shutil.copytree(src, t5)
    cfg = dict(config)
    cfg["dtype"] = cfg.pop("torch_dtype")
    (t5 / "config.json").write_text(json.dumps(cfg))
    proc = run_write(t5, tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    written = json.loads((tmp_path / "out" / "config.json").read_text())
    assert written["dtype"] == "float16" and "torch_dtype" not in written


def test_ragged_last_group_checkpoint(source, tmp_path):
    """group_size 48 over 64 and 128 inputs: scales/qzeros have ceil(in/48) rows (2 and 3), g_idx maps
    every column, the last group is the short one; the reader dequantizes what the tensors say."""
    src, tensors, _ = source
    out = tmp_path / "ragged"
    proc = run_write(src, out, group=48)
    assert proc.returncode == 0, proc.stderr
    got = read_safetensors(out / "model.safetensors")
    for lin, (out_f, in_f) in LINEARS.items():
        base = f"model.layers.0.{lin}"
        qweight, qzeros, scales, g_idx = expected_linear(tensors[base + ".weight"][1], group=48)
        assert scales.shape == (-(-in_f // 48), out_f)
        for suffix, want in ((".qweight", qweight), (".qzeros", qzeros), (".scales", scales), (".g_idx", g_idx)):
            np.testing.assert_array_equal(got[base + suffix][1], want, err_msg=base + suffix)
    assert json.loads((out / "config.json").read_text())["quantization_config"]["group_size"] == 48
    lin = "model.layers.0.mlp.down_proj"
    subprocess.run([str(TOOL), "read", str(out), lin, str(tmp_path / "w.f32")], check=True, capture_output=True)
    W = np.fromfile(tmp_path / "w.f32", np.float32).reshape(64, 128)
    qweight, qzeros, scales, g_idx = (got[lin + s][1] for s in (".qweight", ".qzeros", ".scales", ".g_idx"))
    q = np.stack([(qweight.view(np.uint32)[i * 4 // 32] >> np.uint32(4 * (i % 8))) & 15 for i in range(128)])
    z = np.stack([(qzeros.view(np.uint32)[:, o // 8] >> np.uint32(4 * (o % 8))) & 15 for o in range(64)], 1) + 1
    np.testing.assert_array_equal(g_idx[-33:], [1] + [2] * 32)
    expect = (scales.astype(np.float32)[g_idx] * (q.astype(np.float32) - z[g_idx].astype(np.float32))).T
    np.testing.assert_array_equal(W, expect)


def test_unpackable_linear_is_refused(source, tmp_path):
    src, _, _ = source
    proc = subprocess.run([str(TOOL), "write", str(src), str(tmp_path / "bad"), "--linears", "lm_head",
                           "--group-size", "32"], capture_output=True, text=True)
    assert proc.returncode != 0
    assert "lm_head" in proc.stderr and "divisible by 32" in proc.stderr
    assert not (tmp_path / "bad" / "manifest.json").exists()
