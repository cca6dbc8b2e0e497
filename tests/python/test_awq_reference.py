"""AWQ's searches against an independent NumPy implementation (awq_reference.py).

build/tools/gptq_solve --method awq runs quant/awq.c on a weight W, a Hessian H and
the inputs' mean |x|: the scale search, W·diag(s), H := diag(1/s) H diag(1/s), the
clipping search and RTN. The reference, given the same W, H and mean, must pick the
same alpha, give the same scales, the same clipped weights and the same codes (up to
the rounding of the products dW·H, whose order differs: a code may flip where a
clip choice is a near tie, so a small fraction is allowed and printed). The fixture
has outlier input channels, where AWQ must beat plain RTN (alpha > 0)."""
from pathlib import Path

import numpy as np
import pytest

import awq_reference as ref
from shardq_testlib import run_gptq_solve

ROWS, COLS, SEQ, NSEQ = 48, 96, 8, 12


def fixture(seed):
    rng = np.random.default_rng(seed)
    channel = np.exp(rng.normal(0, 0.7, COLS))
    channel[rng.choice(COLS, 4, replace=False)] *= 12  # outlier channels, as LLM activations have
    X = (rng.standard_normal((NSEQ * SEQ, COLS)) * channel).astype(np.float32)
    W = (rng.standard_normal((ROWS, COLS)) * 0.05).astype(np.float32)
    H = (2.0 / NSEQ * (X.astype(np.float64).T @ X)).astype(np.float32)
    mean = np.abs(X).mean(axis=0).astype(np.float32)
    return W, H, mean


@pytest.mark.parametrize("bits,group_size,sym,clip", [(4, 32, False, True), (3, 32, True, False),
                                                      (4, -1, False, True), (4, 40, True, True)])
def test_awq_search_matches_reference(tmp_path, bits, group_size, sym, clip):
    W, H, mean = fixture(bits * 100 + (group_size % 97))
    np.save(tmp_path / "mean.npy", mean)
    out = run_gptq_solve(tmp_path, W, H, "awq", bits=bits, group_size=group_size, sym=sym,
                         mean=tmp_path / "mean.npy", n_grid=20, clip=clip)
    best, loss, plain = Path(out / "awq_best.txt").read_text().split()
    r_best, r_scales, r_loss, r_plain = ref.search_scales(W, H, mean, bits, group_size, sym, 20)
    assert int(best) == r_best, (best, r_best)
    np.testing.assert_allclose(float(loss), r_loss, rtol=1e-4)
    np.testing.assert_allclose(float(plain), r_plain, rtol=1e-4)
    assert r_best > 0 and r_loss < r_plain, "the outlier fixture must reward activation-aware scales"
    np.testing.assert_array_equal(np.load(out / "awq_scales.npy"), r_scales)

    scaled = (W * r_scales).astype(np.float32)
    inv = (np.float32(1) / r_scales).astype(np.float32)
    H_scaled = (H * inv[:, None] * inv[None, :]).astype(np.float32)
    r_clipped = ref.clip(scaled, H_scaled, bits, group_size, sym, 20) if clip else scaled
    clipped = np.load(out / "clipped.npy")
    same = np.mean(clipped == r_clipped)
    print(f"bits {bits} group {group_size} sym {sym} clip {clip}: alpha {r_best}/20, clipped weights equal: {same:.4f}")
    assert same >= 0.995
    if clip:
        assert np.any(r_clipped != scaled), "clipping must change some group on this fixture"
    r_deq, r_codes = ref.rtn(r_clipped, bits, group_size, sym)
    codes = np.load(out / "codes.npy")
    equal = codes == r_codes
    assert np.mean(equal) >= 0.995
    np.testing.assert_array_equal(np.load(out / "wq.npy")[equal], r_deq[equal])
