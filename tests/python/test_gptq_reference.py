"""GPTQ against an independent NumPy implementation.

The reference below is written from the GPTQ paper (Frantar et al. 2022,
Algorithm 1: Cholesky of H^-1, lazy blocked updates) with the choices AutoGPTQ
makes: dead inputs, damping by a fraction of mean(diag H), act-order by
descending diag(H), per-group min/max grids taken when a group starts (from W
as it was at the start of the block), static groups, and AutoGPTQ's g_idx; a
group size that does not divide the inputs leaves a shorter last group (the
slices simply run short), checked with and without act-order and static groups. Our
solve runs through build/tools/gptq_solve on the same W and H; the integer
codes must agree except for rare rounding ties whose effect then propagates
(the fraction is printed), and GPTQ's output error tr((W-Q) H (W-Q)^T) must
beat round-to-nearest's on every configuration.

Mask-preserving GPTQ (--preserve-sparsity 1, what a gptq step after a pruning
step runs) against the same reference with a mask: W pruned 2:4 or 50%
unstructured, every masked entry quantized as 0 (its code the zero point) and
its error fed back like any other, as SparseGPT does for its pruned entries.
"""
import os
import pathlib
import subprocess

import numpy as np
import pytest

from quant_grid_reference import find_params, quantize
from shardq_testlib import run_gptq_solve

ROOT = pathlib.Path(os.environ.get("SHARDQ_ROOT", pathlib.Path(__file__).resolve().parents[2]))
TOOL = ROOT / "build" / "tools" / "gptq_solve"
ROWS, COLS, SEQ, NSEQ = 48, 96, 8, 12
DEAD = 5


def reference_gptq(W, H, bits, group_size, sym, desc_act, static_groups, damp_percent, blocksize, mask=None):
    """mask (bool [rows, cols], original column order): entries quantized as 0."""
    W = W.astype(np.float32).copy()
    mask = np.zeros(W.shape, bool) if mask is None else mask
    H = H.astype(np.float64).copy()
    rows, cols = W.shape
    maxq = 2**bits - 1
    if group_size == -1:
        scale, zero = find_params(W, maxq, sym)
        scales, zeros = [scale], [zero]
    dead = np.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    if static_groups:
        static = [find_params(W[:, i:i + group_size], maxq, sym) for i in range(0, cols, group_size)]
        scales, zeros = [s for s, _ in static], [z for _, z in static]
    perm = np.argsort(-np.diag(H), kind="stable") if desc_act else np.arange(cols)
    W, H, mask = W[:, perm], H[perm][:, perm], mask[:, perm]
    H[np.diag_indices(cols)] += damp_percent * np.mean(np.diag(H))
    Hinv = np.linalg.cholesky(np.linalg.inv(H)).T.astype(np.float32)  # upper: H^-1 = U^T U
    codes = np.zeros((rows, cols), np.int64)
    if group_size > 0 and not static_groups:
        scales, zeros = [], []
    loss = 0.0
    for i1 in range(0, cols, blocksize):
        i2 = min(i1 + blocksize, cols)
        W1 = W[:, i1:i2].copy()
        Err1 = np.zeros_like(W1)
        for i in range(i2 - i1):
            col = i1 + i
            if group_size > 0 and not static_groups and col % group_size == 0:
                scale, zero = find_params(W[:, col:col + group_size], maxq, sym)
                scales.append(scale)
                zeros.append(zero)
            if static_groups:
                g = perm[col] // group_size
                scale, zero = scales[g], zeros[g]
            w = W1[:, i]
            q, dq = quantize(np.where(mask[:, col], np.float32(0), w), scale, zero, maxq)
            codes[:, col] = q
            err = (w - dq) / Hinv[col, col]
            W1[:, i:] -= np.outer(err, Hinv[col, i1 + i:i2])
            Err1[:, i] = err
            loss += float(np.sum(err.astype(np.float64) ** 2)) / 2
        W[:, i1:i2] = W1
        W[:, i2:] -= Err1 @ Hinv[i1:i2, i2:]
    inv = np.argsort(perm)
    codes = codes[:, inv]
    gs = group_size if group_size > 0 else cols
    if desc_act and not static_groups:
        g_idx = (np.arange(cols) // gs)[inv]
    else:
        g_idx = np.arange(cols) // gs
    return codes, np.stack(scales, 1), np.stack(zeros, 1), g_idx.astype(np.int32), loss


def make_problem(seed):
    rng = np.random.default_rng(seed)
    mix = rng.standard_normal((COLS, COLS)).astype(np.float32) / np.sqrt(COLS)
    scales = np.exp(rng.standard_normal(COLS)).astype(np.float32)  # uneven diag for act-order
    X = (rng.standard_normal((NSEQ * SEQ, COLS)).astype(np.float32) @ mix) * scales
    X = X.astype(np.float32)
    X[:, DEAD] = 0
    W = rng.standard_normal((ROWS, COLS)).astype(np.float32) * 0.05
    W[3, 10:20] += 0.3  # an outlier stretch so groups differ
    H = (2.0 / NSEQ) * (X.astype(np.float64).T @ X.astype(np.float64))
    return X, W, H.astype(np.float32)


def run_tool(tmp, W, H, method="gptq", **opt):
    """build/tools/gptq_solve's codes, grids, dequantized weights and loss."""
    out = run_gptq_solve(tmp, W, H, method, **opt)
    return {name: np.load(out / f"{name}.npy") for name in ("codes", "scales", "zeros", "g_idx", "wq")} | {
        "loss": float((out / "loss.txt").read_text())
    }


def output_error(W, Q, H):
    D = (W - Q).astype(np.float64)
    return float(np.trace(D @ H.astype(np.float64) @ D.T))


CONFIGS = [
    (bits, sym, gs, desc, static)
    for bits in (2, 3, 4, 8)
    for sym in (True, False)
    for gs, desc, static in ((32, False, False), (32, True, False), (32, True, True), (32, False, True),
                             (-1, False, False), (-1, True, False))
] + [
    # Ragged last group: 40 does not divide the 96 inputs (groups of 40, 40, 16), as group_size
    # 128 leaves a group of 64 over SmolLM2's 576 inputs; AutoGPTQ's slices simply run short.
    (bits, False, 40, desc, static)
    for bits in (3, 4)
    for desc, static in ((False, False), (True, False), (True, True), (False, True))
]


@pytest.mark.parametrize("bits,sym,group_size,desc_act,static_groups", CONFIGS)
def test_gptq_matches_reference(tmp_path, bits, sym, group_size, desc_act, static_groups):
    X, W, H = make_problem(bits * 100 + group_size)
    opt = dict(bits=bits, group_size=group_size, sym=sym, desc_act=desc_act, static_groups=static_groups,
               damp=0.01, block_size=32)
    ours = run_tool(tmp_path, W, H, **opt)
    codes, scales, zeros, g_idx, loss = reference_gptq(W, H, bits, group_size, sym, desc_act, static_groups,
                                                       0.01, 32)
    np.testing.assert_array_equal(ours["g_idx"], g_idx)
    mismatch = ours["codes"].astype(np.int64) != codes
    fraction = mismatch.mean()
    print(f"bits={bits} sym={sym} group={group_size} desc_act={desc_act} static={static_groups}: "
          f"code mismatch {fraction:.5f}")
    # A rounding tie decided differently changes that row's later columns through
    # the error feedback, so mismatches stay rare and confined to a few rows.
    assert fraction < 0.01
    assert mismatch.any(axis=1).mean() <= 0.25
    assert np.all(ours["codes"][:, DEAD] == ours["zeros"][:, ours["g_idx"][DEAD]].astype(np.int64)), \
        "a dead column quantizes to exactly zero"
    same_rows = ~mismatch.any(axis=1)
    np.testing.assert_allclose(ours["scales"][same_rows], scales[same_rows], rtol=1e-4)
    np.testing.assert_array_equal(ours["zeros"][same_rows], zeros[same_rows])
    assert ours["loss"] == pytest.approx(loss, rel=0.05)
    # The dequantized weights are the codes on the grid.
    grid_s = np.take_along_axis(ours["scales"], np.broadcast_to(ours["g_idx"], W.shape), 1)
    grid_z = np.take_along_axis(ours["zeros"], np.broadcast_to(ours["g_idx"], W.shape), 1)
    np.testing.assert_allclose(ours["wq"], grid_s * (ours["codes"] - grid_z), rtol=1e-6, atol=1e-7)

    rtn = run_tool(tmp_path / "rtn", W, None, method="rtn", bits=bits, group_size=group_size, sym=sym)
    gptq_error, rtn_error = output_error(W, ours["wq"], H), output_error(W, rtn["wq"], H)
    print(f"  tr((W-Q)H(W-Q)^T): gptq {gptq_error:.4g} rtn {rtn_error:.4g} ratio {gptq_error / rtn_error:.3f}")
    assert gptq_error < rtn_error


def test_rtn_matches_reference(tmp_path):
    _, W, _ = make_problem(7)
    ours = run_tool(tmp_path, W, None, method="rtn", bits=3, group_size=32, sym=False)
    for g in range(COLS // 32):
        scale, zero = find_params(W[:, g * 32:(g + 1) * 32], 7, False)
        q, dq = quantize(W[:, g * 32:(g + 1) * 32], scale[:, None], zero[:, None], 7)
        np.testing.assert_array_equal(ours["codes"][:, g * 32:(g + 1) * 32], q)
        np.testing.assert_array_equal(ours["wq"][:, g * 32:(g + 1) * 32], dq)
    np.testing.assert_array_equal(ours["g_idx"], np.arange(COLS) // 32)


def test_rtn_ragged_last_group_matches_reference(tmp_path):
    """group_size 40 over 96 inputs: three groups, the last one 16 columns wide."""
    _, W, _ = make_problem(8)
    ours = run_tool(tmp_path, W, None, method="rtn", bits=4, group_size=40, sym=False)
    assert ours["scales"].shape == (ROWS, 3)
    np.testing.assert_array_equal(ours["g_idx"], np.arange(COLS) // 40)
    for g, (c0, c1) in enumerate(((0, 40), (40, 80), (80, 96))):
        scale, zero = find_params(W[:, c0:c1], 15, False)
        q, dq = quantize(W[:, c0:c1], scale[:, None], zero[:, None], 15)
        np.testing.assert_allclose(ours["scales"][:, g], scale, rtol=1e-6)
        np.testing.assert_array_equal(ours["codes"][:, c0:c1], q)
        np.testing.assert_array_equal(ours["wq"][:, c0:c1], dq)


def test_hessian_accumulator_running_average(tmp_path):
    X, W, H = make_problem(11)
    np.save(tmp_path / "W.npy", W)
    np.save(tmp_path / "X.npy", X)
    subprocess.run([str(TOOL), "--w", str(tmp_path / "W.npy"), "--x", str(tmp_path / "X.npy"), "--seq", str(SEQ),
                    "--out", str(tmp_path / "out")], check=True)
    np.testing.assert_allclose(np.load(tmp_path / "out" / "H.npy"), H, rtol=1e-4, atol=1e-4)


def pruned(W, pattern, seed):
    """W with a 2:4 mask (the 2 smallest |w| of every 4) or a random 50% per row; and the mask."""
    rows, cols = W.shape
    if pattern == "2:4":
        order = np.argsort(np.abs(W).reshape(rows, cols // 4, 4), axis=2, kind="stable")
        mask = np.zeros((rows, cols // 4, 4), bool)
        np.put_along_axis(mask, order[:, :, :2], True, axis=2)
        mask = mask.reshape(rows, cols)
    else:
        rng = np.random.default_rng(seed)
        mask = np.zeros((rows, cols), bool)
        for r in range(rows):
            mask[r, rng.permutation(cols)[:cols // 2]] = True
    return np.where(mask, np.float32(0), W).astype(np.float32), mask


def zero_points(result):
    """The zero point of every entry's grid, [rows, cols]."""
    return np.take_along_axis(result["zeros"], np.broadcast_to(result["g_idx"], result["codes"].shape), 1)


MASKED_CONFIGS = [
    (pattern, bits, sym, gs, desc, static)
    for pattern in ("2:4", "50%")
    for bits, sym, gs, desc, static in ((4, True, 32, False, False), (4, False, 32, True, False),
                                        (3, False, -1, True, False), (8, True, 32, True, True),
                                        (2, False, 32, False, True))
]


@pytest.mark.parametrize("pattern,bits,sym,group_size,desc_act,static_groups", MASKED_CONFIGS)
def test_masked_gptq_matches_reference(tmp_path, pattern, bits, sym, group_size, desc_act, static_groups):
    _, W, H = make_problem(bits * 10 + 7)
    Ws, mask = pruned(W, pattern, seed=bits)
    opt = dict(bits=bits, group_size=group_size, sym=sym, desc_act=desc_act, static_groups=static_groups,
               damp=0.01, block_size=32)
    ours = run_tool(tmp_path, Ws, H, preserve_sparsity=True, **opt)
    codes, scales, zeros, g_idx, loss = reference_gptq(Ws, H, bits, group_size, sym, desc_act, static_groups,
                                                       0.01, 32, mask=Ws == 0)
    np.testing.assert_array_equal(ours["g_idx"], g_idx)
    # Every masked entry is at its grid's zero point and dequantizes to exactly 0.
    at_zero_point = ours["codes"] == zero_points(ours)
    assert at_zero_point[mask].all() and (ours["wq"][mask] == 0).all()
    mismatch = ours["codes"].astype(np.int64) != codes
    print(f"{pattern} bits={bits} sym={sym} group={group_size} desc_act={desc_act} static={static_groups}: "
          f"code mismatch {mismatch.mean():.5f}, zeros {np.mean(ours['wq'] == 0):.4f}")
    assert mismatch.mean() < 0.01
    assert mismatch.any(axis=1).mean() <= 0.25
    same_rows = ~mismatch.any(axis=1)
    np.testing.assert_allclose(ours["scales"][same_rows], scales[same_rows], rtol=1e-4)
    np.testing.assert_array_equal(ours["zeros"][same_rows], zeros[same_rows])
    assert ours["loss"] == pytest.approx(loss, rel=0.05)

    # Without the mask the error feedback fills the pruned entries in (the problem this solves) ...
    plain = run_tool(tmp_path / "plain", Ws, H, **opt)
    assert (plain["wq"][mask] != 0).mean() > 0.1
    # ... and with it GPTQ still beats round-to-nearest, which keeps zeros by construction.
    rtn = run_tool(tmp_path / "rtn", Ws, None, method="rtn", bits=bits, group_size=group_size, sym=sym)
    assert (rtn["wq"][mask] == 0).all()
    masked_error, rtn_error = output_error(Ws, ours["wq"], H), output_error(Ws, rtn["wq"], H)
    print(f"  tr((W-Q)H(W-Q)^T): masked gptq {masked_error:.4g} rtn {rtn_error:.4g} "
          f"unmasked gptq {output_error(Ws, plain['wq'], H):.4g}")
    assert masked_error < rtn_error


def test_masked_gptq_without_zeros_is_plain_gptq(tmp_path):
    # W has no zeros (only the dead column, which the solve zeroes and keeps at 0 anyway):
    # the mask is empty and the result is the unmasked one bit for bit.
    _, W, H = make_problem(5)
    assert not (W == 0).any()
    opt = dict(bits=4, group_size=32, sym=False, desc_act=True, damp=0.01, block_size=32)
    masked = run_tool(tmp_path / "masked", W, H, preserve_sparsity=True, **opt)
    plain = run_tool(tmp_path / "plain", W, H, **opt)
    for name in ("codes", "scales", "zeros", "g_idx", "wq"):
        np.testing.assert_array_equal(masked[name], plain[name], err_msg=name)
    assert masked["loss"] == plain["loss"]
