"""The adapter optimizer (lora/optimizer.c through lora_tool adamw) against
PyTorch: torch.optim.AdamW (betas 0.9/0.999, eps 1e-8, decoupled weight decay)
on the same initial values and gradients, torch.nn.utils.clip_grad_norm_ for
max_grad_norm, and transformers' constant/cosine schedules with warmup for the
learning rate. Parameters must agree to 1e-6 (fp32 elementwise arithmetic)."""
import json
import struct

import numpy as np
import pytest
import torch
from transformers import get_constant_schedule_with_warmup, get_cosine_schedule_with_warmup

from shardq_testlib import ROOT, read_safetensors, run

LORA_TOOL = ROOT / "build" / "tools" / "lora_tool"


def write_tensors(path, tensors):
    header, blobs, offset = {}, [], 0
    for name, array in tensors.items():
        data = np.ascontiguousarray(array, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(array.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def torch_run(p0, grads, lr, wd, max_norm, warmup, total, cosine):
    p = torch.nn.Parameter(torch.from_numpy(p0.copy()))
    opt = torch.optim.AdamW([p], lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=wd)
    sched = (get_cosine_schedule_with_warmup(opt, warmup, total) if cosine
             else get_constant_schedule_with_warmup(opt, warmup))
    lrs = []
    for g in grads:
        p.grad = torch.from_numpy(g.copy())
        if max_norm > 0:
            torch.nn.utils.clip_grad_norm_([p], max_norm)
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return p.detach().numpy(), np.array(lrs)


@pytest.mark.parametrize("lr,wd,max_norm,warmup,total,cosine", [
    (1e-2, 0.0, 0.0, 0, 1, False),   # one plain AdamW step
    (3e-3, 0.1, 0.5, 2, 6, True),    # warmup, cosine decay, clipping, weight decay
    (1e-2, 0.01, 100.0, 1, 4, False),  # clipping threshold never reached
])
def test_optimizer_matches_torch(tmp_path, lr, wd, max_norm, warmup, total, cosine):
    rng = np.random.default_rng(2)
    p0 = rng.standard_normal(200).astype(np.float32)
    grads = (rng.standard_normal((total, 200)) * 0.3).astype(np.float32)
    write_tensors(tmp_path / "in.safetensors", {"p": p0, "g": grads})
    run([LORA_TOOL, "adamw", tmp_path / "in.safetensors", tmp_path / "out.safetensors", lr, wd, max_norm, warmup,
         total, "cosine" if cosine else "constant"])
    got = read_safetensors(tmp_path / "out.safetensors")
    want_p, want_lr = torch_run(p0, grads, lr, wd, max_norm, warmup, total, cosine)
    assert np.allclose(got["lr"], want_lr, rtol=1e-6, atol=1e-12)
    assert np.abs(got["p"] - want_p).max() <= 1e-6
    assert np.abs(got["p"] - p0).max() > 10 * lr * 0.1  # the step moved the parameters
