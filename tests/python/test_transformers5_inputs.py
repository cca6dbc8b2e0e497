"""Inputs as today's models and transformers 5 write them, and replayable calibration windows.

- A tokenizer that adds no BOS (SmolLM2's, ../shared/data/tokenizers/smollm2): calibration and
  eval text become exactly the ids the `tokenizers` library's encode(text) gives, with no BOS
  (as README says); Llama 2's tokenizer, which adds one, gets its BOS first. Checked through
  `shardq eval` (text against the library's ids) and through calibration jobs with
  data.sampling "consecutive" (text against the library's ids: the same checkpoint bytes).
- data.sampling "consecutive": window i is ids[i*seqlen, (i+1)*seqlen) — ids past
  nsamples*seqlen change nothing, one id more in front changes the result, and too few ids are
  refused naming data.sampling.
- A sharded checkpoint whose index carries transformers 5's metadata
  ({"total_parameters": N, "total_size": N}) loads and evaluates as the single file does.
"""
import json
import shutil

import pytest
import tokenizers

from shardq_testlib import SHARED_DATA, SHARDQ, make_model, mpirun, run, write_spec

TOKENIZERS = SHARED_DATA / "tokenizers"
NSAMPLES, SEQLEN = 4, 32
pytestmark = pytest.mark.skipif(not (TOKENIZERS / "smollm2" / "tokenizer.json").exists(),
                                reason="needs ../shared/data/tokenizers")


def text_sample():
    """A few hundred tokens of real text (WikiText-2 when present)."""
    wiki = SHARED_DATA / "wikitext-2" / "test.txt"
    if wiki.exists():
        return wiki.read_text(encoding="utf-8")[:1500]
    return "The quick brown fox jumps over the lazy dog. " * 60


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Tiny Llama models (vocab 49152, enough for both tokenizers) with SmolLM2's tokenizer (no
    tokenizer_config.json: nothing asks for a BOS) and with Llama 2's."""
    tmp = tmp_path_factory.mktemp("t5")
    out = {}
    for name in ("smollm2", "llama2"):
        model = make_model(tmp / name, "--layers", "2", "--hidden", "64", "--intermediate", "128", "--heads", "4",
                           "--kv-heads", "2", "--vocab", "49152", "--seed", "2")
        (model / "tokenizer_config.json").unlink()
        shutil.copy(TOKENIZERS / name / "tokenizer.json", model / "tokenizer.json")
        out[name] = model
    text = tmp / "text.txt"
    text.write_text(text_sample(), encoding="utf-8")
    return {"tmp": tmp, "text": text, **out}


def library_ids(name, text_path):
    tok = tokenizers.Tokenizer.from_file(str(TOKENIZERS / name / "tokenizer.json"))
    return tok.encode(text_path.read_text(encoding="utf-8")).ids


def write_ids(path, ids):
    path.write_text(" ".join(map(str, ids)) + "\n")
    return path


def shardq_eval(model, data_flag, data, out):
    run([SHARDQ, "eval", "--model", model, data_flag, data, "--seqlen", "16", "--out", out])
    return json.loads(out.read_text())


@pytest.mark.parametrize("name,bos", [("smollm2", None), ("llama2", 1)])
def test_eval_text_is_the_tokenizers_ids(models, name, bos):
    ids = library_ids(name, models["text"])
    assert (ids[0] == bos) if bos is not None else (ids[0] not in (0, 1, 2)), ids[:3]
    tmp = models["tmp"]
    by_text = shardq_eval(models[name], "--data", models["text"], tmp / f"{name}-text.json")
    by_ids = shardq_eval(models[name], "--data-ids", write_ids(tmp / f"{name}-ids.txt", ids), tmp / f"{name}-ids.json")
    assert by_text["data_tokens"] == by_ids["data_tokens"] == len(ids)
    assert by_text["ppl"] == by_ids["ppl"]


def calibrate(models, name, data, token_ids, sampling="consecutive", check=True):
    tmp = models["tmp"]
    spec = {"model": str(models["smollm2"]),
            "data": {"calibration": str(data), "format": "token_ids" if token_ids else "text",
                     "nsamples": NSAMPLES, "seqlen": SEQLEN, "sampling": sampling},
            "steps": [{"gptq": {"bits": 4, "group_size": 32}}],
            "state_uri": str(tmp / name / "state"), "output_uri": str(tmp / name / "output"),
            "parallel": {"mode": "sequential", "micro_batch": 2}, "seed": 3}
    proc = mpirun(1, ["run", write_spec(tmp / f"{name}.json", spec)], check=check)
    return proc, tmp / name / "output" / "model.safetensors"


def test_calibration_text_without_bos_and_consecutive_windows(models):
    ids = library_ids("smollm2", models["text"])
    need = NSAMPLES * SEQLEN
    assert len(ids) > need + 1
    tmp = models["tmp"]
    _, by_text = calibrate(models, "text", models["text"], False)
    _, by_ids = calibrate(models, "ids", write_ids(tmp / "calib-ids.txt", ids), True)
    _, exact = calibrate(models, "exact", write_ids(tmp / "calib-exact.txt", ids[:need]), True)
    _, shifted = calibrate(models, "shifted", write_ids(tmp / "calib-shifted.txt", [0] + ids[:need]), True)
    # Text is tokenized with no BOS: the same windows, so the same checkpoint, as the library's ids.
    assert by_text.read_bytes() == by_ids.read_bytes()
    # Only the first nsamples*seqlen ids are used, in order...
    assert exact.read_bytes() == by_ids.read_bytes()
    # ...from the very first: one id in front (a BOS, say) moves every window.
    assert shifted.read_bytes() != by_ids.read_bytes()


def test_consecutive_needs_enough_ids(models):
    short = write_ids(models["tmp"] / "calib-short.txt", library_ids("smollm2", models["text"])[:NSAMPLES * SEQLEN - 1])
    proc, out = calibrate(models, "short", short, True, check=False)
    assert proc.returncode != 0
    assert (f'data.sampling: "consecutive" needs data.nsamples x data.seqlen = {NSAMPLES} x {SEQLEN} = '
            f'{NSAMPLES * SEQLEN} tokens, {short} has {NSAMPLES * SEQLEN - 1}') in proc.stderr + proc.stdout
    assert not out.exists()


def test_transformers5_sharded_index_loads(models):
    tmp = models["tmp"]
    single = make_model(tmp / "single", "--layers", "2", "--seed", "5")
    sharded = make_model(tmp / "sharded", "--layers", "2", "--seed", "5", "--shards", "3")
    index_path = sharded / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    total = index["metadata"]["total_size"]
    index["metadata"] = {"total_parameters": total // 2, "total_size": total}  # as transformers 5 writes it
    index_path.write_text(json.dumps(index, indent=2))
    ids = write_ids(tmp / "ids-512.txt", [(7 * i) % 512 for i in range(160)])
    one = shardq_eval(single, "--data-ids", ids, tmp / "single.json")
    three = shardq_eval(sharded, "--data-ids", ids, tmp / "sharded.json")
    assert one["ppl"] == three["ppl"] and one["windows"] == three["windows"] == 10
    proc = run([SHARDQ, "inspect", sharded])
    assert "model-00003-of-00003.safetensors" in proc.stdout
