"""test_kv_cache.py: calibrated KV-cache quantization (the kv_cache step, eval's
--kv-cache-scales / --kv-cache-dtype / --kv-cache-kivi) against independent references:

- the fp8 e4m3 grid enumerated here from its bit layout (e4m3fn: 4 exponent bits, bias 7,
  3 mantissa bits, 0x7f/0xff NaN, no infinities), rounding to the nearest grid value with
  ties to the even code, saturating at 448; checked against torch.float8_e4m3fn where torch
  is installed, and the kernel (build/tools/kv_grid_tool) against it bit for bit;
- the scales against per-head maxima of keys (after RoPE) and values taken from the NumPy
  Llama forward (llama_reference.py, float64) over the same windows: fp32 vs float64
  activations, so 1e-5 relative;
- perplexity with static int8 / fp8 scales and with KIVI-4 / KIVI-2 against that forward
  with the same cache in NumPy (llama_reference's kv_transform): 1e-5 relative (fp32 vs
  float64, measured within 1e-7; a value near a rounding boundary may land on the other
  side), and each cache must move the perplexity by more than 10x that tolerance (the
  smallest move, KIVI-2 on this random fixture, is 6e-4), so a cache that does nothing fails;
- 1 rank (sequential) vs 2 ranks (pipeline): the same bytes; a run killed after the output
  was written but before the journal recorded it resumes to the same bytes;
- the exported config parsed by compressed-tensors' QuantizationConfig (where installed).
"""
import json
import math
import subprocess

import numpy as np
import pytest

from llama_reference import load_model, reference_nll
from shardq_testlib import ROOT, SHARDQ, mpirun, read_checkpoint, run
from test_forward_reference import WORK, random_ids, shardq_eval, write_fixture

KV_GRID_TOOL = ROOT / "build" / "tools" / "kv_grid_tool"
SEQLEN, NSAMPLES, KIVI_GROUP = 40, 5, 32  # 40 = one block of 32 quantized + 8 residual tokens


# ---------------------------------------------------------------- NumPy references


def e4m3_grid():
    """The non-negative finite e4m3fn values, in code order 0x00..0x7e (increasing)."""
    vals = []
    for code in range(0x7F):
        e, m = code >> 3, code & 7
        vals.append(m / 8 * 2.0**-6 if e == 0 else (1 + m / 8) * 2.0 ** (e - 7))
    return np.array(vals)


GRID = e4m3_grid()


def e4m3_round(y):
    """Round to the nearest e4m3fn value (ties to the even code), saturating at 448."""
    y = np.asarray(y, dtype=np.float64)
    a = np.minimum(np.abs(y), GRID[-1])
    hi = np.clip(np.searchsorted(GRID, a), 1, len(GRID) - 1)
    lo = hi - 1
    d_lo, d_hi = a - GRID[lo], GRID[hi] - a
    pick = np.where(d_lo < d_hi, lo, np.where(d_hi < d_lo, hi, np.where(lo % 2 == 0, lo, hi)))
    return np.sign(y) * GRID[pick]


def static_qdq(x, scale, dtype):
    """x [..., heads, head_dim] through the static grid of per-head scales [heads] (fp32 arithmetic)."""
    x = np.asarray(x, dtype=np.float32)
    s = np.asarray(scale, dtype=np.float32)[:, None]
    y = x / s
    q = e4m3_round(y).astype(np.float32) if dtype == "fp8" else np.clip(np.rint(y), -128, 127).astype(np.float32)
    return q * s


def asym_qdq(x, bits, axis):
    """Asymmetric min/max fake quantization along `axis` (kn_fake_quantize_rows' grid)."""
    lo, hi = x.min(axis=axis, keepdims=True), x.max(axis=axis, keepdims=True)
    scale = (hi - lo) / (2**bits - 1)
    safe = np.where(scale > 0, scale, 1.0)
    return np.where(scale > 0, lo + safe * np.minimum(np.round((x - lo) / safe), 2**bits - 1), x)


def kivi(bits):
    """KIVI: keys per channel over blocks of KIVI_GROUP tokens, values per token; the last
    seq % KIVI_GROUP tokens in full precision."""
    def transform(layer, k, v):
        k, v = k.copy(), v.copy()
        full = len(k) // KIVI_GROUP * KIVI_GROUP
        for b in range(0, full, KIVI_GROUP):
            k[b : b + KIVI_GROUP] = asym_qdq(k[b : b + KIVI_GROUP], bits, axis=0)
        v[:full] = asym_qdq(v[:full], bits, axis=-1)
        return k, v
    return transform


def static(scales, dtype):
    def transform(layer, k, v):
        return static_qdq(k, scales["k_scale"][layer], dtype), static_qdq(v, scales["v_scale"][layer], dtype)
    return transform


def reference_absmax(model, ids):
    """Per-layer, per-head max |k| (after RoPE) and |v| over the windows."""
    cfg = model[0]
    L, H = cfg["num_hidden_layers"], cfg["num_key_value_heads"]
    k_max, v_max = np.zeros((L, H)), np.zeros((L, H))

    def observe(layer, k, v):
        k_max[layer] = np.maximum(k_max[layer], np.abs(k).max(axis=(0, 2)))
        v_max[layer] = np.maximum(v_max[layer], np.abs(v).max(axis=(0, 2)))
        return k, v
    for w in range(len(ids) // SEQLEN):
        reference_nll(None, ids[w * SEQLEN : (w + 1) * SEQLEN], model=model, kv_transform=observe)
    return k_max, v_max


def reference_ppl(model, ids, kv_transform=None):
    nll = np.concatenate([reference_nll(None, ids[w * SEQLEN : (w + 1) * SEQLEN], model=model,
                                        kv_transform=kv_transform) for w in range(len(ids) // SEQLEN)])
    return math.exp(nll.mean())


# ---------------------------------------------------------------- the grid


def grid_tool(dtype, scale, values):
    proc = subprocess.run([str(KV_GRID_TOOL), dtype, repr(scale)], input="\n".join(float(v).hex() for v in values),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return np.array([float.fromhex(line) for line in proc.stdout.split()], dtype=np.float32)


def grid_probe_values():
    """Every grid value, every midpoint (ties), points just beside them, beyond 448, subnormals, random."""
    mids = (GRID[1:] + GRID[:-1]) / 2
    near = np.concatenate([np.nextafter(mids.astype(np.float32), np.float32(0)),
                           np.nextafter(mids.astype(np.float32), np.float32(1e9))])
    rng = np.random.default_rng(0)
    extra = [448, 449, 463.9, 464, 465, 1e6, 2.0**-10, 3 * 2.0**-10, 2.0**-12]
    pos = np.concatenate([GRID, mids, near, extra, rng.uniform(0, 500, 2000), rng.lognormal(-3, 3, 2000)])
    return np.concatenate([pos, -pos]).astype(np.float32)


def test_e4m3_table_agrees_with_torch():
    torch = pytest.importorskip("torch")
    x = grid_probe_values()
    clamped = np.clip(x, -448, 448)  # torch's cast does not saturate: clamp first, as vLLM does
    want = torch.from_numpy(clamped).to(torch.float8_e4m3fn).to(torch.float32).numpy()
    np.testing.assert_array_equal(e4m3_round(x).astype(np.float32), want)


@pytest.mark.parametrize("dtype,scale", [("fp8", 1.0), ("fp8", 0.0123), ("int8", 0.05), ("int8", 1.0)])
def test_kernel_grid_is_exact(dtype, scale):
    x = grid_probe_values() * np.float32(scale if dtype == "fp8" else scale * 0.3)
    got = grid_tool(dtype, scale, x)
    want = static_qdq(x[:, None], [scale], dtype)[:, 0]
    np.testing.assert_array_equal(got, want)
    assert np.unique(got).size > 20  # the probe spans many grid points


# ---------------------------------------------------------------- the kv_cache step


def write_job(path, model_dir, ids_file, out, state, steps, ranks_mode="sequential"):
    spec = {"model": str(model_dir),
            "data": {"calibration": str(ids_file), "format": "token_ids", "nsamples": NSAMPLES, "seqlen": SEQLEN,
                     "sampling": "consecutive"},
            "steps": steps, "state_uri": str(state), "output_uri": str(out),
            "parallel": {"mode": ranks_mode, "micro_batch": 2}}
    path.write_text(json.dumps(spec))
    return path


@pytest.fixture(scope="module")
def kv_work(tmp_path_factory):
    work = tmp_path_factory.mktemp("kv_cache")
    model_dir = write_fixture(WORK / "kv-cache-calibration", seed=11, kv_heads=2, tied=False)
    ids = random_ids(12, 256, NSAMPLES * SEQLEN)
    ids_file = work / "ids.txt"
    ids_file.write_text(" ".join(map(str, ids)) + "\n")
    return work, model_dir, ids, ids_file


def run_kv_job(kv_work, name, dtype, strategy="attn_head", ranks=1, mode="sequential", env=None, check=True):
    work, model_dir, _, ids_file = kv_work
    job = write_job(work / f"{name}.json", model_dir, ids_file, work / name / "out", work / name / "state",
                    [{"kv_cache": {"dtype": dtype, "strategy": strategy}}], mode)
    proc = mpirun(ranks, ["run", job], env=env, check=check)
    return work / name / "out", proc


@pytest.fixture(scope="module")
def fp8_out(kv_work):
    return run_kv_job(kv_work, "fp8-1rank", "fp8")[0]


@pytest.fixture(scope="module")
def absmax(kv_work):
    _, model_dir, ids, _ = kv_work
    return reference_absmax(load_model(model_dir), ids)


@pytest.mark.parametrize("dtype,strategy", [("fp8", "attn_head"), ("int8", "tensor")])
def test_scales_match_numpy(kv_work, absmax, fp8_out, dtype, strategy):
    out = fp8_out if dtype == "fp8" else run_kv_job(kv_work, f"{dtype}-{strategy}", dtype, strategy)[0]
    k_max, v_max = absmax
    if strategy == "tensor":
        k_max, v_max = [np.repeat(m.max(axis=1, keepdims=True), m.shape[1], axis=1) for m in (k_max, v_max)]
    qmax = 448.0 if dtype == "fp8" else 127.0
    doc = json.loads((out / "kv_cache_scales.json").read_text())
    assert (doc["dtype"], doc["strategy"], doc["num_layers"], doc["num_kv_heads"]) == (dtype, strategy, 2, 2)
    np.testing.assert_allclose(doc["k_scale"], k_max / qmax, rtol=1e-5)
    np.testing.assert_allclose(doc["v_scale"], v_max / qmax, rtol=1e-5)
    # the checkpoint's tensors hold the same fp32 scales, under the names compressed-tensors / vLLM read
    tensors = read_checkpoint(out)
    for l in range(2):
        for which in ("k_scale", "v_scale"):
            t = tensors[f"model.layers.{l}.self_attn.{which}"]
            assert t.dtype == np.float32 and t.shape == ((2, 1, 1) if strategy == "attn_head" else (1,))
            np.testing.assert_array_equal(t.reshape(-1), np.float32(doc[which][l][: t.size]))
    # every tensor of the input is carried over as stored
    source = read_checkpoint(kv_work[1])
    for name, value in source.items():
        np.testing.assert_array_equal(tensors[name], value)
    qc = json.loads((out / "config.json").read_text())["quantization_config"]
    assert qc["kv_cache_scheme"] == {"num_bits": 8, "type": "float" if dtype == "fp8" else "int",
                                     "strategy": strategy, "dynamic": False, "symmetric": True}
    assert "kv_cache_scales.json" in json.loads((out / "manifest.json").read_text())["files"]


def test_compressed_tensors_parses_the_config(fp8_out):
    ct = pytest.importorskip("compressed_tensors.quantization")
    qc = json.loads((fp8_out / "config.json").read_text())["quantization_config"]
    parsed = ct.QuantizationConfig.model_validate(qc)
    assert parsed.kv_cache_scheme.type == "float" and parsed.kv_cache_scheme.num_bits == 8
    assert parsed.kv_cache_scheme.strategy == "attn_head" and not parsed.kv_cache_scheme.dynamic


def test_transformers_loads_the_output_as_the_plain_model(kv_work, fp8_out):
    """transformers 5.24 applies no KV-cache quantization from a kv_cache_scheme without weight
    groups: it loads the weights, reports k_scale/v_scale as unexpected keys, and computes what
    the input model computes."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    ids = torch.tensor([kv_work[2][:SEQLEN]])
    logits = [transformers.AutoModelForCausalLM.from_pretrained(str(d), dtype=torch.float32)(ids).logits
              for d in (kv_work[1], fp8_out)]
    assert torch.equal(logits[0], logits[1])


def test_two_ranks_pipeline_give_the_same_bytes(kv_work, fp8_out):
    out2, _ = run_kv_job(kv_work, "fp8-2ranks", "fp8", ranks=2, mode="pipeline")
    for f in ("kv_cache_scales.json", "model.safetensors", "config.json"):
        assert (out2 / f).read_bytes() == (fp8_out / f).read_bytes(), f


def test_killed_before_the_journal_resumes_to_the_same_bytes(kv_work, fp8_out):
    _, proc = run_kv_job(kv_work, "fp8-killed", "fp8", env={"SHARDQ_FAULT": "kv-cache-before-journal:0"},
                         check=False)
    assert proc.returncode != 0
    out, proc = run_kv_job(kv_work, "fp8-killed", "fp8")
    assert "done in the journal" not in proc.stderr + proc.stdout
    for f in ("kv_cache_scales.json", "model.safetensors"):
        assert (out / f).read_bytes() == (fp8_out / f).read_bytes(), f
    _, proc = run_kv_job(kv_work, "fp8-killed", "fp8")  # now recorded: skipped
    assert "done in the journal" in proc.stderr + proc.stdout


# ---------------------------------------------------------------- eval with a quantized cache


def test_eval_with_static_scales_matches_numpy(kv_work, fp8_out, absmax, tmp_path):
    _, model_dir, ids, _ = kv_work
    model = load_model(model_dir)
    exact = reference_ppl(model, ids)
    # coarse scales make the cache matter: int8 with 8 levels each side; fp8 with |x / s| <= 1/16,
    # where the e4m3 grid is mostly subnormal (spacing 2^-9); and those fp8 scales read as int8
    # (s * 448 / 127), which rounds nearly everything to 0
    k_max, v_max = absmax
    def scales_file(name, dtype, factor):
        doc = {"format": "shardq-kv-cache-scales/1", "dtype": dtype, "strategy": "attn_head", "num_layers": 2,
               "num_kv_heads": 2, "k_scale": (np.float32(k_max) * np.float32(factor)).tolist(),
               "v_scale": (np.float32(v_max) * np.float32(factor)).tolist()}
        (tmp_path / name).write_text(json.dumps(doc))
        return str(tmp_path / name), doc
    int8_file, int8_doc = scales_file("int8.json", "int8", 1 / 8)
    fp8_file, fp8_doc = scales_file("fp8.json", "fp8", 16)
    as_int8 = {w: np.float32(fp8_doc[w]) * np.float32(448 / 127) for w in ("k_scale", "v_scale")}
    fp8_scales = json.loads((fp8_out / "kv_cache_scales.json").read_text())
    cases = [(["--kv-cache-scales", int8_file], static(int8_doc, "int8")),
             (["--kv-cache-scales", fp8_file], static(fp8_doc, "fp8")),
             (["--kv-cache-scales", fp8_file, "--kv-cache-dtype", "int8"], static(as_int8, "int8")),
             (["--kv-cache-scales", "model"], static(fp8_scales, "fp8")),
             (["--kv-cache-kivi", "4"], kivi(4)), (["--kv-cache-kivi", "2"], kivi(2))]
    for flags, transform in cases:
        want = reference_ppl(model, ids, transform)
        metrics, _ = shardq_eval(fp8_out if "model" in flags else model_dir, ids, SEQLEN, tmp_path, flags)
        assert metrics["ppl"] == pytest.approx(want, rel=1e-5), flags
        assert abs(want - exact) > 1e-4 * exact, (flags, want, exact)  # the cache matters: 10x the tolerance
    scales_json = str(fp8_out / "kv_cache_scales.json")
    metrics, _ = shardq_eval(fp8_out, ids, SEQLEN, tmp_path, ["--kv-cache-scales", scales_json])
    assert metrics["kv_cache"] == {"method": "static", "scales": scales_json, "dtype": "fp8"}
    via_model, _ = shardq_eval(fp8_out, ids, SEQLEN, tmp_path, ["--kv-cache-scales", "model"])
    assert via_model["ppl"] == metrics["ppl"]  # the tensors and the JSON file hold the same scales


def test_eval_step_with_calibrated_scales(kv_work, fp8_out):
    work, model_dir, ids, ids_file = kv_work
    job = write_job(work / "with-eval.json", model_dir, ids_file, work / "with-eval" / "out",
                    work / "with-eval" / "state",
                    [{"kv_cache": {"dtype": "int8"}},
                     {"eval": {"data": str(ids_file), "format": "token_ids", "seqlen": SEQLEN,
                               "kv_cache_scales": "model", "kv_cache_dtype": "fp8"}},
                     {"eval": {"data": str(ids_file), "format": "token_ids", "seqlen": SEQLEN, "kv_cache_kivi": 2}}])
    mpirun(2, ["run", job])
    step1 = json.loads((work / "with-eval" / "state" / "step1_metrics.json").read_text())
    step2 = json.loads((work / "with-eval" / "state" / "step2_metrics.json").read_text())
    assert step1["kv_cache"] == {"method": "static", "scales": "model", "dtype": "fp8"}
    assert step2["kv_cache"] == {"method": "kivi", "bits": 2, "group": KIVI_GROUP}
    model = load_model(model_dir)
    int8 = json.loads((work / "with-eval" / "out" / "kv_cache_scales.json").read_text())
    as_fp8 = {w: np.float32(int8[w]) * np.float32(127 / 448) for w in ("k_scale", "v_scale")}
    assert step1["ppl"] == pytest.approx(reference_ppl(model, ids, static(as_fp8, "fp8")), rel=1e-5)
    assert step2["ppl"] == pytest.approx(reference_ppl(model, ids, kivi(2)), rel=1e-5)


def test_bad_options_and_files_are_clear_errors(kv_work, tmp_path):
    _, model_dir, ids, _ = kv_work
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text(" ".join(map(str, ids)))
    base = [SHARDQ, "eval", "--model", model_dir, "--data-ids", ids_file, "--seqlen", SEQLEN]
    proc = run(base + ["--kv-cache-kivi", "3"], check=False)
    assert proc.returncode == 2 and "KIVI bits must be 2 or 4" in proc.stderr
    proc = run(base + ["--kv-cache-kivi", "4", "--kv-cache-bits", "4"], check=False)
    assert proc.returncode == 2
    proc = run(base + ["--kv-cache-scales", "model"], check=False)  # the fixture has no scales
    assert proc.returncode == 1 and "kv_cache_scheme: absent" in proc.stderr
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "shardq-kv-cache-scales/1", "dtype": "fp8", "strategy": "attn_head",
                               "num_layers": 2, "num_kv_heads": 2, "k_scale": [[1, 1], [1, -1]],
                               "v_scale": [[1, 1], [1, 1]]}))
    proc = run(base + ["--kv-cache-scales", bad], check=False)
    assert proc.returncode == 1 and "bad.json: k_scale[1][1]: must be a positive finite number" in proc.stderr
    job = write_job(tmp_path / "missing.json", model_dir, ids_file, tmp_path / "out", tmp_path / "state",
                    [{"eval": {"data": str(ids_file), "format": "token_ids",
                               "kv_cache_scales": str(tmp_path / "no.json")}}])
    proc = mpirun(1, ["run", job], check=False)
    assert proc.returncode == 1 and "steps[0].eval.kv_cache_scales" in proc.stderr
    assert not (tmp_path / "state").exists()  # refused before the journal
