"""Real trained weights: llama2.c's stories260K (../shared/data/stories260K, hidden 64,
MLP 172, GQA 8/4, tied embeddings), through every method and output format.
- `shardq eval` on the Hugging Face directory equals an independent NumPy port of
  run.c reading the original .bin (llama2c_reference.py) on WikiText-2 windows;
- rtn, gptq, awq (W4, W3, per channel), sparsegpt, wanda and magnitude (50%) and
  smoothquant (W8A8) jobs run on it, "output": {"format": "dense"} where GPTQ v1 cannot
  pack the 172-wide MLP, and their WikiText-2 perplexities order as they must: GPTQ and
  AWQ < RTN at 4 and 3 bits, SparseGPT and Wanda < magnitude at 50%, W8A8 within 2% of
  the model with the same 8-bit activations, within bounds measured here (figures and margins below;
  a TinyStories model on WikiText has a high perplexity, 239, but damage still orders it);
- compressed-tensors output, decompressed by the compressed-tensors package, equals the
  dense output of the same job bit for bit (symmetric and asymmetric grids, a 2:4 pruned
  model with its sparsity metadata, mixed precision with a config group per width); transformers loads the symmetric ones and computes
  the dense output's logits;
- a format that cannot hold the model is refused before any work, naming the linear and
  the format to use instead; output.format misuse is a spec error."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from compressed_tensors.compressors.pack_quantized.base import PackedQuantizationCompressor
from compressed_tensors.quantization import QuantizationConfig
from safetensors.torch import load_file
from tokenizers import Tokenizer

import llama2c_reference
from shardq_testlib import SHARDQ, SHARED_DATA, run, write_spec

MODEL = SHARED_DATA / "stories260K"
WIKI = SHARED_DATA / "wikitext-2"
SEQLEN, WINDOWS = 128, 24
LINEARS = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj",
           "mlp.up_proj", "mlp.down_proj"]

pytestmark = pytest.mark.skipif(not MODEL.exists(), reason="../shared/data/stories260K is not present")


@pytest.fixture(scope="module")
def tmp(tmp_path_factory):
    return tmp_path_factory.mktemp("stories260k")


def spec(tmp, name, steps, fmt=None, nsamples=16):
    doc = {"model": str(MODEL), "data": {"calibration": str(WIKI / "valid.txt"), "nsamples": nsamples,
                                         "seqlen": SEQLEN},
           "steps": steps, "state_uri": str(tmp / name / "state"), "output_uri": str(tmp / name / "output"),
           "seed": 5}
    if fmt:
        doc["output"] = {"format": fmt}
    return write_spec(tmp / f"{name}.json", doc)


def job(tmp, name, steps, fmt=None):
    run([SHARDQ, "run", spec(tmp, name, steps, fmt)])
    return tmp / name / "output"


def ppl(tmp, model_dir, *flags):
    out = tmp / "ppl.json"
    run([SHARDQ, "eval", "--model", model_dir, "--data", WIKI / "test.txt", "--seqlen", str(SEQLEN),
         "--max-windows", str(WINDOWS), "--out", out, *flags])
    return json.loads(out.read_text())["ppl"]


def test_eval_matches_runc_port(tmp):
    ids = Tokenizer.from_file(str(MODEL / "tokenizer.json")).encode((WIKI / "test.txt").read_text()[:4000]).ids
    ids = np.array(ids[:4 * SEQLEN])
    (tmp / "ids.txt").write_text(" ".join(map(str, ids)))
    out = tmp / "eval.json"
    run([SHARDQ, "eval", "--model", MODEL, "--data-ids", tmp / "ids.txt", "--seqlen", str(SEQLEN), "--out", out])
    got = json.loads(out.read_text())
    want = llama2c_reference.perplexity(llama2c_reference.load_bin(MODEL / "original" / "stories260K.bin"), ids,
                                        SEQLEN)
    assert got["windows"] == 4
    assert got["ppl"] == pytest.approx(want, rel=1e-5)  # measured: 5e-8 relative


@pytest.fixture(scope="module")
def quality(tmp):
    """WikiText-2 perplexity (24 windows of 128) of every method on stories260K."""
    figures = {"fp": ppl(tmp, MODEL)}
    for method in ("rtn", "gptq"):
        for bits in (4, 3):
            out = job(tmp, f"{method}{bits}", [{method: {"bits": bits, "group_size": -1}}], "dense")
            figures[f"{method}{bits}"] = ppl(tmp, out)
    for method in ("sparsegpt", "wanda", "magnitude"):
        figures[method] = ppl(tmp, job(tmp, method, [{method: {"sparsity": 0.5}}]))
    for bits in (4, 3):
        out = job(tmp, f"awq{bits}", [{"awq": {"bits": bits, "group_size": -1}}], "dense")
        figures[f"awq{bits}"] = ppl(tmp, out)
    figures["fp_a8"] = ppl(tmp, MODEL, "--act-bits", "8")
    for name, step in (("smoothquant_a8", {"smoothquant": {"alpha": 0.5}}), ("rtn8_a8", {"rtn": {"bits": 8}})):
        figures[name] = ppl(tmp, job(tmp, name, [step], "dense"), "--act-bits", "8")
    print(figures)
    return figures


def test_gptq_beats_rtn(quality):
    # measured (16 x 128 calibration windows): fp 238.7; W4 rtn 285.1, gptq 256.6; W3 rtn 572.8, gptq 354.9
    fp = quality["fp"]
    assert quality["gptq4"] < 0.97 * quality["rtn4"]  # measured 0.91
    assert quality["gptq3"] < 0.8 * quality["rtn3"]   # measured 0.62
    assert fp < quality["gptq4"] < 1.2 * fp          # measured 1.09
    assert quality["gptq4"] < quality["gptq3"] < 1.7 * fp  # measured 1.49


def test_pruning_order(quality):
    # measured: sparsegpt 389.7, wanda 370.7, magnitude 764.7 (sparsegpt vs wanda changes order with the
    # calibration draw here: 375 vs 381 with 32 windows, so it is not asserted)
    fp = quality["fp"]
    assert fp < quality["sparsegpt"] < 1.9 * fp       # measured 1.63
    assert quality["sparsegpt"] < 0.7 * quality["magnitude"]  # measured 0.51
    assert quality["wanda"] < 0.7 * quality["magnitude"]      # measured 0.48


def test_awq_beats_rtn(quality):
    # measured: AWQ (then RTN, per channel) W4 251.6 against RTN's 285.1, W3 335.4 against 572.8
    assert quality["awq4"] < 0.95 * quality["rtn4"]  # measured 0.88
    assert quality["awq3"] < 0.7 * quality["rtn3"]   # measured 0.59


def test_w8a8_close_to_unquantized(quality):
    # With 8-bit per-token activations (--act-bits 8) on both sides: fp 238.36, SmoothQuant W8A8
    # 239.14, RTN W8 per channel 238.83. This small model has no activation outliers for SmoothQuant
    # to move, so the two are not ordered; both must stay within 2% of the unquantized model.
    assert quality["smoothquant_a8"] < 1.02 * quality["fp_a8"]  # measured 1.0033
    assert quality["rtn8_a8"] < 1.02 * quality["fp_a8"]         # measured 1.0019


def decompressed(out_dir):
    """Every linear's weight as the compressed-tensors package decompresses it, and the other tensors."""
    config = json.loads((out_dir / "config.json").read_text())
    qc = QuantizationConfig.model_validate(config["quantization_config"])
    schemes = {target: scheme for scheme in qc.config_groups.values() for target in scheme.targets}
    tensors = load_file(out_dir / "model.safetensors")
    weights = {}
    for name in list(tensors):
        if name.endswith(".weight_packed"):
            base = name[:-len("weight_packed")]
            state = {k[len(base):]: tensors.pop(k) for k in list(tensors) if k.startswith(base)}
            scheme = schemes.get(base[:-1], schemes.get("Linear"))  # a group naming the module, else all Linear
            weights[base + "weight"] = PackedQuantizationCompressor.decompress(state, scheme)["weight"]
    weights.update(tensors)
    return config, weights


@pytest.mark.parametrize("name,steps", [
    ("rtn8asym", [{"rtn": {"bits": 8, "group_size": 4, "sym": False}}]),
    ("rtn4sym", [{"rtn": {"bits": 4, "group_size": -1, "sym": True}}]),
    ("gptq4asym", [{"gptq": {"bits": 4, "group_size": 4, "sym": False, "desc_act": True, "static_groups": True}}]),
    ("magnitude24rtn4", [{"magnitude": {"pattern": "2:4"}}, {"rtn": {"bits": 4, "group_size": 4}}]),
])
def test_compressed_tensors_decompress_to_dense(tmp, name, steps):
    dense = load_file(job(tmp, name + "-dense", steps, "dense") / "model.safetensors")
    config, weights = decompressed(job(tmp, name + "-ct", steps, "compressed-tensors"))
    assert sorted(weights) == sorted(dense)
    for key, value in dense.items():
        assert weights[key].dtype == value.dtype and torch.equal(weights[key], value), key
    packed = load_file(tmp / (name + "-ct") / "output" / "model.safetensors")
    down = "model.layers.0.mlp.down_proj."
    assert packed[down + "weight_shape"].tolist() == [64, 172]
    assert packed[down + "weight_packed"].shape == (64, -(-172 * steps[-1][next(iter(steps[-1]))]["bits"] // 32))
    assert (down + "weight_zero_point" in packed) == (not steps[-1][next(iter(steps[-1]))].get("sym", True))
    if steps[-1][next(iter(steps[-1]))].get("sym", True):
        # transformers (5.24, with compressed-tensors 0.20.1) loads symmetric pack-quantized checkpoints; its
        # asymmetric path expects unpacked zero points, unlike the package's own compressor, so it is not tried
        from transformers import AutoModelForCausalLM
        ids = torch.tensor([[1, 100, 200, 300, 50, 7, 9, 11]])
        with torch.no_grad():
            got = AutoModelForCausalLM.from_pretrained(tmp / (name + "-ct") / "output")(ids).logits
            want = AutoModelForCausalLM.from_pretrained(tmp / (name + "-dense") / "output")(ids).logits
        assert torch.allclose(got, want, rtol=0, atol=1e-5)
    if name.startswith("magnitude"):
        sparsity = config["quantization_config"]["sparsity_config"]
        assert sparsity["sparsity_structure"] == "2:4" and sparsity["format"] == "dense"
        for lin in LINEARS:
            w = weights[f"model.layers.1.{lin}.weight"].reshape(-1, 4)
            assert ((w == 0).sum(dim=1) >= 2).all(), lin


def test_mixed_precision_compressed_tensors_decompress_to_dense(tmp):
    """Mixed precision (avg_bits 6 over 4 and 8 bits): one config group per width naming its
    modules; the package decompresses each linear at its width to the dense output, and
    transformers loads it and computes the dense output's logits."""
    steps = [{"gptq": {"avg_bits": 6, "candidate_bits": [4, 8], "group_size": 4}}]
    dense = load_file(job(tmp, "mixed-dense", steps, "dense") / "model.safetensors")
    out = job(tmp, "mixed-ct", steps, "compressed-tensors")
    config, weights = decompressed(out)
    report = json.loads((out / "sensitivity_report.json").read_text())
    groups = config["quantization_config"]["config_groups"]
    assert sorted(groups) == ["group_4", "group_8"]
    for entry in report["linears"]:
        group = groups[f"group_{entry['bits']}"]
        assert entry["name"] in group["targets"] and group["weights"]["num_bits"] == entry["bits"]
    assert sorted(weights) == sorted(dense)
    for key, value in dense.items():
        assert weights[key].dtype == value.dtype and torch.equal(weights[key], value), key
    from transformers import AutoModelForCausalLM
    ids = torch.tensor([[1, 100, 200, 300, 50, 7, 9, 11]])
    with torch.no_grad():
        got = AutoModelForCausalLM.from_pretrained(out)(ids).logits
        want = AutoModelForCausalLM.from_pretrained(tmp / "mixed-dense" / "output")(ids).logits
    assert torch.allclose(got, want, rtol=0, atol=1e-5)


def test_dense_records_quantization(tmp):
    out = tmp / "rtn4sym-dense" / "output"
    if not out.exists():
        out = job(tmp, "rtn4sym-dense", [{"rtn": {"bits": 4, "group_size": -1}}], "dense")
    config = json.loads((out / "config.json").read_text())
    assert "quantization_config" not in config
    assert config["dequantized_from"]["bits"] == 4 and config["dequantized_from"]["group_size"] == -1
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["method"] == "gptq" and manifest["quantization"] == config["dequantized_from"]
    w = load_file(out / "model.safetensors")["model.layers.2.mlp.up_proj.weight"].numpy()
    assert w.dtype == np.float32 and w.shape == (172, 64)
    for row in w:  # per channel, 4 bits symmetric: at most 16 distinct values, evenly spaced
        levels = np.unique(row)
        assert len(levels) <= 16
        steps = np.diff(levels) / np.diff(levels).min()
        assert np.allclose(steps, np.round(steps), atol=1e-3)


@pytest.mark.parametrize("steps,fmt,message", [
    ([{"rtn": {"bits": 4, "group_size": 4}}], None,
     'mlp.gate_proj is [172 out, 64 in] and the GPTQ v1 format packs both along 32-bit words'),
    ([{"rtn": {"bits": 3, "group_size": 4}}], "compressed-tensors", "compressed-tensors pack-quantized output"),
    ([{"gptq": {"bits": 4, "group_size": 4, "desc_act": True}}], "compressed-tensors", "steps[0].gptq.desc_act"),
])
def test_format_that_cannot_hold_the_model_is_refused(tmp, steps, fmt, message):
    name = f"refused-{len(list(tmp.iterdir()))}"
    proc = run([SHARDQ, "run", spec(tmp, name, steps, fmt)], check=False)
    assert proc.returncode != 0
    assert message in proc.stderr + proc.stdout
    assert ("format" in proc.stderr + proc.stdout) and not (tmp / name / "output").exists()


@pytest.mark.parametrize("steps,fmt,message", [
    ([{"magnitude": {"sparsity": 0.5}}], "dense", "output.format: \"dense\" applies to a quantized output"),
    ([{"rtn": {"bits": 4}}, {"eval": {"data": "x.txt"}}], "compressed-tensors",
     "steps[1]: eval reads gptq and dense checkpoints"),
    ([{"rtn": {"bits": 4}}], "exl2", "output.format"),
    ([{"rtn": {"bits": 4, "group_size": 32}}], "awq",
     "mlp.gate_proj has 172 outputs and the awq output format packs 8 outputs per int32"),
])
def test_output_format_spec_errors(tmp, steps, fmt, message):
    proc = run([SHARDQ, "run", spec(tmp, "bad-spec", steps, fmt)], check=False)
    assert proc.returncode == 2 or proc.returncode == 1
    assert message in proc.stderr + proc.stdout


def test_tokenizer_config_with_transformers_huge_max_length(tmp):
    """transformers writes "model_max_length": 1e30 as an integer beyond int64 (SmolLM2's does):
    the model must still load; the tokens are those of the `tokenizers` library."""
    model = tmp / "huge-max-length"
    model.mkdir()
    for f in MODEL.iterdir():
        if f.is_file():
            (model / f.name).symlink_to(f)
    (model / "tokenizer_config.json").unlink()
    (model / "tokenizer_config.json").write_text('{"model_max_length": 1000000000000000019884624838656}')
    (tmp / "story.txt").write_text("Once upon a time, there was a little girl named Lily.")
    proc = run([SHARDQ, "tokenize", "--tokenizer", model, "--input", tmp / "story.txt"])
    want = Tokenizer.from_file(str(MODEL / "tokenizer.json")).encode((tmp / "story.txt").read_text()).ids
    assert [int(t) for t in proc.stdout.split()] == want
