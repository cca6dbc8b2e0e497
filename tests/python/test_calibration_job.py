"""End-to-end calibration jobs under mpirun on the CPU backend:
- the output is a GPTQ checkpoint whose manifest matches its files;
- 1, 2 and 3 ranks give the same bytes in sequential mode, and in pipeline
  mode for a fixed block count;
- a job killed at several points (mid-write included; whole-job kills at
  points of its own progress) and rerun produces the same bytes as an
  uninterrupted run; SIGUSR1/SIGTERM stop it cleanly (exit 75);
- a dying rank ends the job with a non-zero code instead of hanging;
- GPTQ beats RTN on the same configuration."""
import hashlib
import json
import math
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from shardq_testlib import (ROOT, SHARDQ, calibration_text, make_model, model_sampled_data, mpirun,
                            read_checkpoint, run, unpack_gptq, write_spec)

LAYERS = 4
LINEARS = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj",
           "mlp.up_proj", "mlp.down_proj"]


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("calib")
    model = make_model(tmp / "model", "--layers", str(LAYERS), "--hidden", "64", "--intermediate", "128",
                       "--heads", "4", "--kv-heads", "2", "--vocab", "512", "--seed", "3")
    return {"tmp": tmp, "model": model, "calib": calibration_text(tmp)}


def spec_for(work, name, steps=None, mode="sequential", blocks=None, nsamples=12):
    parallel = {"mode": mode, "micro_batch": 2}
    if blocks:
        parallel["blocks"] = blocks
    spec = {
        "name": name,
        "model": str(work["model"]),
        "data": {"calibration": str(work["calib"]), "nsamples": nsamples, "seqlen": 32},
        "steps": steps or [{"gptq": {"bits": 4, "group_size": 32, "desc_act": False}}],
        "state_uri": str(work["tmp"] / name / "state"),
        "output_uri": str(work["tmp"] / name / "output"),
        "parallel": parallel,
        "seed": 11,
    }
    return write_spec(work["tmp"] / f"{name}.json", spec), Path(spec["output_uri"])


def codes_of(output):
    tensors = read_checkpoint(output)
    return {f"{l}.{lin}": unpack_gptq(tensors, f"model.layers.{l}.{lin}", 4)[0]
            for l in range(LAYERS) for lin in LINEARS}


def perplexity(work, model_dir, name):
    out = work["tmp"] / f"{name}-ppl.json"
    text = calibration_text(work["tmp"]).parent / "test.txt"
    data = text if text.exists() else calibration_text(work["tmp"])
    run([SHARDQ, "eval", "--model", model_dir, "--data", data, "--seqlen", "64", "--max-windows", "24",
         "--out", out])
    return json.loads(out.read_text())["ppl"]


def file_digests(directory):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(Path(directory).iterdir())
            if p.is_file()}


@pytest.fixture(scope="module")
def baseline(work):
    spec, output = spec_for(work, "baseline")
    mpirun(1, ["run", spec])
    return output


def test_output_is_a_gptq_checkpoint(baseline):
    config = json.loads((baseline / "config.json").read_text())
    q = config["quantization_config"]
    assert (q["quant_method"], q["bits"], q["group_size"], q["sym"]) == ("gptq", 4, 32, True)
    manifest = json.loads((baseline / "manifest.json").read_text())
    assert manifest["format"] == "shardq-manifest/1" and manifest["method"] == "gptq"
    assert manifest["quantization"] == q
    listed = manifest["files"]
    assert set(listed) == {p.name for p in baseline.iterdir() if p.name != "manifest.json"}
    assert "model.safetensors" in listed and "tokenizer.json" in listed
    for path, entry in listed.items():
        data = (baseline / path).read_bytes()
        assert len(data) == entry["size"] and hashlib.sha256(data).hexdigest() == entry["sha256"], path
    tensors = read_checkpoint(baseline)
    assert tensors["model.layers.0.self_attn.q_proj.scales"].dtype == np.float16
    assert "model.layers.0.self_attn.q_proj.weight" not in tensors


@pytest.mark.parametrize("ranks", [2, 3])
def test_sequential_ranks_agree(work, baseline, ranks):
    # exact Hessian sums and per-sequence GEMMs: the same bytes as one rank (README, Guarantees)
    spec, output = spec_for(work, f"seq{ranks}")
    mpirun(ranks, ["run", spec])
    assert file_digests(output) == file_digests(baseline)


def test_pipeline_depends_on_blocks_not_ranks(work):
    spec1, out1 = spec_for(work, "pipe1", mode="pipeline", blocks=2)
    mpirun(1, ["run", spec1])
    spec2, out2 = spec_for(work, "pipe2", mode="pipeline")  # default: one block per rank
    mpirun(2, ["run", spec2])
    spec3, out3 = spec_for(work, "pipe3", mode="pipeline", blocks=2)
    mpirun(3, ["run", spec3])
    a, b, c = codes_of(out1), codes_of(out2), codes_of(out3)
    for k in a:
        assert np.array_equal(a[k], b[k]) and np.array_equal(a[k], c[k]), k
    p1, p2 = perplexity(work, out1, "pipe1"), perplexity(work, out2, "pipe2")
    assert abs(p1 - p2) / p1 < 1e-3


def test_pipeline_more_blocks_than_ranks(work):
    # 4 blocks on 2 ranks: each rank owns two blocks that are not neighbours, so the
    # streaming pass sends both ways between the ranks (it deadlocked once they walked
    # their blocks one after the other); the output is the bytes of 4 blocks on 1 rank
    spec1, out1 = spec_for(work, "blocks4-np1", mode="pipeline", blocks=LAYERS)
    mpirun(1, ["run", spec1])
    spec2, out2 = spec_for(work, "blocks4-np2", mode="pipeline", blocks=LAYERS)
    mpirun(2, ["run", spec2])
    assert file_digests(out2) == file_digests(out1)


def test_pipeline_with_one_block_is_sequential(work, baseline):
    spec, out = spec_for(work, "pipe-one", mode="pipeline", blocks=1)
    mpirun(1, ["run", spec])
    assert file_digests(out) == file_digests(baseline)


def sharded_spec(work, name, max_shard_bytes=24000, **kw):
    spec, output = spec_for(work, name, **kw)
    data = json.loads(Path(spec).read_text())
    data["output"] = {"max_shard_bytes": max_shard_bytes}
    Path(spec).write_text(json.dumps(data))
    return spec, output


def layers_by_shard(output):
    """The decoder layers each shard holds, in the shards' order (-1: tensors outside the layers)."""
    weight_map = json.loads((output / "model.safetensors.index.json").read_text())["weight_map"]
    layers = {}
    for name, shard in weight_map.items():
        layer = int(name.split(".")[2]) if name.startswith("model.layers.") else -1
        layers.setdefault(shard, set()).add(layer)
    return [sorted(layers[shard]) for shard in sorted(layers)]


@pytest.fixture(scope="module")
def deep(work):
    """11 narrow layers: enough that names sort layer 10 before layer 2."""
    model = make_model(work["tmp"] / "deep-model", "--layers", "11", "--hidden", "32", "--intermediate", "64",
                       "--heads", "2", "--vocab", "512", "--seed", "5")
    return dict(work, model=model)


@pytest.mark.parametrize("ranks,mode", [(1, "sequential"), (2, "pipeline")])
def test_shards_written_during_the_layer_loop(deep, ranks, mode):
    # A fresh output directory: each shard is written as soon as its layers are done, the
    # shards holding the layers in numeric order (coordinator/assemble_while_calibrating.h).
    blocks = 2 if mode == "pipeline" else None
    spec, streamed = sharded_spec(deep, f"streamed-{mode}", mode=mode, blocks=blocks)
    log = mpirun(ranks, ["run", spec])
    assert "its shards were written during it" in log.stdout + log.stderr
    order = layers_by_shard(streamed)
    assert len(order) >= 5, order
    flat = [layer for layers in order for layer in layers]
    assert flat == sorted(flat) and set(flat) == set(range(-1, 11)), order
    # An output directory that is not empty (here, a killed writer's temporary): the same job
    # writes after the loop, as before, the same bytes, and the temporary is gone.
    spec2, after = sharded_spec(deep, f"after-loop-{mode}", mode=mode, blocks=blocks)
    after.mkdir(parents=True)
    (after / "model-00002-of-00009.safetensors.tmp.4242").write_bytes(b"partial")
    log2 = mpirun(ranks, ["run", spec2])
    assert "its shards were written during it" not in log2.stdout + log2.stderr
    assert "is not empty: the checkpoint is written after the layer loop" in log2.stdout + log2.stderr
    assert file_digests(after) == file_digests(streamed)


def test_max_shard_bytes_is_checked(work):
    spec, output = sharded_spec(work, "tiny-shards", max_shard_bytes=100)
    proc = run([SHARDQ, "run", spec], check=False)
    assert proc.returncode != 0
    assert "output.max_shard_bytes: must be an integer of at least 1024 (bytes)" in proc.stdout + proc.stderr
    assert not output.exists()


@pytest.fixture(scope="module")
def two_rank_baseline(work):
    spec, output = spec_for(work, "two-rank")
    mpirun(2, ["run", spec])
    return output


@pytest.mark.parametrize("fault", ["mid-artifact:1", "before-journal:2", "after-journal:0", "after-journal:3"])
def test_killed_and_resumed_equals_uninterrupted(work, two_rank_baseline, fault):
    spec, output = spec_for(work, "kill-" + fault.replace(":", "-"))
    killed = mpirun(2, ["run", spec], env={"SHARDQ_FAULT": fault}, check=False)
    assert killed.returncode != 0
    assert not (output / "manifest.json").exists()
    mpirun(2, ["run", spec])
    assert file_digests(output) == file_digests(two_rank_baseline)


def test_corrupted_artifact_is_redone(work, two_rank_baseline):
    spec, output = spec_for(work, "corrupted")
    mpirun(2, ["run", spec], env={"SHARDQ_FAULT": "after-journal:2"}, check=False)
    artifact = work["tmp"] / "corrupted" / "state" / "step0" / "layer_001.safetensors"
    data = bytearray(artifact.read_bytes())
    data[-1] ^= 0xFF  # one flipped bit in the last tensor's bytes: still a valid file
    artifact.write_bytes(bytes(data))
    rerun = mpirun(2, ["run", spec])
    assert "layer 1: artifact step0/layer_001.safetensors does not match its sha256" in rerun.stderr
    assert file_digests(output) == file_digests(two_rank_baseline)


def test_killed_at_random_moments(work, two_rank_baseline):
    # Whole-job SIGKILLs (every process of the job, as when a node is lost) at
    # seeded random points of the job's own progress, then one clean rerun: the
    # bytes of an uninterrupted run. Rank 0 stalls at the chosen point
    # (SHARDQ_FAULT_ACTION=stall) and the test kills the job once it says so, so
    # where the kill lands does not depend on the machine's speed.
    spec, output = spec_for(work, "random-kills")
    journal = work["tmp"] / "random-kills" / "state" / "journal.json"
    points = ["mid-artifact", "before-journal", "after-journal"]  # in the order a layer reaches them
    candidates = [(layer, p) for layer in range(LAYERS - 1) for p in range(len(points))]
    chosen = np.random.default_rng(2026).choice(len(candidates), size=4, replace=False)
    # in progress order, each point is still ahead of the job when it is resumed
    for layer, p in sorted(candidates[i] for i in chosen):
        point = points[p]
        env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
                   OMPI_MCA_rmaps_base_oversubscribe="1", OMP_NUM_THREADS="1",
                   SHARDQ_FAULT=f"{point}:{layer}", SHARDQ_FAULT_ACTION="stall")
        proc = subprocess.Popen(["mpirun", "-np", "2", "--bind-to", "none", str(SHARDQ), "run", str(spec)], cwd=ROOT,
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
        seen = []
        for line in proc.stderr:  # ends early only if the job ended without reaching the point
            seen.append(line)
            if f"stalled at {point} of layer {layer}" in line:
                break
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        assert f"stalled at {point} of layer {layer}" in "".join(seen), "".join(seen)
        listed = len(json.loads(journal.read_text())["steps"][0]["layers"]) if journal.exists() else 0
        # the layers before the point are journaled, the stalled one only after its journal write
        assert listed == layer + (point == "after-journal"), (point, layer, listed)
    mpirun(2, ["run", spec])
    assert file_digests(output) == file_digests(two_rank_baseline)


def test_signal_stops_cleanly_and_resumes(work, two_rank_baseline):
    spec, output = spec_for(work, "signalled")
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_rmaps_base_oversubscribe="1", OMP_NUM_THREADS="1", SHARDQ_LAYER_DELAY_MS="400")
    proc = subprocess.Popen(["mpirun", "-np", "2", "--bind-to", "none", str(SHARDQ), "run", str(spec)], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    journal = work["tmp"] / "signalled" / "state" / "journal.json"
    deadline = time.time() + 60
    while time.time() < deadline:
        if journal.exists() and json.loads(journal.read_text())["steps"][0]["layers"]:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGUSR1)  # mpirun forwards SIGUSR1 to every rank, as Slurm's --signal does
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 75, out
    assert "run the same command to resume" in out
    layers = json.loads(journal.read_text())["steps"][0]["layers"]
    assert 1 <= len(layers) < LAYERS
    mpirun(2, ["run", spec])
    assert file_digests(output) == file_digests(two_rank_baseline)
    status = run([SHARDQ, "status", spec]).stdout
    assert "done" in status


def test_dying_rank_ends_the_job(work):
    spec, _ = spec_for(work, "dying")
    start = time.time()
    proc = mpirun(2, ["run", spec], env={"SHARDQ_FAULT": "before-journal:1"}, check=False, timeout=120)
    assert proc.returncode != 0
    assert time.time() - start < 120
    assert "signal 9" in proc.stdout + proc.stderr or "Killed" in proc.stdout + proc.stderr


def test_other_spec_refused_for_same_state(work, baseline):
    spec, _ = spec_for(work, "baseline", steps=[{"gptq": {"bits": 3, "group_size": 32}}])
    proc = mpirun(1, ["run", spec], check=False)
    assert proc.returncode != 0
    assert "belongs to another job spec" in proc.stderr + proc.stdout


def test_unrunnable_step_refused_before_any_work(work):
    # An eval after qlora reads the adapter locally; with an s3:// output it cannot run
    # yet: the job must say so at once, not after the gptq and qlora steps.
    spec, output = spec_for(work, "with-qlora", steps=[{"gptq": {"bits": 4, "group_size": 32}}, {"qlora": {}},
                                                       {"eval": {"data": str(work["calib"])}}])
    text = json.loads(spec.read_text())
    text["output_uri"] = "s3://bucket/adapter"
    write_spec(spec, text)
    proc = mpirun(1, ["run", spec], check=False)
    assert proc.returncode != 0
    assert "steps[2]: an eval step after qlora needs a local output_uri" in proc.stderr + proc.stdout
    assert not (work["tmp"] / "with-qlora" / "state").exists()


@pytest.fixture(scope="module")
def sensitive(work):
    """A fixture model whose linear weights are scaled up (--linear-std 2) so that the layers, and so
    their quantization, matter to the output (with the default scale the embeddings dominate and
    4-bit noise is below the sampling noise), with calibration and scoring text sampled from it."""
    model = make_model(work["tmp"] / "sensitive-model", "--layers", str(LAYERS), "--hidden", "64", "--intermediate",
                       "128", "--heads", "4", "--kv-heads", "2", "--vocab", "512", "--seed", "4", "--linear-std", "2")
    data, ppl = model_sampled_data(model, work["tmp"], "order-", seed=5)
    return model, data, ppl


def quantize_sensitive(work, sensitive, name, step):
    model, data, _ = sensitive
    spec_path, output = spec_for(work, name, steps=[step])
    spec = json.loads(spec_path.read_text())
    spec["model"] = str(model)
    spec["data"] = data
    spec_path.write_text(json.dumps(spec))
    mpirun(1, ["run", spec_path])
    return output


def test_perplexity_order_fp_gptq_rtn(work, sensitive):
    # Scored on text drawn from the unquantized model itself, the unquantized model's
    # expected NLL is the text's entropy and any perturbed model only adds a KL
    # divergence: fp <= gptq. GPTQ's smaller output error must show as gptq < rtn.
    # Calibration uses other samples of the same model (pre-tokenized ids).
    model, _, ppl = sensitive
    fp = ppl(model, "fp")
    gptq = ppl(quantize_sensitive(work, sensitive, "order-gptq", {"gptq": {"bits": 4, "group_size": 32}}), "gptq")
    rtn = ppl(quantize_sensitive(work, sensitive, "order-rtn", {"rtn": {"bits": 4, "group_size": 32}}), "rtn")
    print(f"perplexity on model-sampled text: fp {fp:.4f}  gptq {gptq:.4f}  rtn {rtn:.4f}")
    assert fp <= gptq < rtn, (fp, gptq, rtn)


def test_ragged_last_group_end_to_end(work, sensitive):
    """group_size 48 divides neither the 64 nor the 128 inputs: the jobs run (act-order GPTQ, RTN,
    SparseGPT with 4 bits), scales/qzeros have ceil(in/48) rows, g_idx puts 48 columns in every
    group but the last, and the checkpoints load for eval with the usual order fp <= gptq < rtn."""
    model, _, ppl = sensitive
    gptq_out = quantize_sensitive(work, sensitive, "ragged-gptq",
                                  {"gptq": {"bits": 4, "group_size": 48, "desc_act": True}})
    rtn_out = quantize_sensitive(work, sensitive, "ragged-rtn", {"rtn": {"bits": 4, "group_size": 48}})
    sparse_out = quantize_sensitive(work, sensitive, "ragged-sparsegpt",
                                    {"sparsegpt": {"sparsity": 0.5, "bits": 4, "group_size": 48}})
    for output in (gptq_out, rtn_out, sparse_out):
        tensors = read_checkpoint(output)
        for lin, in_f in (("self_attn.q_proj", 64), ("mlp.down_proj", 128)):
            name = f"model.layers.1.{lin}"
            ngroups = -(-in_f // 48)
            assert tensors[name + ".scales"].shape[0] == ngroups and tensors[name + ".qzeros"].shape[0] == ngroups
            counts = np.bincount(tensors[name + ".g_idx"], minlength=ngroups)
            assert list(counts) == [48] * (ngroups - 1) + [in_f - 48 * (ngroups - 1)], (output, lin)
    assert math.isfinite(ppl(sparse_out, "ragged-sparsegpt"))
    fp, gptq, rtn = ppl(model, "fp"), ppl(gptq_out, "ragged-gptq"), ppl(rtn_out, "ragged-rtn")
    print(f"group_size 48 (ragged), perplexity on model-sampled text: fp {fp:.4f}  gptq {gptq:.4f}  rtn {rtn:.4f}")
    assert fp <= gptq < rtn, (fp, gptq, rtn)
