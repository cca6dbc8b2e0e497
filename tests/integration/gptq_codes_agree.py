"""gptq_codes_agree.py: do two GPTQ checkpoints agree within README's tolerance for sequential mode
(fewer than TOLERANCE of the integer codes differ)? Reads both with the tests' independent
safetensors reader and GPTQ unpacker (tests/python/shardq_testlib.py); prints how many codes differ.

usage: python3 gptq_codes_agree.py REFERENCE_DIR OTHER_DIR BITS TOLERANCE"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
from shardq_testlib import read_checkpoint, unpack_gptq  # noqa: E402


def main(reference_dir, other_dir, bits, tolerance):
    reference, other = read_checkpoint(reference_dir), read_checkpoint(other_dir)
    linears = sorted(name[:-len(".qweight")] for name in reference if name.endswith(".qweight"))
    if not linears or sorted(n for n in other if n.endswith(".qweight")) != [f"{l}.qweight" for l in linears]:
        print(f"the checkpoints do not hold the same quantized linears ({len(linears)} in the reference)")
        return 1
    differing = total = 0
    for linear in linears:
        a, _ = unpack_gptq(reference, linear, int(bits))
        b, _ = unpack_gptq(other, linear, int(bits))
        differing += int((a != b).sum())
        total += a.size
    print(f"{differing} of {total} codes differ over {len(linears)} linears")
    return 0 if differing / total < float(tolerance) else 1


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit(__doc__.splitlines()[-1])
    sys.exit(main(*sys.argv[1:]))
