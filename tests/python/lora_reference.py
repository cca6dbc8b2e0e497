"""lora_reference: the independent references for the LoRA tests — a Hugging
Face transformers LlamaForCausalLM wrapped by peft (what users train with),
built from a model directory or from given tensors, and loss/gradients by
PyTorch autograd."""
import torch
import transformers
from peft import LoraConfig, get_peft_model

TARGETS_ATTN = {"q_proj", "k_proj", "v_proj", "o_proj"}


def load_llama(model_dir, state_dict=None):
    """fp32 LlamaForCausalLM from model_dir (eager attention); state_dict replaces its weights if given."""
    model = transformers.AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32,
                                                              attn_implementation="eager")
    if state_dict is not None:
        missing, unexpected = model.load_state_dict(state_dict, strict=False)
        assert not unexpected, unexpected
    return model.eval()


def module_path(layer, name):
    part = "self_attn" if name in TARGETS_ATTN else "mlp"
    return f"base_model.model.model.layers.{layer}.{part}.{name}"


def peft_model(model, r, alpha, targets, dropout=0.0):
    config = LoraConfig(r=r, lora_alpha=alpha, target_modules=sorted(targets), lora_dropout=dropout, bias="none",
                        task_type="CAUSAL_LM")
    return get_peft_model(model, config)


def set_lora(peft, tensors):
    """tensors: 'L.NAME.A' / 'L.NAME.B' numpy arrays -> the peft model's lora_A / lora_B weights."""
    params = dict(peft.named_parameters())
    with torch.no_grad():
        for key, value in tensors.items():
            parts = key.split(".")
            if len(parts) != 3 or parts[2] not in ("A", "B"):
                continue
            layer, name, which = parts
            params[f"{module_path(int(layer), name)}.lora_{which}.default.weight"].copy_(torch.from_numpy(value))


def lora_grads(peft):
    """'L.NAME.dA' / 'dB' -> numpy gradients after backward()."""
    out = {}
    for pname, p in peft.named_parameters():
        if "lora_" not in pname:
            continue
        parts = pname.split(".")
        layer = int(parts[parts.index("layers") + 1])
        name = parts[parts.index("layers") + 3]
        which = "dA" if "lora_A" in pname else "dB"
        out[f"{layer}.{name}.{which}"] = p.grad.detach().numpy()
    return out
