"""check_qlora_e2e.py: the QLoRA checks on the GPU machine (run by tests/gpu/run_qlora_e2e.sh).

Given the runs of one 20-step qlora job (tiny fixture, NF4 base, dropout 0.1):
  - GPU vs CPU: the training loss of every step agrees to 1e-2 relative and the
    final adapters to 5e-2 relative Frobenius norm. The GPU's forward products
    take fp16 inputs and its backward products bf16 inputs (fp32 sums), the CPU
    is fp32 throughout, so the curves are close but not equal; the dropout masks
    are the same (a counter-based hash of seed and index on both backends);
  - the GPU job killed right after the checkpoint of step 10 and rerun ends
    with the uninterrupted GPU run's adapter, byte for byte;
  - on two GPUs (where the machine has them) the adapter is byte-identical to one GPU's;
  - peft.PeftModel.from_pretrained loads the GPU adapter onto a transformers Llama whose
    linears are the NF4-dequantized base (tests/python/nf4_reference.py, NumPy), and on
    the GPU its per-token NLL equals `shardq eval --adapter` on the GPU to 2e-3 of the
    largest NLL (fp16 products in shardq's forward).
Prints TAP lines; exits non-zero on any failure."""
import json
import re
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))
from shardq_testlib import read_safetensors  # noqa: E402

results = []


def check(ok, what):
    results.append(bool(ok))
    print(f"{'ok' if ok else 'not ok'} {len(results)} - {what}", flush=True)


def losses(log):
    return {int(m[0]): float(m[1]) for m in re.findall(r"train step (\d+)/\d+ loss ([\d.]+)", Path(log).read_text())}


def adapter(work, name):
    return read_safetensors(Path(work) / name / "out" / "adapter_model.safetensors")


def relative(a, b):
    num = sum(float(((a[k].astype(np.float64) - b[k]) ** 2).sum()) for k in a)
    den = sum(float((b[k].astype(np.float64) ** 2).sum()) for k in b)
    return (num / den) ** 0.5


def peft_nll(work, seqlen):
    import torch
    from peft import PeftModel

    import lora_reference as ref
    from nf4_reference import dequantized
    from shardq_testlib import read_checkpoint
    device = "cuda" if torch.cuda.is_available() else "cpu"  # cpu: a smoke run of this script
    model = Path(work) / "model"
    state = {name: torch.from_numpy(dequantized(t) if name.endswith("proj.weight") else t.astype(np.float32))
             for name, t in read_checkpoint(model).items()}
    peft = PeftModel.from_pretrained(ref.load_llama(model, state), str(Path(work) / "gpu" / "out")).to(device).eval()
    ids = [int(t) for t in (Path(work) / "eval.ids").read_text().split()]
    windows = torch.tensor(ids[:4 * seqlen], dtype=torch.int64).reshape(4, seqlen).to(device)
    with torch.no_grad():
        logits = peft(input_ids=windows).logits.float()
    return torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]),
                                             windows[:, 1:].reshape(-1), reduction="none").cpu().numpy()


def main():
    c = json.loads(Path(sys.argv[1]).read_text())
    work, steps = c["work"], c["steps"]
    gpu, cpu = losses(f"{work}/gpu.log"), losses(f"{work}/cpu.log")
    check(sorted(gpu) == list(range(1, steps + 1)) and sorted(cpu) == sorted(gpu),
          f"both backends logged the loss of steps 1..{steps}")
    worst = max(abs(gpu[t] - cpu[t]) / cpu[t] for t in cpu)
    check(worst <= 1e-2, f"GPU vs CPU loss per step: worst relative difference {worst:.2e} (<= 1e-2)")
    print(f"# losses step 1: gpu {gpu[1]:.4f} cpu {cpu[1]:.4f}; step {steps}: gpu {gpu[steps]:.4f} "
          f"cpu {cpu[steps]:.4f}")
    check(gpu[steps] < 0.8 * gpu[1], f"the GPU run learns: loss {gpu[1]:.4f} -> {gpu[steps]:.4f}")
    a_gpu, a_cpu = adapter(work, "gpu"), adapter(work, "cpu")
    rel = relative(a_gpu, a_cpu)
    check(rel <= 5e-2, f"GPU vs CPU adapter: relative Frobenius difference {rel:.2e} (<= 5e-2)")
    resumed = Path(f"{work}/gpu-killed.log").read_text()
    check(max(losses(f"{work}/gpu-killed-first.log")) == 10 and "resuming after train step 10" in resumed,
          "the killed GPU job stopped after step 10 and the rerun resumed there")
    same = (Path(work) / "gpu-killed/out/adapter_model.safetensors").read_bytes() == \
        (Path(work) / "gpu/out/adapter_model.safetensors").read_bytes()
    check(same, "killed and resumed on the GPU: the adapter is byte-identical to the uninterrupted run")
    if c["two_gpus"]:
        same = (Path(work) / "gpu2/out/adapter_model.safetensors").read_bytes() == \
            (Path(work) / "gpu/out/adapter_model.safetensors").read_bytes()
        check(same, "two GPUs: the adapter is byte-identical to one GPU's")
    else:
        print("# skip: one GPU on this machine, the 1 vs 2 GPU comparison needs two")
    got = np.loadtxt(f"{work}/gpu-nll.txt")
    want = peft_nll(work, c["seqlen"])
    err = float(np.abs(got - want).max() / np.abs(want).max()) if got.shape == want.shape else float("inf")
    check(err <= 2e-3, f"peft on the GPU loads the adapter; per-token NLL vs shardq eval --adapter: {err:.2e} "
          f"of the largest (<= 2e-3), {want.size} tokens")
    print(f"1..{len(results)}")
    sys.exit(0 if all(results) else 1)


if __name__ == "__main__":
    main()
