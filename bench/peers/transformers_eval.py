"""transformers_eval.py: perplexity of a model with transformers (bf16 weights, sdpa
attention, on the GPU) over the non-overlapping windows `shardq eval --data-ids`
reads, timed, for the eval throughput comparison in bench/RESULTS.md.

    python3 bench/peers/transformers_eval.py MODEL_DIR IDS_FILE SEQLEN MAX_WINDOWS OUT_JSON

Prints and writes the windows, tokens, perplexity, the model load time and the
forward time (tokens/s over the forward alone and over load + forward).
"""
import json
import math
import sys
import time

import torch
from transformers import AutoModelForCausalLM


def main():
    model_dir, ids_path, seqlen, max_windows, out_path = sys.argv[1:6]
    seqlen, max_windows = int(seqlen), int(max_windows)
    ids = torch.tensor([int(t) for t in open(ids_path).read().split()], dtype=torch.long)
    windows = ids.numel() // seqlen
    if max_windows > 0:
        windows = min(windows, max_windows)
    t0 = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16, device_map="cuda",
                                                 attn_implementation="sdpa")
    model.eval()
    torch.cuda.synchronize()
    loaded = time.perf_counter()
    nll, tokens = 0.0, 0
    with torch.no_grad():
        for w in range(windows):
            x = ids[w * seqlen:(w + 1) * seqlen].view(1, -1).cuda()
            logits = model(x).logits.float()
            loss = torch.nn.functional.cross_entropy(logits[0, :-1], x[0, 1:], reduction="sum")
            nll += loss.item()
            tokens += seqlen - 1
    torch.cuda.synchronize()
    done = time.perf_counter()
    result = {"windows": windows, "tokens": tokens, "ppl": math.exp(nll / tokens), "load_s": loaded - t0,
              "forward_s": done - loaded, "tokens_per_s_forward": tokens / (done - loaded),
              "tokens_per_s_total": tokens / (done - t0)}
    json.dump(result, open(out_path, "w"), indent=1)
    print("transformers eval: " + ", ".join(f"{k} {v:.6g}" for k, v in result.items()), flush=True)


if __name__ == "__main__":
    main()
