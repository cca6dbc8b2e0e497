"""llmcompressor_gptq.py: llm-compressor's GPTQ on the model directory and ids file
that bench/bench_gptq_7b.sh gives shardq, timed phase by phase, for the side-by-side
ratio in bench/RESULTS.md.

    python3 bench/peers/llmcompressor_gptq.py MODEL_DIR IDS_FILE NSAMPLES SEQLEN OUT_JSON

What runs: `oneshot` with GPTQModifier(scheme W4A16: 4-bit symmetric, group 128;
actorder None; block 128; damp 0.01), the sequential pipeline, activations kept on the
GPU (sequential_offload_device "cuda"), the model in bf16 on the GPU, and a DataLoader
over NSAMPLES consecutive windows of SEQLEN ids of IDS_FILE (shardq draws its windows at
random positions of the same file; the work per window is the same). Nothing is saved.

Phases: Hessians = time inside GPTQModifier.calibrate_module (each accumulation's
hook), solve = time inside GPTQModifier.compress_modules, both with the GPU
synchronized at entry and exit; forward = the rest of the calibration. Imports and
the model load are timed apart. The JSON written holds the seconds of each phase.
"""
import json
import sys
import time

started = time.perf_counter()
import torch  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402
from transformers import AutoModelForCausalLM  # noqa: E402
from llmcompressor import oneshot  # noqa: E402
from llmcompressor.modifiers.gptq import GPTQModifier  # noqa: E402

imported = time.perf_counter()


def timed(cls, name, seconds):
    """Wrap cls.name so that its calls add their synchronized wall time to seconds[name]."""
    inner = getattr(cls, name)

    def wrapper(*args, **kwargs):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            torch.cuda.synchronize()
            seconds[name] += time.perf_counter() - t0

    setattr(cls, name, wrapper)


def windows(path, nsamples, seqlen):
    ids = [int(t) for t in open(path).read().split()]
    if len(ids) < nsamples * seqlen:
        sys.exit(f"{path}: {len(ids)} ids, fewer than {nsamples} x {seqlen}")
    return torch.tensor(ids[: nsamples * seqlen], dtype=torch.long).view(nsamples, seqlen)


def main():
    model_dir, ids_path, nsamples, seqlen, out_path = sys.argv[1:6]
    nsamples, seqlen = int(nsamples), int(seqlen)
    samples = windows(ids_path, nsamples, seqlen)
    loader = DataLoader([{"input_ids": s, "attention_mask": torch.ones_like(s)} for s in samples], batch_size=1)

    t0 = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16, device_map="cuda")
    torch.cuda.synchronize()
    loaded = time.perf_counter()

    seconds = {"calibrate_module": 0.0, "compress_modules": 0.0}
    timed(GPTQModifier, "calibrate_module", seconds)
    timed(GPTQModifier, "compress_modules", seconds)
    recipe = GPTQModifier(targets="Linear", scheme="W4A16", ignore=["lm_head"], actorder=None, block_size=128,
                          dampening_frac=0.01)
    t1 = time.perf_counter()
    oneshot(model=model, dataset=loader, recipe=recipe, pipeline="sequential", num_calibration_samples=nsamples,
            max_seq_length=seqlen, sequential_offload_device="cuda")
    torch.cuda.synchronize()
    done = time.perf_counter()

    calibration = done - t1
    phases = {
        "imports": imported - started,
        "load": loaded - t0,
        "forward": calibration - seconds["calibrate_module"] - seconds["compress_modules"],
        "hessian": seconds["calibrate_module"],
        "solve": seconds["compress_modules"],
        "calibration": calibration,
        "total": done - started,
    }
    json.dump(phases, open(out_path, "w"), indent=1)
    print("llm-compressor phases: " + ", ".join(f"{k} {v:.2f}s" for k, v in phases.items()), flush=True)


if __name__ == "__main__":
    main()
