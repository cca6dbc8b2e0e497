"""LoRA gradients of shardq's CPU training step (lora/trainer.c, through
build/tools/lora_tool) against PyTorch autograd on Hugging Face transformers'
LlamaForCausalLM wrapped by peft, with the same base weights, the same adapter
values and the same tokens: loss equal to 1e-5 relative, every dA and dB to
1e-4 relative (of the tensor's norm) in fp32.

Cases cover grouped-query attention, tied and untied embeddings, a vocabulary
split into several chunks of the LM head, activation recomputation on and off,
and every target module."""
import numpy as np
import pytest
import torch

import lora_reference as ref
from shardq_testlib import ROOT, make_model, read_safetensors, run

LORA_TOOL = ROOT / "build" / "tools" / "lora_tool"
ALL = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"


def shardq_grads(model_dir, out, targets, r, alpha, batch, seq, *extra):
    run([LORA_TOOL, "grad", model_dir, out, "--targets", targets, "--r", r, "--alpha", alpha, "--batch", batch,
         "--seq", seq, "--seed", 7] + list(extra))
    return read_safetensors(out)


def torch_grads(model_dir, got, targets, r, alpha):
    peft = ref.peft_model(ref.load_llama(model_dir), r, alpha, targets.split(","))
    ref.set_lora(peft, got)
    ids = torch.from_numpy(got["ids"].astype(np.int64))
    out = peft(input_ids=ids, labels=ids)  # mean next-token cross-entropy, as the tool's weights give
    out.loss.backward()
    return out.loss.item(), ref.lora_grads(peft)


@pytest.mark.parametrize("case", [
    dict(args=["--layers", "2", "--hidden", "64", "--intermediate", "96", "--heads", "4", "--kv-heads", "2",
               "--vocab", "300"], targets=ALL, r=4, alpha=8, extra=["--vocab-chunk", "70"]),
    dict(args=["--layers", "2", "--hidden", "32", "--intermediate", "64", "--heads", "4", "--kv-heads", "4",
               "--vocab", "280", "--tie"], targets="q_proj,v_proj", r=8, alpha=16, extra=["--no-recompute"]),
    dict(args=["--layers", "3", "--hidden", "48", "--intermediate", "80", "--heads", "6", "--kv-heads", "2",
               "--vocab", "270", "--arch", "qwen2"], targets="k_proj,o_proj,down_proj,up_proj", r=2, alpha=5,
         extra=[]),
])
def test_lora_gradients_match_torch_autograd(tmp_path, case):
    model_dir = make_model(tmp_path / "m", *case["args"], "--dtype", "f32")
    got = shardq_grads(model_dir, tmp_path / "g.safetensors", case["targets"], case["r"], case["alpha"], 2, 9,
                       *case["extra"])
    loss, want = torch_grads(model_dir, got, case["targets"], case["r"], case["alpha"])
    assert abs(got["loss"][0] - loss) <= 1e-5 * abs(loss)
    assert set(want) == {k for k in got if k.split(".")[-1] in ("dA", "dB")}
    for key, w in want.items():
        g = got[key]
        assert g.shape == w.shape, key
        assert np.linalg.norm(w) > 0, key  # every path carries signal
        err = np.linalg.norm(g - w) / np.linalg.norm(w)
        assert err <= 1e-4, f"{key}: relative error {err:.2e}"
