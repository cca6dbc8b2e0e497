"""shardq_testlib: shared helpers for the Python tests — where the binaries are,
an independent safetensors reader, a GPTQ unpacker written from the format
(AutoGPTQ v1: low bits first along the input dim, zeros stored minus one), and
running jobs under mpirun."""
import json
import os
import subprocess
from pathlib import Path

import numpy as np

import st_numpy_reader

ROOT = Path(os.environ.get("SHARDQ_ROOT", Path(__file__).resolve().parents[2]))
SHARDQ = ROOT / "shardq"
MAKE_TINY_MODEL = ROOT / "build" / "tools" / "make_tiny_model"
SHARED_DATA = ROOT.parent / "shared" / "data"


def read_safetensors(path):
    """name -> numpy array (st_numpy_reader's independent parser); BF16 widened to float32."""
    header, tensors = st_numpy_reader.read(path)
    return {name: st_numpy_reader.bf16_to_f32(t) if header[name]["dtype"] == "BF16" else t
            for name, t in tensors.items()}


def read_checkpoint(model_dir):
    """All tensors of a model directory (single file or shards)."""
    model_dir = Path(model_dir)
    index = model_dir / "model.safetensors.index.json"
    files = sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.exists() \
        else ["model.safetensors"]
    tensors = {}
    for f in files:
        tensors.update(read_safetensors(model_dir / f))
    return tensors


def unpack_gptq(tensors, linear, bits):
    """Integer codes [in, out] and zero points [groups, out] of one GPTQ linear."""
    qweight = tensors[linear + ".qweight"].view(np.uint32)
    qzeros = tensors[linear + ".qzeros"].view(np.uint32)
    def unpack_rows(words):  # words [rows, cols] packed along axis 0
        bitstream = np.unpackbits(np.ascontiguousarray(words, dtype="<u4").view(np.uint8).reshape(words.shape + (4,)),
                                  axis=-1, bitorder="little").reshape(words.shape[0], words.shape[1], 32)
        bitstream = bitstream.transpose(0, 2, 1).reshape(-1, words.shape[1])  # bit k of the column
        n = bitstream.shape[0] // bits
        weights = (1 << np.arange(bits)).astype(np.int64)
        return (bitstream[:n * bits].reshape(n, bits, -1) * weights[None, :, None]).sum(axis=1)
    codes = unpack_rows(qweight)
    zeros = unpack_rows(qzeros.T).T + 1
    return codes, zeros


def run(cmd, env=None, timeout=600, check=True):
    full_env = dict(os.environ)
    full_env.update({"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
                     "OMPI_MCA_rmaps_base_oversubscribe": "1", "OMP_NUM_THREADS": "1",
                     "OPENBLAS_NUM_THREADS": "1"})
    if env:
        full_env.update(env)
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=full_env, timeout=timeout,
                          cwd=ROOT)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


def mpirun(np_ranks, args, **kw):
    return run(["mpirun", "-np", str(np_ranks), "--bind-to", "none", SHARDQ] + list(args), **kw)


def make_model(out_dir, *args):
    run([MAKE_TINY_MODEL, out_dir] + list(args))
    return Path(out_dir)


def calibration_text(tmp_dir):
    """WikiText-2 from ../shared/data when present, else a generated stand-in."""
    wiki = SHARED_DATA / "wikitext-2" / "valid.txt"
    if wiki.exists():
        return wiki
    rng = np.random.default_rng(0)
    words = ["the", "of", "model", "layer", "quantized", "weights", "and", "a", "in", "is", "token", "data"]
    text = "\n".join(" ".join(rng.choice(words, 12)) for _ in range(4000))
    path = Path(tmp_dir) / "calibration.txt"
    path.write_text(text)
    return path


def model_sampled_data(model, tmp_dir, prefix, seed, seqlen=64, windows=48):
    """Text drawn from `model` itself (llama_reference's sampler), half for calibration and
    half for evaluation. On such text the model's expected NLL is the text's entropy and any
    change to the model only adds a KL divergence, so perplexities order by damage.
    Returns (the job's data block, ppl(model_dir, name) scoring the evaluation half)."""
    import llama_reference
    ids = llama_reference.sample(model, windows, seqlen, seed=seed)
    half = windows // 2 * seqlen
    calibration, evaluation = Path(tmp_dir) / f"{prefix}calibration.ids", Path(tmp_dir) / f"{prefix}evaluation.ids"
    calibration.write_text(" ".join(map(str, ids[:half])))
    evaluation.write_text(" ".join(map(str, ids[half:])))
    data = {"calibration": str(calibration), "format": "token_ids", "nsamples": windows // 2, "seqlen": seqlen}

    def ppl(model_dir, name):
        out = Path(tmp_dir) / f"{prefix}{name}-ppl.json"
        run([SHARDQ, "eval", "--model", model_dir, "--data-ids", evaluation, "--seqlen", str(seqlen), "--out", out])
        return json.loads(out.read_text())["ppl"]

    return data, ppl


def run_gptq_solve(tmp, W, H, method, **opt):
    """build/tools/gptq_solve on W (and H, when given) with flags from opt (preserve_sparsity ->
    --preserve-sparsity, booleans as 0/1); returns the directory of its .npy outputs."""
    tmp = Path(tmp)
    tmp.mkdir(parents=True, exist_ok=True)
    np.save(tmp / "W.npy", W)
    cmd = [str(ROOT / "build" / "tools" / "gptq_solve"), "--w", str(tmp / "W.npy"), "--out", str(tmp / "out"),
           "--method", method]
    if H is not None:
        np.save(tmp / "H.npy", H)
        cmd += ["--h", str(tmp / "H.npy")]
    for key, value in opt.items():
        cmd += ["--" + key.replace("_", "-"), str(int(value) if isinstance(value, bool) else value)]
    subprocess.run(cmd, check=True)
    return tmp / "out"


def write_spec(path, spec):
    Path(path).write_text(json.dumps(spec, indent=1))
    return Path(path)
