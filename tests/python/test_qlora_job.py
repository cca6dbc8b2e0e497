"""The qlora job step end to end (shardq run under mpirun, CPU backend):

- -np 1, 2, 3 give byte-identical adapters (micro-batch gradients summed in a fixed order);
- a rank killed with SIGKILL right after a journal checkpoint, or the job stopped by
  SIGUSR1 between steps (exit 75), then the same command again, ends with the adapter
  of an uninterrupted run, byte for byte;
- peft.PeftModel.from_pretrained loads the adapter as written onto a transformers
  LlamaForCausalLM whose linears are the NF4-dequantized base (nf4_reference.py, NumPy),
  and its per-token NLL (from its logits) equals `shardq eval --adapter`'s to 1e-4;
- `merge: true` writes a model that scores as base + adapter does;
- JSONL prompt/completion data trains; bad input is refused naming the field or line,
  with no checkpoint or output written;
- the real stories260K model, trained on WikiText-2 (text it has not seen), lowers that
  text's held-out perplexity."""
import json
import os
import signal
import subprocess
import time

import numpy as np
import pytest
import torch

import lora_reference as ref
from nf4_reference import dequantized
from shardq_testlib import ROOT, SHARDQ, SHARED_DATA, make_model, mpirun, read_checkpoint, run, write_spec

TINY = ["--layers", "2", "--hidden", "64", "--intermediate", "128", "--heads", "4", "--kv-heads", "2",
        "--vocab", "300", "--dtype", "f32", "--seed", "2"]


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("qlora")
    model = make_model(tmp / "model", *TINY)
    rng = np.random.default_rng(5)
    words = "the cat sat on a mat and dog ran far away from home to see big red ball".split()
    (tmp / "train.txt").write_text(" ".join(rng.choice(words, 2500)))
    (tmp / "eval.txt").write_text(" ".join(rng.choice(words, 500)))
    return tmp, model


def spec(tmp, model, name, **lora):
    options = {"r": 4, "alpha": 8, "dropout": 0.1, "steps": 6, "batch_size": 2, "grad_accum": 3,
               "learning_rate": 0.01, "save_every": 2, "lr_schedule": "cosine", "warmup_steps": 1,
               "eval_data": str(tmp / "eval.txt"), "eval_every": 3}
    options.update(lora)
    return write_spec(tmp / f"{name}.json", {
        "model": str(model), "data": {"calibration": str(tmp / "train.txt"), "seqlen": 24},
        "steps": [{"qlora": options}], "state_uri": str(tmp / name / "state"),
        "output_uri": str(tmp / name / "out"), "seed": 11})


def adapter_bytes(tmp, name):
    return (tmp / name / "out" / "adapter_model.safetensors").read_bytes()


@pytest.fixture(scope="module")
def reference_run(work):
    tmp, model = work
    mpirun(1, ["run", spec(tmp, model, "np1")])
    return adapter_bytes(tmp, "np1")


@pytest.mark.parametrize("ranks", [2, 3])
def test_rank_count_does_not_change_the_adapter(work, reference_run, ranks):
    tmp, model = work
    mpirun(ranks, ["run", spec(tmp, model, f"np{ranks}")])
    assert adapter_bytes(tmp, f"np{ranks}") == reference_run


def test_token_ids_data_trains_as_its_text(work, reference_run):
    """"format": "token_ids": the ids `shardq tokenize` gives for the text train the adapter the text does."""
    tmp, model = work
    for name in ("train", "eval"):
        ids = run([SHARDQ, "tokenize", "--tokenizer", model, "--input", tmp / f"{name}.txt"]).stdout
        (tmp / f"{name}.ids").write_text(ids)
    job = spec(tmp, model, "ids", format="token_ids", train_data=str(tmp / "train.ids"),
               eval_data=str(tmp / "eval.ids"))
    mpirun(1, ["run", job])
    assert adapter_bytes(tmp, "ids") == reference_run


def test_kill_and_resume_gives_the_same_adapter(work, reference_run):
    tmp, model = work
    job = spec(tmp, model, "killed")
    killed = mpirun(2, ["run", job], env={"SHARDQ_FAULT": "after-checkpoint:4"}, check=False)
    assert killed.returncode != 0
    journal = json.loads((tmp / "killed" / "state" / "journal.json").read_text())
    assert journal["steps"][0]["checkpoint"]["train_step"] == 4 and journal["steps"][0]["status"] == "running"
    assert not (tmp / "killed" / "out").exists()
    resumed = mpirun(2, ["run", job])
    assert "resuming after train step 4" in resumed.stderr + resumed.stdout
    assert adapter_bytes(tmp, "killed") == reference_run


def test_sigusr1_stops_between_steps_and_resumes(work, reference_run):
    tmp, model = work
    job = spec(tmp, model, "signalled")
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_rmaps_base_oversubscribe="1", OMP_NUM_THREADS="1", SHARDQ_LAYER_DELAY_MS="400")
    proc = subprocess.Popen(["mpirun", "-np", "2", "--bind-to", "none", str(SHARDQ), "run", str(job)], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    journal = tmp / "signalled" / "state" / "journal.json"
    deadline = time.time() + 120
    while time.time() < deadline:  # wait for the first checkpoint (train step 2), then ask to stop
        if journal.exists() and "checkpoint" in json.loads(journal.read_text())["steps"][0]:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGUSR1)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 75, out
    assert "run the same command to resume" in out
    assert 2 <= json.loads(journal.read_text())["steps"][0]["checkpoint"]["train_step"] < 6
    mpirun(2, ["run", job])
    assert adapter_bytes(tmp, "signalled") == reference_run


def test_training_lowers_held_out_loss_and_reports_progress(work, reference_run):
    tmp, _ = work
    result = json.loads((tmp / "np1" / "state" / "journal.json").read_text())["steps"][0]["result"]
    manifest = json.loads((tmp / "np1" / "out" / "manifest.json").read_text())
    assert manifest["method"] == "qlora" and manifest["quantization"] == {"base_quant": "nf4"}
    assert manifest["metrics"]["eval"] == result["eval"]
    evals = [e["loss"] for e in result["eval"]]
    assert [e["train_step"] for e in result["eval"]] == [3, 6]
    before = float(run([SHARDQ, "eval", "--model", tmp / "model", "--data", tmp / "eval.txt", "--seqlen", "24"])
                   .stdout.split("nll ")[1].split()[0])
    assert evals[1] < evals[0] < before


def test_peft_loads_the_adapter_with_the_same_logits(work, reference_run):
    tmp, model = work
    out = tmp / "np1" / "out"
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["r"] == 4 and config["lora_alpha"] == 8
    assert config["base_model_name_or_path"] == str(model)
    # the base as training saw it: every linear NF4-quantized and dequantized, in NumPy
    tensors = read_checkpoint(model)
    state = {name: torch.from_numpy(dequantized(t) if name.endswith("proj.weight") else t.astype(np.float32))
             for name, t in tensors.items()}
    from peft import PeftModel
    peft = PeftModel.from_pretrained(ref.load_llama(model, state), str(out)).eval()
    run([SHARDQ, "eval", "--model", model, "--data", tmp / "eval.txt", "--seqlen", "24", "--max-windows", "3",
         "--adapter", out, "--token-nll", tmp / "nll.txt"])
    got = np.loadtxt(tmp / "nll.txt")
    tokens = run([SHARDQ, "tokenize", "--tokenizer", model, "--input", tmp / "eval.txt"]).stdout.split()
    ids = torch.tensor([int(t) for t in tokens[:72]], dtype=torch.int64).reshape(3, 24)
    with torch.no_grad():
        logits = peft(input_ids=ids).logits
    want = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1),
                                             reduction="none").numpy()
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()


def test_merge_eval_step_and_push(work):
    """merge: true, an eval step after qlora and a push of the adapter, in one job."""
    tmp, model = work
    job = spec(tmp, model, "merge", steps=2, merge=True, eval_every=1)
    text = json.loads(job.read_text())
    text["steps"].append({"eval": {"data": str(tmp / "eval.txt"), "seqlen": 24}})
    text["push"] = {"store": str(tmp / "store"), "name": "tiny-lora"}
    mpirun(1, ["run", write_spec(job, text)])
    out = tmp / "merge" / "out"
    assert (out / "merged" / "config.json").exists() and (out / "merged" / "manifest.json").exists()
    score = lambda *args: float(run([SHARDQ, "eval", "--data", tmp / "eval.txt", "--seqlen", "24", *args])
                                .stdout.split("nll ")[1].split()[0])
    with_adapter = score("--model", model, "--adapter", out)
    assert abs(score("--model", out / "merged") - with_adapter) < 1e-4
    journal = json.loads((tmp / "merge" / "state" / "journal.json").read_text())
    assert abs(journal["steps"][1]["result"]["nll"] - with_adapter) < 1e-6
    run([SHARDQ, "pull", tmp / "store" / "tiny-lora" / "1", tmp / "pulled"])
    for name in ("adapter_model.safetensors", "merged/model.safetensors"):
        assert (tmp / "pulled" / name).read_bytes() == (out / name).read_bytes()


def test_gptq_base_from_an_earlier_step(work):
    """gptq then qlora in one job: the adapter trains on the GPTQ checkpoint (dequantized as stored)."""
    tmp, model = work
    job = spec(tmp, model, "gptq", steps=2, eval_every=2)
    text = json.loads(job.read_text())
    text["data"]["nsamples"] = 8
    text["steps"].insert(0, {"gptq": {"bits": 4, "group_size": 32}})
    mpirun(2, ["run", write_spec(job, text)])
    out = tmp / "gptq" / "out"
    config = json.loads((out / "adapter_config.json").read_text())
    base = config["base_model_name_or_path"]
    assert json.loads((out / "manifest.json").read_text())["quantization"] == {"base_quant": "gptq"}
    assert "quantization_config" in json.loads((tmp / "gptq" / "state" / "step0" / "model" / "config.json").read_text())
    assert base == str(tmp / "gptq" / "state" / "step0" / "model")
    held_out = json.loads((tmp / "gptq" / "state" / "journal.json").read_text())["steps"][1]["result"]["eval"][-1]
    nll = float(run([SHARDQ, "eval", "--model", base, "--adapter", out, "--data", tmp / "eval.txt", "--seqlen", "24"])
                .stdout.split("nll ")[1].split()[0])
    assert abs(nll - held_out["loss"]) < 1e-5


def test_jsonl_prompt_completion_trains(work):
    tmp, model = work
    lines = [{"prompt": f"the cat {w}", "completion": f" sat on a {w} mat"} for w in ["red", "big", "far"] * 4]
    (tmp / "train.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    job = spec(tmp, model, "jsonl", format="jsonl", train_data=str(tmp / "train.jsonl"), eval_data=None,
               eval_every=None, steps=3)
    text = json.loads(job.read_text())
    for key in ("eval_data", "eval_every"):
        del text["steps"][0]["qlora"][key]
    write_spec(job, text)
    mpirun(1, ["run", job])
    assert (tmp / "jsonl" / "out" / "adapter_model.safetensors").exists()


@pytest.mark.parametrize("case,lora,data,message,journal", [
    # checked against the model before the journal exists
    ("bigr", {"r": 40, "target_modules": ["k_proj"]}, None, "steps[0].qlora: lora: r 40 is larger than k_proj", False),
    ("gptqbase", {"base_quant": "gptq"}, None, "steps[0].qlora.base_quant: \"gptq\" needs a GPTQ checkpoint", False),
    # found when the data is read: before any training checkpoint or output
    ("empty", {}, "", "less than one training window", True),
    ("badline", {"format": "jsonl"}, '{"prompt": "a", "completion": "b"}\n{"prompt": "a"}\n', ":2: needs string",
     True),
])
def test_bad_input_is_refused_before_any_state(work, case, lora, data, message, journal):
    tmp, model = work
    job = spec(tmp, model, case, **lora)
    if data is not None:
        (tmp / f"{case}.data").write_text(data)
        text = json.loads(job.read_text())
        text["steps"][0]["qlora"]["train_data"] = str(tmp / f"{case}.data")
        write_spec(job, text)
    proc = mpirun(2, ["run", job], check=False)
    assert proc.returncode == 1 and message in proc.stderr, proc.stderr
    assert not (tmp / case / "out").exists()
    assert not (tmp / case / "state" / "step0").exists()  # no training checkpoint
    assert (tmp / case / "state").exists() == journal


@pytest.mark.skipif(not (SHARED_DATA / "stories260K").exists(), reason="needs ../shared/data/stories260K")
def test_stories260k_learns_unseen_text(tmp_path):
    model = SHARED_DATA / "stories260K"
    wiki = (SHARED_DATA / "wikitext-2" / "valid.txt").read_text()[:60000]
    (tmp_path / "train.txt").write_text(wiki[:45000])
    (tmp_path / "held_out.txt").write_text(wiki[45000:])
    job = write_spec(tmp_path / "job.json", {
        "model": str(model), "data": {"calibration": str(tmp_path / "train.txt"), "seqlen": 128},
        "steps": [{"qlora": {"r": 8, "alpha": 16, "steps": 16, "batch_size": 4, "grad_accum": 1,
                             "learning_rate": 0.005, "save_every": 16}}],
        "state_uri": str(tmp_path / "state"), "output_uri": str(tmp_path / "out"), "seed": 0})
    mpirun(2, ["run", job])
    ppl = lambda *extra: float(run([SHARDQ, "eval", "--model", model, "--data", tmp_path / "held_out.txt",
                                    "--seqlen", "128", *extra]).stdout.split("ppl ")[1].split()[0])
    before, after = ppl(), ppl("--adapter", tmp_path / "out")
    print(f"stories260K held-out WikiText ppl: {before:.2f} -> {after:.2f}")
    assert after < 0.9 * before
