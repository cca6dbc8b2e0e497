"""The command line as README's *Commands* promises it:
- every subcommand answers -h/--help with its usage on stdout and exit 0, and bad arguments
  with its usage on stderr and exit 2;
- `models` of a local store that does not exist is an error;
- `push` refuses to replace a different checkpoint at an existing name/version (naming it,
  writing nothing) unless --force, and pushing the same checkpoint again is allowed;
- an output's manifest and the store's index record the step that made it (rtn, gptq);
- `eval`: --max-windows 0 means all windows, a seqlen beyond max_position_embeddings is refused
  unless --allow-long, and progress lines come per layer (--progress-every 0)."""
import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest

from s3_fixtures import BUCKET
from shardq_testlib import SHARDQ, calibration_text, make_model, run, write_spec

SUBCOMMANDS = {  # name -> arguments it refuses
    "run": [], "status": [], "eval": ["--model"], "inspect": [], "tokenize": ["--input", "x"],
    "push": ["only-one"], "pull": ["only-one"], "models": [], "sweep": ["s.json", "--point", "abc"],
    "report": ["results.jsonl"],
}
LAYERS = 2


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    model = make_model(tmp / "model", "--layers", str(LAYERS), "--hidden", "64", "--intermediate", "128",
                       "--heads", "4", "--kv-heads", "2", "--vocab", "512", "--seed", "9")
    return {"tmp": tmp, "model": model}


@pytest.mark.parametrize("command", sorted(SUBCOMMANDS))
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_on_stdout_exit_0(command, flag):
    r = run([SHARDQ, command, flag], check=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"usage: shardq {command}") and r.stderr == ""


@pytest.mark.parametrize("command", sorted(SUBCOMMANDS))
def test_bad_arguments_give_usage_on_stderr_exit_2(command):
    for args in ([], SUBCOMMANDS[command], ["--no-such-option"]):
        r = run([SHARDQ, command] + args, check=False)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert f"usage: shardq {command}" in r.stderr and r.stdout == "", args


def test_main_help_and_unknown_command():
    r = run([SHARDQ, "--help"], check=False)
    assert r.returncode == 0 and r.stdout.startswith("usage: shardq") and r.stderr == ""
    for args in ([], ["no-such-command"]):
        r = run([SHARDQ] + args, check=False)
        assert r.returncode == 2 and "usage: shardq" in r.stderr and r.stdout == ""


def test_models_of_a_missing_local_store_is_an_error(tmp_path):
    r = run([SHARDQ, "models", tmp_path / "nonexistent"], check=False)
    assert r.returncode == 1 and f"{tmp_path}/nonexistent" in r.stderr and r.stdout == ""
    (tmp_path / "empty").mkdir()
    assert "no models" in run([SHARDQ, "models", tmp_path / "empty"]).stdout


def make_checkpoint(path, seed):
    """A checkpoint directory with a manifest written here with hashlib."""
    path.mkdir(parents=True)
    files = {"config.json": json.dumps({"seed": seed}).encode(), "model.safetensors": bytes([seed]) * 5000}
    manifest = {"format": "shardq-manifest/1", "files": {}}
    for rel, data in files.items():
        (path / rel).write_bytes(data)
        manifest["files"][rel] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    (path / "manifest.json").write_text(json.dumps(manifest))
    return files


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        return str(tmp_path / "store"), None, lambda key: (tmp_path / "store" / key).read_bytes()
    server = request.getfixturevalue("server")
    prefix = f"force-{request.node.name.replace('[', '-').rstrip(']')}"
    return (f"s3://{BUCKET}/{prefix}", server.env(),
            lambda key: server.s3.get_object(Bucket=BUCKET, Key=f"{prefix}/{key}")["Body"].read())


def test_push_refuses_to_replace_a_version_unless_forced(store, tmp_path):
    uri, env, read = store
    first, second = make_checkpoint(tmp_path / "a", 1), make_checkpoint(tmp_path / "b", 2)
    push = [SHARDQ, "push", None, uri, "--name", "m", "--version", "1"]
    run(push[:2] + [tmp_path / "a"] + push[3:], env=env)
    run(push[:2] + [tmp_path / "a"] + push[3:], env=env)  # the same checkpoint again: allowed
    manifest = read("m/1/manifest.json")
    refused = run(push[:2] + [tmp_path / "b"] + push[3:], env=env, check=False)
    assert refused.returncode == 1
    assert f"{uri}/m/1 already holds a different checkpoint (m/1, created" in refused.stderr
    assert "--force" in refused.stderr
    assert read("m/1/model.safetensors") == first["model.safetensors"]  # nothing written
    assert read("m/1/manifest.json") == manifest
    run(push[:2] + [tmp_path / "b"] + push[3:] + ["--force"], env=env)
    assert read("m/1/model.safetensors") == second["model.safetensors"]
    [record] = json.loads(read("index.json"))["models"]
    assert record["manifest_sha256"] == hashlib.sha256(read("m/1/manifest.json")).hexdigest()


@pytest.mark.parametrize("method", ["rtn", "gptq"])
def test_output_records_the_method_that_made_it(work, method):
    name = f"method-{method}"
    spec = write_spec(work["tmp"] / f"{name}.json", {
        "name": name, "model": str(work["model"]),
        "data": {"calibration": str(calibration_text(work["tmp"])), "nsamples": 4, "seqlen": 32},
        "steps": [{method: {"bits": 4, "group_size": 32}}],
        "state_uri": str(work["tmp"] / name / "state"), "output_uri": str(work["tmp"] / name / "output"),
        "seed": 1})
    run([SHARDQ, "run", spec])
    output = work["tmp"] / name / "output"
    assert json.loads((output / "manifest.json").read_text())["method"] == method
    # the format stays GPTQ's, which loaders read by quant_method
    assert json.loads((output / "config.json").read_text())["quantization_config"]["quant_method"] == "gptq"
    store = work["tmp"] / f"{name}-store"
    run([SHARDQ, "push", output, store, "--name", name, "--version", "1"])
    [record] = json.loads((store / "index.json").read_text())["models"]
    assert record["method"] == method
    rows = run([SHARDQ, "models", store]).stdout.splitlines()
    assert rows[1].split()[:3] == [name, "1", method]


@pytest.fixture(scope="module")
def eval_data(work):
    ids = np.random.default_rng(4).integers(0, 512, size=1000)
    path = work["tmp"] / "eval.ids"
    path.write_text(" ".join(map(str, ids)))
    return path, len(ids)


def eval_metrics(work, data, *args):
    out = work["tmp"] / "metrics.json"
    r = run([SHARDQ, "eval", "--model", work["model"], "--data-ids", data, *args, "--out", out])
    return json.loads(out.read_text()), r.stderr


def test_eval_max_windows_zero_means_all(work, eval_data):
    data, n = eval_data
    every, _ = eval_metrics(work, data, "--seqlen", "64")
    zero, _ = eval_metrics(work, data, "--seqlen", "64", "--max-windows", "0")
    four, _ = eval_metrics(work, data, "--seqlen", "64", "--max-windows", "4")
    assert every["windows"] == zero["windows"] == n // 64 and zero["tokens"] == n // 64 * 63
    assert zero["nll"] == every["nll"]
    assert four["windows"] == 4 and four["tokens"] == 4 * 63


def test_eval_progress_per_layer(work, eval_data):
    data, n = eval_data
    _, log = eval_metrics(work, data, "--seqlen", "64", "--progress-every", "0")
    windows = n // 64
    layers = re.findall(rf"eval: windows 1-{windows} of {windows}: layer (\d+)/{LAYERS} \((\d+) tokens", log)
    assert [int(layer) for layer, _ in layers] == list(range(1, LAYERS + 1)), log
    assert all(int(tokens) == windows * 64 for _, tokens in layers)


def test_eval_refuses_seqlen_beyond_max_positions(work, eval_data):
    data, _ = eval_data
    short = work["tmp"] / "short-model"
    short.mkdir(exist_ok=True)
    for f in Path(work["model"]).iterdir():
        target = short / f.name
        if not target.exists():
            target.symlink_to(f)
    config = json.loads((work["model"] / "config.json").read_text())
    (short / "config.json").unlink()
    (short / "config.json").write_text(json.dumps(dict(config, max_position_embeddings=128)))
    r = run([SHARDQ, "eval", "--model", short, "--data-ids", data, "--seqlen", "256"], check=False)
    assert r.returncode == 1
    assert "--seqlen 256 exceeds" in r.stderr and "max_position_embeddings 128" in r.stderr
    assert "--allow-long" in r.stderr
    out = work["tmp"] / "long.json"
    run([SHARDQ, "eval", "--model", short, "--data-ids", data, "--seqlen", "256", "--allow-long", "--out", out])
    assert json.loads(out.read_text())["windows"] == 1000 // 256
