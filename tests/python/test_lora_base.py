"""The GPTQ base of LoRA training, kept on the device in unpacked form (lora/base.c):
every linear as `sq_lora_base_read_linear` gives it (the resident codes dequantized by
kn_dequantize) equals, bit for bit, what model/layer.c's host path reads from the same
checkpoint (base "none") and the NumPy dequantization of the packed tensors
(shardq_testlib.unpack_gptq, written from the format), for an act-order GPTQ checkpoint
(a g_idx that is not monotone) with a linear left dense."""
import numpy as np
import pytest

import st_numpy_reader
from shardq_testlib import ROOT, calibration_text, make_model, mpirun, read_checkpoint, read_safetensors, run, \
    unpack_gptq, write_spec

LORA_TOOL = ROOT / "build" / "tools" / "lora_tool"
TINY = ["--layers", "2", "--hidden", "64", "--intermediate", "128", "--heads", "4", "--kv-heads", "2",
        "--vocab", "300", "--dtype", "f32", "--seed", "3"]
LINEARS = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj",
           "mlp.up_proj", "mlp.down_proj"]


@pytest.fixture(scope="module")
def gptq_model(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lora_base")
    model = make_model(tmp / "model", *TINY)
    job = write_spec(tmp / "job.json", {
        "model": str(model), "data": {"calibration": str(calibration_text(tmp)), "nsamples": 8, "seqlen": 32},
        "steps": [{"gptq": {"bits": 4, "group_size": 32, "desc_act": True, "sym": False}}],
        "state_uri": str(tmp / "state"), "output_uri": str(tmp / "out"), "seed": 1})
    mpirun(1, ["run", job])
    return tmp, tmp / "out"


def numpy_dequantized(tensors, linear):
    codes, zeros = unpack_gptq(tensors, linear, 4)  # [in, out], [groups, out]
    g_idx = tensors[linear + ".g_idx"]
    scales = tensors[linear + ".scales"].astype(np.float32)
    return (scales[g_idx] * (codes.astype(np.float32) - zeros[g_idx].astype(np.float32))).T


def test_resident_gptq_base_equals_host_path_and_numpy(gptq_model):
    tmp, ckpt = gptq_model
    run([LORA_TOOL, "base", ckpt, tmp / "resident.safetensors", "gptq"])
    run([LORA_TOOL, "base", ckpt, tmp / "stored.safetensors", "none"])
    resident = read_safetensors(tmp / "resident.safetensors")
    stored = read_safetensors(tmp / "stored.safetensors")
    tensors = read_checkpoint(ckpt)
    assert len(resident) == 2 * len(LINEARS)
    act_order = False
    for layer in range(2):
        for name in LINEARS:
            key, linear = f"{layer}.{name}", f"model.layers.{layer}.{name}"
            assert resident[key].tobytes() == stored[key].tobytes(), key
            np.testing.assert_array_equal(resident[key], numpy_dequantized(tensors, linear), err_msg=key)
            act_order |= bool(np.any(np.diff(tensors[linear + ".g_idx"]) < 0))
    assert act_order  # the fixture exercises a g_idx that is not monotone


def test_dense_linear_in_a_gptq_checkpoint_is_read_as_stored(gptq_model, tmp_path):
    """A linear the checkpoint keeps dense (an unquantized module) is read as stored."""
    _, ckpt = gptq_model
    header, tensors = st_numpy_reader.read(ckpt / "model.safetensors")
    linear = "model.layers.1.mlp.down_proj"
    dense = (numpy_dequantized(read_checkpoint(ckpt), linear) * np.float32(0.5)).astype(np.float16)
    entries = {name: (header[name]["dtype"], t) for name, t in tensors.items()
               if not name.startswith(linear + ".")}
    entries[linear + ".weight"] = ("F16", dense)
    copy = tmp_path / "mixed"
    copy.mkdir()
    (copy / "config.json").write_bytes((ckpt / "config.json").read_bytes())
    st_numpy_reader.write(copy / "model.safetensors", entries)
    run([LORA_TOOL, "base", copy, tmp_path / "resident.safetensors", "gptq"])
    got = read_safetensors(tmp_path / "resident.safetensors")
    np.testing.assert_array_equal(got["1.mlp.down_proj"], dense.astype(np.float32))
    np.testing.assert_array_equal(got["1.mlp.up_proj"], numpy_dequantized(read_checkpoint(ckpt),
                                                                          "model.layers.1.mlp.up_proj"))
