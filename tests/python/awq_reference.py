"""awq_reference: AWQ (Lin et al. 2023) in NumPy float32, written from the method's
description and the rules quant/awq.h and worker/awq_layer.h state — the scale search
(s = mean|x|^alpha on a grid, normalised by sqrt(max*min), the first alpha of least
output error tr(dW H dW^T)), the per-(row, group) clipping search, the folds of one
decoder layer (norms, v rows per kv head, up rows) and RTN with the GPTQ grid. It
shares no code with shardq."""
import numpy as np

from quant_grid_reference import find_params, quantize

F32 = np.float32


def rtn(W, bits, group_size, sym):
    """(dequantized W, codes) of round-to-nearest with one min/max grid per (row, group)."""
    rows, cols = W.shape
    gs = group_size if group_size > 0 else cols
    maxq = 2**bits - 1
    deq, codes = np.empty_like(W), np.empty(W.shape, np.int64)
    for c0 in range(0, cols, gs):
        scale, zero = find_params(W[:, c0:c0 + gs], maxq, sym)
        q, dq = quantize(W[:, c0:c0 + gs], scale[:, None], zero[:, None], maxq)
        deq[:, c0:c0 + gs], codes[:, c0:c0 + gs] = dq, q
    return deq, codes


def scales_at(mean, i, n_grid):
    alpha = i / n_grid
    t = np.maximum(np.power(mean.astype(np.float64), alpha), 1e-4)
    s = (t / np.sqrt(t.max() * t.min())).astype(F32)
    return s, (F32(1) / s).astype(F32)


def output_error(dW, H):
    """Σ_rows Σ_c dW (dW H): the output error over the tokens behind H."""
    return float(np.sum(dW.astype(np.float64) * (dW @ H).astype(np.float64)))


def search_scales(W, H, mean, bits, group_size, sym, n_grid):
    """(best grid index, its scales, its loss, loss at alpha 0)."""
    best, best_s, best_loss, plain = -1, None, None, None
    for i in range(n_grid):
        s, inv = scales_at(mean, i, n_grid)
        dq, _ = rtn((W * s).astype(F32), bits, group_size, sym)
        loss = output_error(((dq * inv).astype(F32) - W).astype(F32), H)
        plain = loss if i == 0 else plain
        if best < 0 or loss < best_loss:
            best, best_s, best_loss = i, s, loss
    return best, best_s, best_loss, plain


def clip(W, H, bits, group_size, sym, n_grid):
    """W clamped per (row, group) to the limit r*max|w| of least output error, r = 1 - i/n_grid."""
    rows, cols = W.shape
    gs = group_size if group_size > 0 else cols
    groups = [(c0, min(c0 + gs, cols)) for c0 in range(0, cols, gs)]
    org_max = np.stack([np.abs(W[:, a:b]).max(axis=1) for a, b in groups], axis=1).astype(F32)
    best_err = np.full(org_max.shape, np.inf)
    best_lim = org_max.copy()
    for i in range(max(n_grid // 2, 1)):
        ratio = F32(1) - F32(i) / F32(n_grid)
        lim = (org_max * ratio).astype(F32)
        expanded = np.concatenate([np.repeat(lim[:, g:g + 1], b - a, axis=1) for g, (a, b) in enumerate(groups)], 1)
        dq, _ = rtn(np.minimum(np.maximum(W, -expanded), expanded).astype(F32), bits, group_size, sym)
        dW = (dq - W).astype(F32)
        err = np.stack([np.sum(dW[:, a:b].astype(np.float64) * (dW[:, a:b] @ H[a:b, a:b]).astype(np.float64), axis=1)
                        for a, b in groups], axis=1)
        better = err < best_err
        best_err = np.where(better, err, best_err)
        best_lim = np.where(better, lim, best_lim)
    expanded = np.concatenate([np.repeat(best_lim[:, g:g + 1], b - a, axis=1) for g, (a, b) in enumerate(groups)], 1)
    return np.minimum(np.maximum(W, -expanded), expanded).astype(F32)


def tie_to_kv_heads(mean, heads, kv_heads, head_dim):
    rep = heads // kv_heads
    m = mean.astype(np.float64).reshape(kv_heads, rep, head_dim).mean(axis=1)
    return np.repeat(m[:, None, :], rep, axis=1).reshape(-1).astype(F32)


def awq_layer(Wt, stats, cfg, bits, group_size, sym, n_grid, do_clip):
    """One layer: Wt {"q","k","v","o","gate","up","down","v_bias"?, "norm1","norm2"} float32,
    stats {"attn","o","mlp","down"} -> (H float32, mean float32) of the fp layer's inputs.
    Returns (folded tensors in Wt's keys, {group: best index})."""
    W = {k: v.copy() for k, v in Wt.items()}
    heads, kv, hd = cfg["heads"], cfg["kv_heads"], cfg["head_dim"]
    plan = [("attn", ["q", "k", "v"]), ("o", ["o"]), ("mlp", ["gate", "up"]), ("down", ["down"])]
    scales, best = {}, {}
    for group, names in plan:
        H, mean = stats[group]
        if group == "o":
            mean = tie_to_kv_heads(mean, heads, kv, hd)
        stacked = np.concatenate([W[n] for n in names], axis=0)
        best[group], scales[group], _, _ = search_scales(stacked, H, mean, bits, group_size, sym, n_grid)
    inv = {g: (F32(1) / s).astype(F32) for g, s in scales.items()}
    for group, names in plan:
        for n in names:
            W[n] = (W[n] * scales[group]).astype(F32)
    rep = heads // kv
    inv_kv = (F32(1) / scales["o"].reshape(kv, rep, hd)[:, 0, :].reshape(-1)).astype(F32)
    W["norm1"] = (W["norm1"] * inv["attn"]).astype(F32)
    W["v"] = (W["v"] * inv_kv[:, None]).astype(F32)
    if "v_bias" in W:
        W["v_bias"] = (W["v_bias"] * inv_kv).astype(F32)
    W["norm2"] = (W["norm2"] * inv["mlp"]).astype(F32)
    W["up"] = (W["up"] * inv["down"][:, None]).astype(F32)
    if do_clip:
        for group, names in plan:
            H = (stats[group][0] * inv[group][:, None] * inv[group][None, :]).astype(F32)
            for n in names:
                if n not in ("q", "k"):
                    W[n] = clip(W[n], H, bits, group_size, sym, n_grid)
    return W, best
