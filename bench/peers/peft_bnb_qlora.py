"""peft_bnb_qlora.py: the QLoRA recipe users run today — transformers + bitsandbytes
(NF4, double quantization, bf16 compute dtype) + peft LoRA — timed on the model
directory and ids file bench/bench_qlora_7b.sh gives shardq, for the side-by-side
tokens/s and peak-memory ratio.

    python3 bench/peers/peft_bnb_qlora.py MODEL_DIR IDS_FILE OUT_JSON [--batches 1,4]
        [--seqlen 2048] [--warmup 2] [--steps 6] [--r 16] [--alpha 32] [--lr 2e-4]

What runs (nothing is downloaded: the model directory is local): the model loaded with
BitsAndBytesConfig(load_in_4bit, nf4, double quant, bf16 compute), sdpa attention,
peft's prepare_model_for_kbit_training with gradient checkpointing (non-reentrant),
LoraConfig(r, alpha, dropout 0, all seven linears of every layer), torch.optim.AdamW
on the adapters. For each batch size in turn (smallest first, the allocator's cache
emptied between them): `warmup` steps, then `steps` timed steps, each a forward of
`batch` windows of `seqlen` consecutive ids (labels = inputs, the mean next-token loss,
as shardq's qlora step with grad_accum 1), a backward and an optimizer step, timed with
the GPU synchronized. The JSON holds per batch: tokens/s over the timed steps, the step
times, the losses, torch.cuda.max_memory_allocated / max_memory_reserved (GiB) and the
wall-clock (epoch) window of the batch's steps, so that the caller can take the peak of
its own nvidia-smi samples over that window, as it does for shardq. A batch that runs out
of memory is recorded as such and the next one still runs.
"""
import argparse
import json
import sys
import time

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
GIB = 1024 ** 3


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model_dir")
    p.add_argument("ids_file", help="whitespace-separated token ids (bench_qlora_7b.sh's train.ids)")
    p.add_argument("out_json")
    p.add_argument("--batches", default="1,4", help="comma-separated batch sizes, run in increasing order")
    p.add_argument("--seqlen", type=int, default=2048)
    p.add_argument("--warmup", type=int, default=2, help="steps run before timing")
    p.add_argument("--steps", type=int, default=6, help="timed steps")
    p.add_argument("--r", type=int, default=16)
    p.add_argument("--alpha", type=float, default=32)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"],
                   help="cpu: a smoke run of this script on a machine without a GPU (no memory figures)")
    args = p.parse_args(argv)
    try:
        args.batches = sorted(int(b) for b in args.batches.split(","))
    except ValueError:
        p.error(f"--batches: {args.batches!r} is not a comma-separated list of integers")
    if not args.batches or min(args.batches) < 1 or args.seqlen < 2 or args.warmup < 0 or args.steps < 1:
        p.error("batches must be positive, seqlen at least 2, warmup non-negative and steps positive")
    return args


def load_windows(path, seqlen, count, torch):
    ids = [int(t) for t in open(path).read().split()]
    if len(ids) < count * seqlen:
        sys.exit(f"{path}: {len(ids)} ids, fewer than {count} windows of {seqlen}")
    return torch.tensor(ids[: count * seqlen], dtype=torch.long).view(count, seqlen)


def build_model(args, torch):
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig
    quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                               bnb_4bit_compute_dtype=torch.bfloat16)
    device_map = {"": 0 if args.device == "cuda" else "cpu"}
    model = AutoModelForCausalLM.from_pretrained(args.model_dir, quantization_config=quant, dtype=torch.bfloat16,
                                                 device_map=device_map, attn_implementation="sdpa")
    model.config.use_cache = False
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=True,
                                            gradient_checkpointing_kwargs={"use_reentrant": False})
    lora = LoraConfig(r=args.r, lora_alpha=args.alpha, lora_dropout=0.0, target_modules=TARGETS, bias="none",
                      task_type="CAUSAL_LM")
    model = get_peft_model(model, lora)
    model.train()
    return model


def run_batch(model, windows, batch, args, torch):
    """warmup + steps optimizer steps of `batch` windows; the timed steps' figures."""
    cuda = args.device == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.lr)
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    step_s, losses = [], []
    started = time.time()
    for step in range(args.warmup + args.steps):
        first = (step * batch) % (windows.shape[0] - batch + 1)
        x = windows[first:first + batch].to(args.device)
        sync()
        t0 = time.perf_counter()
        loss = model(input_ids=x, labels=x).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync()
        step_s.append(time.perf_counter() - t0)
        losses.append(loss.item())
        print(f"peft+bnb batch {batch} step {step + 1}/{args.warmup + args.steps}: loss {losses[-1]:.4f} "
              f"{step_s[-1]:.3f} s", flush=True)
    timed = step_s[args.warmup:]
    del optimizer
    return {"tokens_per_s": args.steps * batch * args.seqlen / sum(timed), "step_s": step_s, "loss": losses,
            "max_allocated_gib": torch.cuda.max_memory_allocated() / GIB if cuda else None,
            "max_reserved_gib": torch.cuda.max_memory_reserved() / GIB if cuda else None,
            "window": [started, time.time()]}


def main():
    args = parse_args(sys.argv[1:])
    t0 = time.perf_counter()
    import torch
    import bitsandbytes
    import peft
    import transformers
    imported = time.perf_counter()
    windows = load_windows(args.ids_file, args.seqlen, max(args.batches) * 2, torch)
    model = build_model(args, torch)
    if args.device == "cuda":
        torch.cuda.synchronize()
    loaded = time.perf_counter()
    result = {"versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                           "peft": peft.__version__, "bitsandbytes": bitsandbytes.__version__},
              "gradient_checkpointing": bool(getattr(model, "is_gradient_checkpointing", False)),
              "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
              "nf4_linears": sum(isinstance(m, bitsandbytes.nn.Linear4bit) for m in model.modules()),
              "imports_s": imported - t0, "load_s": loaded - imported, "batches": {}}
    print(f"peft+bnb: imports {result['imports_s']:.1f} s, load + NF4 quantization {result['load_s']:.1f} s, "
          f"{result['nf4_linears']} NF4 linears, {result['trainable_params']} trainable parameters, "
          f"gradient checkpointing {result['gradient_checkpointing']}", flush=True)
    for batch in args.batches:
        try:
            result["batches"][str(batch)] = run_batch(model, windows, batch, args, torch)
        except torch.cuda.OutOfMemoryError as e:
            result["batches"][str(batch)] = {"error": f"out of memory: {str(e).splitlines()[0]}"}
        json.dump(result, open(args.out_json, "w"), indent=1)  # what ran so far survives a later failure
    result["total_s"] = time.perf_counter() - t0
    json.dump(result, open(args.out_json, "w"), indent=1)


if __name__ == "__main__":
    main()
