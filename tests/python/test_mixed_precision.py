"""Mixed precision (gptq/rtn "avg_bits", quant/mixed_precision.h) on a tiny fixture:
- the sensitivities in sensitivity_report.json equal an independent NumPy computation
  (a float64 forward of the unquantized model collecting each linear's inputs, H = 2/n Σ xxᵀ,
  round-to-nearest at each candidate width, trace((W−Q)H(W−Q)ᵀ)), and a NumPy greedy
  allocation written from the README's rule picks the same widths, within the budget;
- the GPTQ checkpoint holds each linear packed at its width (unpacked by the test's own
  reader, dequantized equal to the dense output of the same job), and quantization_config's
  "dynamic" overrides, matched as vLLM matches them (re.match of the "+:" regex), give every
  linear its width; shardq's own loader (`shardq eval`) scores it as the dense output;
- the same bytes on 1 and 2 ranks, in both parallel modes; killed (after the report, or
  after a quantized layer) and resumed to the bytes of an uninterrupted run; a report altered
  in the state is measured again (its sha256 no longer matches the journal);
- an rtn step measures the same sensitivities and picks the same widths; a sweep record
  counts each linear at its width;
- a candidate width the output format cannot hold, or bits with avg_bits, is refused."""
import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest

import llama_reference
from quant_grid_reference import find_params, quantize
from shardq_testlib import SHARDQ, make_model, mpirun, read_checkpoint, run, unpack_gptq, write_spec

LINEARS = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj",
           "mlp.up_proj", "mlp.down_proj"]
NSAMPLES, SEQLEN, GROUP, CANDIDATES = 8, 32, 32, [2, 3, 4, 8]


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mixed")
    model = make_model(tmp / "model", "--layers", "2", "--hidden", "64", "--intermediate", "128", "--heads", "4",
                       "--kv-heads", "2", "--vocab", "512", "--seed", "3")
    ids = llama_reference.sample(model, NSAMPLES, SEQLEN, seed=4)
    (tmp / "calib.ids").write_text(" ".join(map(str, ids)))
    return {"tmp": tmp, "model": model, "ids": np.asarray(ids).reshape(NSAMPLES, SEQLEN)}


def job(work, name, step, fmt="gptq", parallel=None, ranks=1, env=None, check=True):
    spec = {"model": str(work["model"]),
            "data": {"calibration": str(work["tmp"] / "calib.ids"), "format": "token_ids", "nsamples": NSAMPLES,
                     "seqlen": SEQLEN, "sampling": "consecutive"},
            "steps": [step], "state_uri": str(work["tmp"] / name / "state"),
            "output_uri": str(work["tmp"] / name / "output"), "output": {"format": fmt}, "seed": 0}
    if parallel:
        spec["parallel"] = parallel
    path = write_spec(work["tmp"] / f"{name}.json", spec)
    proc = mpirun(ranks, ["run", path], env=env, check=check)
    return Path(spec["output_uri"]), path, proc


def digests(directory):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(Path(directory).iterdir())
            if p.is_file()}


def round_to_bf16(x):
    """float32 -> the nearest bfloat16 (ties to even), as float32: the dense output's dtype."""
    u = x.astype(np.float32).view(np.uint32).astype(np.uint64)
    return (((u + 0x7FFF + ((u >> 16) & 1)) >> 16) << 16).astype(np.uint32).view(np.float32)


def numpy_sensitivities(work):
    """{linear name: (params, [error per candidate])} computed independently of shardq."""
    model = llama_reference.load_model(work["model"])
    inputs = {}
    for window in work["ids"]:
        llama_reference.reference_logits(model, list(window), inputs=inputs)
    out = {}
    for name, xs in inputs.items():
        X = np.concatenate(xs)                                   # [tokens, in]
        H = 2.0 / NSAMPLES * X.T @ X                             # n counts sequences, as AutoGPTQ does
        W = model[1][name + ".weight"].astype(np.float32)
        errors = []
        for bits in CANDIDATES:
            Q = np.empty_like(W)
            for c0 in range(0, W.shape[1], GROUP):
                scale, zero = find_params(W[:, c0:c0 + GROUP], 2**bits - 1, True)
                Q[:, c0:c0 + GROUP] = quantize(W[:, c0:c0 + GROUP], scale[:, None], zero[:, None], 2**bits - 1)[1]
            E = (W - Q).astype(np.float64)
            errors.append(float(np.sum((E @ H) * E)))
        out[name] = (W.size, errors)
    return out


def numpy_allocation(params, errors, avg_bits):
    """The README's greedy: start at the narrowest width; repeatedly take the move (a linear to a
    wider candidate) with the largest error drop per added bit·parameter that fits the budget and
    lowers the error; ties to the first in (linear order, narrower target) order."""
    at = [0] * len(params)
    used = sum(CANDIDATES[0] * p for p in params)
    budget = avg_bits * sum(params)
    while True:
        best, best_ratio = None, 0.0
        for i, p in enumerate(params):
            for c in range(at[i] + 1, len(CANDIDATES)):
                extra = (CANDIDATES[c] - CANDIDATES[at[i]]) * p
                if used + extra > budget:
                    continue
                ratio = (errors[i][at[i]] - errors[i][c]) / extra
                if ratio > best_ratio:
                    best, best_ratio = (i, c), ratio
        if best is None:
            return [CANDIDATES[c] for c in at]
        i, c = best
        used += (CANDIDATES[c] - CANDIDATES[at[i]]) * params[i]
        at[i] = c


@pytest.fixture(scope="module")
def mixed(work):
    step = {"gptq": {"avg_bits": 3.5, "group_size": GROUP}}
    gptq, _, _ = job(work, "gptq35", step)
    dense, _, _ = job(work, "gptq35-dense", step, fmt="dense")
    return {"gptq": gptq, "dense": dense, "report": json.loads((gptq / "sensitivity_report.json").read_text())}


def test_sensitivities_and_allocation_match_numpy(work, mixed):
    report = mixed["report"]
    names = [f"model.layers.{l}.{lin}" for l in range(2) for lin in LINEARS]
    assert [e["name"] for e in report["linears"]] == names
    assert report["candidate_bits"] == CANDIDATES and report["avg_bits"] == 3.5
    ref = numpy_sensitivities(work)
    ours = [[e["errors"][str(b)] for b in CANDIDATES] for e in report["linears"]]
    for name, entry, errors in zip(names, report["linears"], ours):
        assert entry["params"] == ref[name][0]
        np.testing.assert_allclose(errors, ref[name][1], rtol=2e-4, err_msg=name)
    params = [e["params"] for e in report["linears"]]
    chosen = [e["bits"] for e in report["linears"]]
    assert numpy_allocation(params, [ref[n][1] for n in names], 3.5) == chosen
    assert numpy_allocation(params, ours, 3.5) == chosen
    assert len(set(chosen)) > 1  # the budget makes it mix widths
    achieved = sum(b * p for b, p in zip(chosen, params)) / sum(params)
    assert achieved <= 3.5 and report["achieved_avg_bits"] == pytest.approx(achieved, rel=1e-12)


def test_gptq_checkpoint_holds_each_width(work, mixed):
    report, gptq = mixed["report"], mixed["gptq"]
    tensors, dense = read_checkpoint(gptq), read_checkpoint(mixed["dense"])
    config = json.loads((gptq / "quantize_config.json").read_text())
    assert json.loads((gptq / "config.json").read_text())["quantization_config"] == config
    dynamic = config["dynamic"]
    for entry in report["linears"]:
        name, bits, (out, inp) = entry["name"], entry["bits"], entry["shape"]
        # vLLM's get_dynamic_override: the first "+:" key whose regex re.match-es the module name
        override = next((v for k, v in dynamic.items() if re.match(k.removeprefix("+:"), name)), {})
        assert override.get("bits", config["bits"]) == bits, name
        assert tensors[name + ".qweight"].shape == (inp * bits // 32, out)
        codes, zeros = unpack_gptq(tensors, name, bits)
        scales = tensors[name + ".scales"].astype(np.float32)
        g = tensors[name + ".g_idx"]
        W = (scales[g] * (codes - zeros[g]).astype(np.float32)).T
        np.testing.assert_array_equal(round_to_bf16(W), dense[name + ".weight"], err_msg=name)
    assert json.loads((mixed["dense"] / "config.json").read_text())["dequantized_from"]["dynamic"] == dynamic
    scores = []
    for model in (gptq, mixed["dense"]):  # shardq's own loader reads the per-linear widths
        out = work["tmp"] / f"{model.parent.name}-ppl.json"
        run([SHARDQ, "eval", "--model", model, "--data-ids", work["tmp"] / "calib.ids", "--seqlen", str(SEQLEN),
             "--out", out])
        scores.append(json.loads(out.read_text())["ppl"])
    assert scores[0] == pytest.approx(scores[1], rel=1e-3)  # the dense weights are those rounded to bf16


@pytest.mark.parametrize("parallel", [{"mode": "sequential"}, {"mode": "pipeline", "blocks": 2}])
def test_same_bytes_on_one_and_two_ranks(work, mixed, parallel):
    mode = parallel["mode"]
    step = {"gptq": {"avg_bits": 3.5, "group_size": GROUP}}
    one, _, _ = job(work, f"{mode}-np1", step, parallel=parallel, ranks=1)
    two, _, _ = job(work, f"{mode}-np2", step, parallel=parallel, ranks=2)
    assert digests(one) == digests(two)
    assert (one / "sensitivity_report.json").read_bytes() == (mixed["gptq"] / "sensitivity_report.json").read_bytes()


@pytest.mark.parametrize("fault", ["sensitivity-report:0", "after-journal:0"])
def test_killed_and_resumed_equals_uninterrupted(work, mixed, fault):
    step = {"gptq": {"avg_bits": 3.5, "group_size": GROUP}}
    name = "kill-" + fault.replace(":", "-")
    output, spec, killed = job(work, name, step, ranks=2, env={"SHARDQ_FAULT": fault}, check=False)
    assert killed.returncode != 0 and not (output / "manifest.json").exists()
    rerun = mpirun(2, ["run", spec])
    assert "read from the journal" in rerun.stderr
    assert digests(output) == digests(mixed["gptq"])


def test_altered_report_is_measured_again(work, mixed):
    step = {"gptq": {"avg_bits": 3.5, "group_size": GROUP}}
    output, spec, _ = job(work, "altered", step, env={"SHARDQ_FAULT": "after-journal:0"}, check=False)
    report = work["tmp"] / "altered" / "state" / "step0" / "sensitivity_report.json"
    report.write_text(report.read_text().replace('"bits": 4', '"bits": 8'))  # still valid JSON, other widths
    rerun = mpirun(1, ["run", spec])
    assert "the sensitivity report does not match its sha256 in the journal" in rerun.stderr
    assert digests(output) == digests(mixed["gptq"])


def test_sweep_record_counts_each_width(work, mixed):
    base = json.loads((work["tmp"] / "gptq35.json").read_text())
    for key in ("state_uri", "output_uri"):
        del base[key]
    sweep = write_spec(work["tmp"] / "sweep.json", {"name": "mixed", "root": str(work["tmp"] / "sweep"), "base": base,
                                                    "axes": [{"name": "avg", "path": "steps[0].gptq.avg_bits",
                                                              "values": [3.5]}]})
    mpirun(1, ["sweep", sweep])
    record = json.loads((work["tmp"] / "sweep" / "results.jsonl").read_text().splitlines()[0])
    stored = weights = 0
    for e in mixed["report"]["linears"]:  # codes, plus an fp16 scale and a bits-wide zero per group
        out, inp = e["shape"]
        stored += e["params"] * e["bits"] + out * -(-inp // GROUP) * (16 + e["bits"])
        weights += e["params"]
    assert record["bits"] is None and record["avg_bits"] == pytest.approx(stored / weights, rel=1e-12)


def test_rtn_measures_the_same(work, mixed):
    rtn, _, _ = job(work, "rtn35", {"rtn": {"avg_bits": 3.5, "group_size": GROUP}})
    assert json.loads((rtn / "sensitivity_report.json").read_text()) == mixed["report"]


@pytest.mark.parametrize("step,fmt,message", [
    ({"gptq": {"avg_bits": 5, "group_size": GROUP}}, "compressed-tensors", "steps[0].gptq.candidate_bits: 2"),
    ({"gptq": {"avg_bits": 3.5, "bits": 4}}, "gptq", "steps[0].gptq.bits: give bits or avg_bits, not both"),
    ({"rtn": {"avg_bits": 3, "candidate_bits": [4, 8]}}, "gptq", "steps[0].rtn.avg_bits: 3 is outside"),
    ({"gptq": {"candidate_bits": [4, 8]}}, "gptq", "steps[0].gptq.candidate_bits: applies only with avg_bits"),
    ({"gptq": {"avg_bits": 4, "candidate_bits": [4, 5]}}, "gptq", "steps[0].gptq.candidate_bits: must be"),
])
def test_refused(work, step, fmt, message):
    output, _, proc = job(work, "refused", step, fmt=fmt, check=False)
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr
    assert not (work["tmp"] / "refused" / "state" / "journal.json").exists()
