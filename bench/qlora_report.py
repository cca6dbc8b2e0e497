"""qlora_report.py: the table bench/bench_qlora_7b.sh prints from what its runs left in
WORK_DIR: shardq's logs (the cumulative tokens/s its qlora step logs after every step),
the peer's JSON (bench/peers/peft_bnb_qlora.py), runs.txt (each shardq run's wall-clock
window and exit status; its phases line says where the time went), gpu_mem.txt (nvidia-smi samples: epoch seconds, MiB) and
phases.txt (wall seconds per phase).

    python3 bench/qlora_report.py WORK_DIR WARMUP STEPS SEQLEN "BATCHES" TOTAL_S

tokens/s counts the steps after the warm-up only; peak GiB is the largest sample taken
while a run's steps ran (a shardq run: the whole job; the peer: its batch's steps).
"""
import json
import os
import re
import sys


def read_samples(work):
    """nvidia-smi samples (epoch seconds, MiB); lines that are not two numbers are skipped."""
    samples = []
    for line in open(f"{work}/gpu_mem.txt"):
        parts = line.split()
        if len(parts) == 2 and parts[1].replace(".", "", 1).isdigit():
            samples.append((float(parts[0]), float(parts[1])))
    return samples


def peak_gib(samples, t0, t1):
    used = [mib for t, mib in samples if t0 <= t <= t1]
    return max(used) / 1024 if used else None


def training_rate(log, step_tokens, warmup):
    """(tokens/s over the steps after the warm-up or None, steps done, seconds of training) from a
    qlora log's step lines, which carry the cumulative tokens/s: after step t, training had run
    t * step_tokens / rate_t seconds."""
    elapsed = {int(t): int(t) * step_tokens / float(r)
               for t, r in re.findall(r"train step (\d+)/\d+ loss \S+ lr \S+ grad_norm \S+ tokens/s ([\d.]+)", log)
               if float(r) > 0}
    done = max(elapsed, default=0)
    rate = None
    if done > warmup >= 1:
        rate = (done - warmup) * step_tokens / (elapsed[done] - elapsed[warmup])
    elif warmup == 0 and done:
        rate = done * step_tokens / elapsed[done]
    return rate, done, elapsed.get(done, 0.0)


def shardq_run(work, name, batch, warmup, seq, samples):
    """A shardq run's tokens/s over the steps after the warm-up (training_rate), peak memory
    and the seconds outside training."""
    runs = {line.split()[0]: line.split()[1:] for line in open(f"{work}/runs.txt")}
    if name not in runs:
        return None
    t0, t1, rc = float(runs[name][0]), float(runs[name][1]), int(runs[name][2])
    rate, done, trained = training_rate(open(f"{work}/{name}.log").read(), batch * seq, warmup)
    return {"tokens_per_s": rate, "peak_gib": peak_gib(samples, t0, t1), "steps": done, "rc": rc,
            "other_s": (t1 - t0) - trained}


def fmt(v, spec):
    """v formatted as spec, or n/a in the same width."""
    width = re.match(r"\d*", spec).group(0)
    return format(v, spec) if v is not None else "n/a".rjust(int(width or 0))


def main():
    work, warmup, steps, seq = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    batches, total = [int(b) for b in sys.argv[5].split()], float(sys.argv[6])
    samples = read_samples(work)
    peer = json.load(open(f"{work}/peer.json")) if os.path.exists(f"{work}/peer.json") else None
    print(f"\nQLoRA r=16, all 7 linears, seqlen {seq}, recompute; {warmup} warm-up + {steps} timed steps; "
          f"total {total:.1f} s")
    if peer:
        print(f"peer: {peer['versions']}, {peer['nf4_linears']} NF4 linears, "
              f"gradient checkpointing {peer['gradient_checkpointing']}, "
              f"imports {peer['imports_s']:.1f} s, load {peer['load_s']:.1f} s")
    print(f"{'run':22} {'batch':>5} {'tokens/s':>9} {'peak GiB':>9} {'torch alloc GiB':>16}  note")
    rows = {}
    for b in batches:
        if peer:
            p = peer["batches"].get(str(b))
            if p and "error" not in p:
                rows[("peer", b)] = {"tokens_per_s": p["tokens_per_s"], "peak_gib": peak_gib(samples, *p["window"])}
                print(f"{'peft+bnb nf4':22} {b:5} {p['tokens_per_s']:9.0f} "
                      f"{fmt(rows[('peer', b)]['peak_gib'], '9.1f')} {fmt(p['max_allocated_gib'], '16.1f')}")
            else:
                print(f"{'peft+bnb nf4':22} {b:5} {'n/a':>9} {'n/a':>9} {'':16}  {p['error'] if p else 'did not run'}")
        for base in ("nf4", "gptq"):
            r = shardq_run(work, f"shardq-{base}-b{b}", b, warmup, seq, samples)
            if r is None:
                continue
            rows[(base, b)] = r
            note = f"{r['steps']} steps, exit {r['rc']}; open + save {r['other_s']:.1f} s"
            print(f"{'shardq ' + base:22} {b:5} {fmt(r['tokens_per_s'], '9.0f')} {fmt(r['peak_gib'], '9.1f')} "
                  f"{'':16}  {note}")
    print("\nwhere shardq's time went (all steps, warm-up included; the qlora step's phases line):")
    for b in batches:
        for base in ("nf4", "gptq"):
            path = f"{work}/shardq-{base}-b{b}.log"
            phases = re.search(r"qlora: phases (.*)", open(path).read()) if os.path.exists(path) else None
            if phases:
                print(f"  {base:5} batch {b}: {phases.group(1)}")
    print("\nratio shardq / peft+bnb (tokens/s: higher is better; peak memory: lower is better):")
    for (base, b), r in sorted(rows.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        p = rows.get(("peer", b))
        if base == "peer" or not p:
            continue
        speed = r["tokens_per_s"] / p["tokens_per_s"] if r["tokens_per_s"] else None
        memory = r["peak_gib"] / p["peak_gib"] if r["peak_gib"] and p["peak_gib"] else None
        print(f"  {base:5} batch {b}: tokens/s {fmt(speed, '.2f')}x, peak memory {fmt(memory, '.2f')}x")
    print("\nphases (wall seconds):")
    for line in open(f"{work}/phases.txt"):
        name, secs = line.rstrip("\n").rsplit(" ", 1)
        print(f"  {name:48} {float(secs):8.1f}")


if __name__ == "__main__":
    main()
