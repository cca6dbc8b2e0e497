"""The awq step end to end, under mpirun on the CPU backend:
- layer 0 against the NumPy reference (awq_reference.py): its four inputs recomputed
  from the fixture (float64 forward of the known windows: "consecutive" token ids),
  the same alpha per group (read from the progress lines), the same folded norms and
  v bias (Qwen2-style biases, grouped-query heads) and the same codes;
- 1 and 2 ranks, 1 and 2 threads give the same bytes; pipeline mode with one block gives sequential
  mode's bytes, and two blocks the same bytes on 1 and 2 ranks;
- a job killed after layer 0's record (or mid-artifact) and rerun gives the bytes of an
  uninterrupted run (the replayed layer brings back its folded norms);
- the "awq" output format read back by an unpacker written here from the AWQ GEMM
  layout (AWQ_ORDER = [0, 2, 4, 6, 1, 3, 5, 7] along the outputs) gives the dense
  output's weights exactly, and its other tensors (folded norms, v bias) are the dense
  output's, as are the compressed-tensors output's;
- "then": "gptq" runs GPTQ on the scaled weights (other codes than rtn), the GPTQ v1
  output holds the folded norms and an eval step reads it;
- bad specs are refused naming the field.
transformers 5.24 (tests/python/requirements-torch.txt) loads AWQ checkpoints only
through the gptqmodel package, which CI does not install: not checked here."""
import hashlib
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

import awq_reference as ref
import llama_reference
from shardq_testlib import make_model, mpirun, read_checkpoint, run, unpack_gptq, write_spec, SHARDQ

LAYERS, HIDDEN, INTER, HEADS, KV, HD = 2, 64, 128, 4, 2, 16
NSAMPLES, SEQLEN, GROUP = 8, 32, 32
LINEARS = {"q": "self_attn.q_proj", "k": "self_attn.k_proj", "v": "self_attn.v_proj", "o": "self_attn.o_proj",
           "gate": "mlp.gate_proj", "up": "mlp.up_proj", "down": "mlp.down_proj"}


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("awq")
    model = make_model(tmp / "model", "--layers", str(LAYERS), "--hidden", str(HIDDEN), "--intermediate",
                       str(INTER), "--heads", str(HEADS), "--kv-heads", str(KV), "--vocab", "512", "--seed", "5",
                       "--arch", "qwen2", "--dtype", "f32")
    ids = np.random.default_rng(7).integers(3, 512, NSAMPLES * SEQLEN + 1)
    data = tmp / "calibration.ids"
    data.write_text(" ".join(map(str, ids)))
    return {"tmp": tmp, "model": model, "data": data, "ids": ids}


def spec_for(work, name, step=None, mode="sequential", blocks=None, output_format=None, extra_steps=()):
    parallel = {"mode": mode, "micro_batch": 2}
    if blocks:
        parallel["blocks"] = blocks
    spec = {"name": name, "model": str(work["model"]),
            "data": {"calibration": str(work["data"]), "format": "token_ids", "nsamples": NSAMPLES,
                     "seqlen": SEQLEN, "sampling": "consecutive"},
            "steps": [step or {"awq": {"bits": 4, "group_size": GROUP}}] + list(extra_steps),
            "state_uri": str(work["tmp"] / name / "state"), "output_uri": str(work["tmp"] / name / "output"),
            "parallel": parallel}
    if output_format:
        spec["output"] = {"format": output_format}
    return write_spec(work["tmp"] / f"{name}.json", spec), work["tmp"] / name / "output"


def digests(directory):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(Path(directory).iterdir())
            if p.is_file()}


@pytest.fixture(scope="module")
def baseline(work):
    spec, output = spec_for(work, "baseline")
    proc = mpirun(1, ["run", spec])
    return output, proc.stderr


def layer0_stats(work):
    """H (2/n Σ XᵀX) and mean |x| of layer 0's four inputs, from a float64 forward of the windows."""
    cfg, W = llama_reference.load_model(work["model"])
    eps, inv_freq = cfg["rms_norm_eps"], llama_reference.rope_inv_freq(cfg, HD)
    p = "model.layers.0."
    lin = lambda name, x: x @ W[p + name + ".weight"].T + W.get(p + name + ".bias", 0)
    inputs = {"attn": [], "o": [], "mlp": [], "down": []}
    mask = np.triu(np.full((SEQLEN, SEQLEN), -np.inf), k=1)
    for s in range(NSAMPLES):
        x = W["model.embed_tokens.weight"][work["ids"][s * SEQLEN:(s + 1) * SEQLEN]]
        n = llama_reference.rmsnorm(x, W[p + "input_layernorm.weight"], eps)
        q = llama_reference.apply_rope(lin("self_attn.q_proj", n).reshape(SEQLEN, HEADS, HD), inv_freq)
        k = llama_reference.apply_rope(lin("self_attn.k_proj", n).reshape(SEQLEN, KV, HD), inv_freq)
        v = lin("self_attn.v_proj", n).reshape(SEQLEN, KV, HD)
        heads = []
        for h in range(HEADS):
            sc = q[:, h] @ k[:, h // (HEADS // KV)].T / math.sqrt(HD) + mask
            sc = np.exp(sc - sc.max(axis=-1, keepdims=True))
            heads.append(sc / sc.sum(axis=-1, keepdims=True) @ v[:, h // (HEADS // KV)])
        attn = np.concatenate(heads, axis=-1)
        x2 = x + lin("self_attn.o_proj", attn)
        n2 = llama_reference.rmsnorm(x2, W[p + "post_attention_layernorm.weight"], eps)
        g = lin("mlp.gate_proj", n2)
        for key, value in (("attn", n), ("o", attn), ("mlp", n2), ("down", g / (1 + np.exp(-g)) * lin("mlp.up_proj", n2))):
            inputs[key].append(value)
    stats = {}
    for key, xs in inputs.items():
        X = np.concatenate(xs)
        stats[key] = ((2.0 / NSAMPLES * X.T @ X).astype(np.float32), np.abs(X).mean(axis=0).astype(np.float32))
    return W, stats


def test_layer0_matches_reference(work, baseline):
    output, log = baseline
    W, stats = layer0_stats(work)
    p = "model.layers.0."
    weights = {k: W[p + n + ".weight"].astype(np.float32) for k, n in LINEARS.items()}
    weights.update(norm1=W[p + "input_layernorm.weight"].astype(np.float32),
                   norm2=W[p + "post_attention_layernorm.weight"].astype(np.float32),
                   v_bias=W[p + "self_attn.v_proj.bias"].astype(np.float32))
    folded, best = ref.awq_layer(weights, stats, {"heads": HEADS, "kv_heads": KV, "head_dim": HD}, 4, GROUP, False,
                                 20, True)
    chosen = dict(re.findall(r"layer 0 awq ([a-z,]+): alpha (\d+)/20", log))
    assert chosen == {"q,k,v": str(best["attn"]), "o": str(best["o"]), "gate,up": str(best["mlp"]),
                      "down": str(best["down"])}, (chosen, best)
    assert any(b > 0 for b in best.values()), "no group found scales better than none"
    out = read_checkpoint(output)
    np.testing.assert_allclose(out[p + "input_layernorm.weight"], folded["norm1"], rtol=2e-3)
    np.testing.assert_allclose(out[p + "post_attention_layernorm.weight"], folded["norm2"], rtol=2e-3)
    np.testing.assert_allclose(out[p + "self_attn.v_proj.bias"], folded["v_bias"], rtol=2e-3)
    assert not np.allclose(out[p + "input_layernorm.weight"], weights["norm1"], rtol=1e-3), "the norm was not folded"
    for key, name in LINEARS.items():
        codes, _ = unpack_gptq(out, p + name, 4)
        _, r_codes = ref.rtn(folded[key], 4, GROUP, False)
        same = np.mean(codes.T == r_codes)
        print(f"layer 0 {name}: codes equal to the reference {same:.4f}")
        assert same >= 0.97, (name, same)


def test_ranks_and_modes_agree(work, baseline):
    two, out2 = spec_for(work, "two-ranks")
    mpirun(2, ["run", two])
    assert digests(out2) == digests(baseline[0])
    threads, out_t = spec_for(work, "two-threads")
    mpirun(1, ["run", threads], env={"OMP_NUM_THREADS": "2"})
    assert digests(out_t) == digests(baseline[0])
    one_block, out_b1 = spec_for(work, "pipeline-b1", mode="pipeline", blocks=1)
    mpirun(1, ["run", one_block])
    assert digests(out_b1) == digests(baseline[0])
    pipes = []
    for ranks in (1, 2):
        spec, out = spec_for(work, f"pipeline-b2-np{ranks}", mode="pipeline", blocks=2)
        mpirun(ranks, ["run", spec])
        pipes.append(digests(out))
    assert pipes[0] == pipes[1]


@pytest.mark.parametrize("fault,ranks,mode", [("after-journal:0", 2, "sequential"), ("mid-artifact:1", 1, "sequential"),
                                              ("after-journal:0", 2, "pipeline")])
def test_killed_and_resumed(work, baseline, fault, ranks, mode):
    name = f"resume-{fault.replace(':', '')}-{mode}"
    spec, output = spec_for(work, name, mode=mode, blocks=2 if mode == "pipeline" else None)
    killed = mpirun(ranks, ["run", spec], env={"SHARDQ_FAULT": fault}, check=False)
    assert killed.returncode != 0
    assert not (output / "manifest.json").exists()
    rerun = mpirun(ranks, ["run", spec])
    assert "replayed from the journal" in rerun.stderr
    reference_spec, reference = spec_for(work, f"{name}-clean", mode=mode, blocks=2 if mode == "pipeline" else None)
    mpirun(ranks, ["run", reference_spec])
    assert digests(output) == digests(reference)


def unpack_awq(words):
    """int32 [rows, out/8] -> [rows, out]: nibble p of word j is output 8j + AWQ_ORDER[p]."""
    order = [0, 2, 4, 6, 1, 3, 5, 7]
    w = words.view(np.uint32)
    out = np.zeros((w.shape[0], w.shape[1] * 8), np.int64)
    for p in range(8):
        out[:, order[p]::8] = (w >> (4 * p)) & 0xF
    return out


@pytest.mark.parametrize("sym", [False, True])
def test_awq_format_reads_back(work, sym):
    step = {"awq": {"bits": 4, "group_size": GROUP, "sym": sym}}
    awq_spec, awq_out = spec_for(work, f"format-awq-{sym}", step=step, output_format="awq")
    dense_spec, dense_out = spec_for(work, f"format-dense-{sym}", step=step, output_format="dense")
    mpirun(1, ["run", awq_spec])
    mpirun(1, ["run", dense_spec])
    config = json.loads((awq_out / "config.json").read_text())
    assert config["quantization_config"] == {"quant_method": "awq", "bits": 4, "group_size": GROUP,
                                             "zero_point": True, "version": "gemm"}
    assert config["torch_dtype"] == "float16"
    awq, dense = read_checkpoint(awq_out), read_checkpoint(dense_out)
    for layer in range(LAYERS):
        for name in LINEARS.values():
            base = f"model.layers.{layer}.{name}"
            q, z = unpack_awq(awq[base + ".qweight"]), unpack_awq(awq[base + ".qzeros"])
            scales = awq[base + ".scales"].astype(np.float32)
            assert q.shape[0] == dense[base + ".weight"].shape[1] and awq[base + ".scales"].dtype == np.float16
            if sym:
                assert np.all(z == 8)
            g = np.arange(q.shape[0]) // GROUP
            W = (scales[g] * (q - z[g]).astype(np.float32)).T
            np.testing.assert_array_equal(W, dense[base + ".weight"])
    ct_spec, ct_out = spec_for(work, f"format-ct-{sym}", step=step, output_format="compressed-tensors")
    mpirun(1, ["run", ct_spec])
    ct = read_checkpoint(ct_out)
    others = [k for k in dense if not k.endswith("proj.weight")]
    assert "model.layers.1.post_attention_layernorm.weight" in others and "model.layers.1.self_attn.v_proj.bias" in others
    for k in others:  # the folded norms and v bias in every format
        np.testing.assert_array_equal(awq[k], dense[k])
        np.testing.assert_array_equal(ct[k], dense[k])


def test_then_gptq_and_eval(work, baseline):
    spec, output = spec_for(work, "then-gptq", step={"awq": {"bits": 4, "group_size": GROUP, "then": "gptq"}},
                            extra_steps=[{"eval": {"data": str(work["data"]), "format": "token_ids",
                                                   "seqlen": SEQLEN, "max_windows": 4}}])
    mpirun(1, ["run", spec])
    rtn, gptq = read_checkpoint(baseline[0]), read_checkpoint(output)
    p = "model.layers.1.mlp.down_proj"
    assert not np.array_equal(unpack_gptq(rtn, p, 4)[0], unpack_gptq(gptq, p, 4)[0])
    # layer 0's statistics and so its scales are the same whatever quantizes after them
    np.testing.assert_array_equal(rtn["model.layers.0.input_layernorm.weight"],
                                  gptq["model.layers.0.input_layernorm.weight"])
    ppl = json.loads((work["tmp"] / "then-gptq" / "state" / "step1_metrics.json").read_text())["ppl"]
    fp_out = work["tmp"] / "fp-ppl.json"
    run([SHARDQ, "eval", "--model", work["model"], "--data-ids", work["data"], "--seqlen", str(SEQLEN),
         "--max-windows", "4", "--out", fp_out])
    fp = json.loads(fp_out.read_text())["ppl"]
    print(f"perplexity: fp {fp:.3f}, awq+gptq {ppl:.3f}")
    assert math.isfinite(ppl) and fp * 0.8 < ppl < fp * 1.25


@pytest.mark.parametrize("step,fmt,message", [
    ({"awq": {"bits": 3, "group_size": GROUP}}, "awq",
     "steps[0].awq.bits: 3; the awq output format holds 4-bit weights only"),
    ({"awq": {"bits": 4, "group_size": 48}}, "awq", "steps[0].awq.group_size: 48; the awq output format needs groups"),
    ({"gptq": {"bits": 4, "group_size": GROUP, "desc_act": True}}, "awq", "steps[0].gptq.desc_act: act-order groups"),
    ({"awq": {"bits": 4, "desc_act": True}}, None, "steps[0].awq.desc_act: applies only with \"then\": \"gptq\""),
    ({"awq": {"bits": 4, "n_grid": 0}}, None, "steps[0].awq.n_grid: must be an integer in 1..1000"),
    ({"awq": {"bits": 4, "then": "sparsegpt"}}, None, "steps[0].awq.then"),
])
def test_bad_awq_specs_refused(work, step, fmt, message):
    name = "bad-" + hashlib.sha256(json.dumps([step, fmt]).encode()).hexdigest()[:8]
    spec, _ = spec_for(work, name, step=step, output_format=fmt)
    proc = mpirun(1, ["run", spec], check=False)
    assert proc.returncode != 0
    assert message in proc.stderr + proc.stdout, proc.stderr
    assert not (work["tmp"] / name).exists()
