"""smoothquant_reference.py: an independent NumPy (float64) SmoothQuant W8A8 for the
tests, written from the paper (Xiao et al. 2023) and its reference smooth.py; it shares
no code with shardq. Layer by layer, as shardq's sequential mode runs it: the ranges
max|x_j| of the two norms' outputs over every calibration window, through the layer as
the previous (quantized) layers leave its input; the smoothing
s_j = max(a_j^alpha / max(w_j, 1e-5)^(1 - alpha), 1e-5) folded into input_layernorm
(q, k, v) and post_attention_layernorm (gate, up); every linear rounded per output
channel on the symmetric GPTQ grid (scale = 2 max|w| / (2^bits - 1), zero 2^(bits-1)),
dequantized with its scale rounded to fp16; then the windows pushed through the
quantized layer to the next."""
import numpy as np

from llama_reference import decoder_layer

LINEARS = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj",
           "mlp.up_proj", "mlp.down_proj"]
READERS = {"input_layernorm": ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"],
           "post_attention_layernorm": ["mlp.gate_proj", "mlp.up_proj"]}


def rtn_per_channel(W, bits):
    """(codes, scales, unrounded codes) of W [out, in] on one symmetric grid per output row."""
    maxq = 2**bits - 1
    xmax = np.abs(W).max(axis=1)
    scale = 2 * np.where(xmax == 0, 1.0, xmax) / maxq
    exact = W / scale[:, None] + (maxq + 1) // 2
    return np.clip(np.round(exact), 0, maxq), scale, exact


def smoothquant(model, windows, alpha, bits=8):
    """The quantized model (config, tensors with dequantized linears and rescaled norms) and, per
    tensor name, what the test compares: "<norm>.s" (the smoothing), "<linear>.codes", "<linear>.scale"
    and "<linear>.exact" (w / scale + zero before rounding)."""
    cfg, source = model
    W = dict(source)
    record = {}
    xs = [W["model.embed_tokens.weight"][np.asarray(w)] for w in windows]
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        ranges = {}

        def see(name, inp):
            ranges[name] = np.maximum(ranges.get(name, 0.0), np.abs(inp).max(axis=0))

        for x in xs:
            decoder_layer((cfg, W), l, x, on_linear_input=see)
        for norm, readers in READERS.items():
            a = ranges[p + readers[0]]
            w = np.max([np.abs(W[p + r + ".weight"]).max(axis=0) for r in readers], axis=0)
            s = np.maximum(a**alpha / np.maximum(w, 1e-5) ** (1 - alpha), 1e-5)
            W[p + norm + ".weight"] = W[p + norm + ".weight"] / s
            for r in readers:
                W[p + r + ".weight"] = W[p + r + ".weight"] * s
            record[p + norm + ".s"] = s
        for lin in LINEARS:
            codes, scale, exact = rtn_per_channel(W[p + lin + ".weight"], bits)
            scale16 = scale.astype(np.float16).astype(np.float64)
            W[p + lin + ".weight"] = scale16[:, None] * (codes - 2 ** (bits - 1))
            record[p + lin + ".codes"], record[p + lin + ".scale"] = codes, scale16
            record[p + lin + ".exact"] = exact
        xs = [decoder_layer((cfg, W), l, x) for x in xs]
    return (cfg, W), record
