"""A job that cannot finish is refused before it writes anything: every check
that the spec, the model's config.json and its safetensors headers allow runs
before the journal is created (coordinator/validate_job.c). Each refusal names
the spec's JSON path and the linear or tensor at fault, leaves no state behind,
and the corrected spec then runs on the same state_uri without any cleanup."""
import json
import shutil

import pytest

from shardq_testlib import calibration_text, make_model, mpirun, write_spec


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("validation")
    # 172 = 4 * 43: no GPTQ v1 packing fits, and N:M patterns with M = 8 do not divide it
    odd = make_model(tmp / "odd-model", "--layers", "2", "--hidden", "64", "--intermediate", "172", "--heads", "4",
                     "--kv-heads", "2", "--vocab", "512", "--seed", "1")
    model = make_model(tmp / "model", "--layers", "2", "--hidden", "64", "--intermediate", "160", "--heads", "4",
                       "--kv-heads", "2", "--vocab", "512", "--seed", "1")
    return {"tmp": tmp, "odd": odd, "model": model, "calib": calibration_text(tmp)}


def spec_for(work, name, model, step, seqlen=32, parallel=None, eval_seqlen=None):
    steps = [step] + ([{"eval": {"data": str(work["calib"]), "seqlen": eval_seqlen, "max_windows": 2}}]
                      if eval_seqlen else [])
    spec = {"name": name, "model": str(model),
            "data": {"calibration": str(work["calib"]), "nsamples": 4, "seqlen": seqlen},
            "steps": steps, "state_uri": str(work["tmp"] / name / "state"),
            "output_uri": str(work["tmp"] / name / "output"), "parallel": parallel or {"mode": "sequential"}}
    return write_spec(work["tmp"] / f"{name}.json", spec)


def refused(work, name, message, ranks=1, **kw):
    spec = spec_for(work, name, **kw)
    proc = mpirun(ranks, ["run", spec], check=False)
    assert proc.returncode != 0
    assert message in proc.stderr + proc.stdout, proc.stderr
    assert not (work["tmp"] / name).exists(), "a refused job left state or output behind"
    return spec


@pytest.mark.parametrize("name,kw,message", [
    ("packing", dict(model="odd", step={"rtn": {"bits": 4, "group_size": -1}}),
     "steps[0].rtn: mlp.gate_proj is [172 out, 64 in] and the GPTQ v1 format packs both along 32-bit words "
     "(multiples of 32 only): set \"output\": {\"format\": \"dense\"}"),
    ("joint-packing", dict(model="odd", step={"sparsegpt": {"sparsity": 0.5, "bits": 4, "group_size": -1}}),
     "steps[0].sparsegpt: mlp.gate_proj is [172 out, 64 in]"),
    ("pattern", dict(model="odd", step={"wanda": {"pattern": "3:8"}}),
     "steps[0].wanda.pattern: mlp.down_proj"),
    ("block", dict(model="model", step={"sparsegpt": {"pattern": "2:4", "block_size": 30}}),
     "steps[0].sparsegpt.block_size: 30 is not a multiple of the pattern's 4"),
    ("seqlen", dict(model="model", step={"gptq": {"bits": 4, "group_size": 32}}, seqlen=4096),
     "data.seqlen: 4096 is beyond the model's max_position_embeddings (2048)"),
    ("eval-seqlen", dict(model="model", step={"rtn": {"bits": 4, "group_size": 32}}, eval_seqlen=3000),
     "steps[1].eval.seqlen: 3000 is beyond the model's max_position_embeddings (2048)"),
])
def test_refused_before_any_state(work, name, kw, message):
    kw = dict(kw, model=work[kw["model"]])
    refused(work, name, message, **kw)


def test_plan_that_cannot_be_cut(work):
    # 4 calibration samples cannot be split over 5 ranks
    refused(work, "plan", "parallel (5 ranks, 2 layers): plan: 4 calibration samples cannot be shared by 5 ranks",
            ranks=5, model=work["model"], step={"gptq": {"bits": 4, "group_size": 32}})


def test_weight_shape_against_config(work):
    # config.json says 192 intermediate features, the safetensors headers hold 160
    model = work["tmp"] / "lying-model"
    shutil.copytree(work["model"], model)
    config = json.loads((model / "config.json").read_text())
    config["intermediate_size"] = 192
    (model / "config.json").write_text(json.dumps(config))
    refused(work, "lying", "tensor model.layers.0.mlp.gate_proj.weight is not [192, 64] as config.json implies",
            model=model, step={"rtn": {"bits": 4, "group_size": 32}})


def test_data_checked_before_any_state(work):
    # calibration data too short for one window or for consecutive windows, and eval data that does not exist:
    # both would otherwise surface only after hours of calibration
    short = work["tmp"] / "short.ids"
    short.write_text(" ".join(str(i) for i in range(10)))
    spec = spec_for(work, "short", work["model"], {"gptq": {"bits": 4, "group_size": 32}})
    data = json.loads(spec.read_text())
    data["data"].update({"calibration": str(short), "format": "token_ids"})
    spec.write_text(json.dumps(data))
    proc = mpirun(2, ["run", spec], check=False)
    assert proc.returncode != 0 and "10 tokens, fewer than seqlen + 1 = 33" in proc.stderr, proc.stderr
    assert not (work["tmp"] / "short").exists()
    # consecutive windows need nsamples * seqlen = 4 * 32 ids
    spec = spec_for(work, "few-consecutive", work["model"], {"gptq": {"bits": 4, "group_size": 32}})
    data = json.loads(spec.read_text())
    short.write_text(" ".join(str(i) for i in range(127)))
    data["data"].update({"calibration": str(short), "format": "token_ids", "sampling": "consecutive"})
    spec.write_text(json.dumps(data))
    proc = mpirun(2, ["run", spec], check=False)
    assert proc.returncode != 0 and ('data.sampling: "consecutive" needs data.nsamples x data.seqlen = 4 x 32 = 128 '
                                     f'tokens, {short} has 127') in proc.stderr, proc.stderr
    assert not (work["tmp"] / "few-consecutive").exists()
    spec = spec_for(work, "no-eval-data", work["model"], {"rtn": {"bits": 4, "group_size": 32}}, eval_seqlen=32)
    data = json.loads(spec.read_text())
    data["steps"][1]["eval"]["data"] = str(work["tmp"] / "missing.txt")
    spec.write_text(json.dumps(data))
    proc = mpirun(1, ["run", spec], check=False)
    assert proc.returncode != 0 and "steps[1].eval.data" in proc.stderr and "missing.txt" in proc.stderr, proc.stderr
    assert not (work["tmp"] / "no-eval-data").exists()


def test_corrected_spec_runs_on_the_same_state(work):
    # refused on 2 ranks (every rank stops, none writes), then the fixed spec runs where it was
    refused(work, "fixed", "data.seqlen: 4096 is beyond", ranks=2, model=work["model"],
            step={"gptq": {"bits": 4, "group_size": 32}}, seqlen=4096)
    spec = spec_for(work, "fixed", work["model"], {"gptq": {"bits": 4, "group_size": 32}})
    mpirun(2, ["run", spec])
    assert (work["tmp"] / "fixed" / "output" / "manifest.json").exists()
    # an eval-only job on that GPTQ checkpoint (qweight, no weight tensors) passes validation
    quantized = work["tmp"] / "fixed" / "output"
    spec = write_spec(work["tmp"] / "eval-only.json", {
        "name": "eval-only", "model": str(quantized),
        "steps": [{"eval": {"data": str(work["calib"]), "seqlen": 32, "max_windows": 2}}],
        "state_uri": str(work["tmp"] / "eval-only" / "state")})
    mpirun(1, ["run", spec])
