"""log_timeline.py: where a calibration job's wall time goes around its layer loop, from a log whose
lines carry the seconds since launch (bench_lib.sh's `stamp`) and the layer lines' `elapsed`."""
import re


def loop_split(log, wall):
    """(before, loop, after) seconds: start-up (MPI, CUDA, NCCL, model and data) up to the loop's start,
    the loop up to the last layer's line, and the rest of the wall time (the checkpoint's end, exit);
    None when the log has no layer line."""
    lines = re.findall(r"^\s*([\d.]+) .*layer \d+/\d+ quantized, elapsed ([\d.]+)s", log, re.M)
    if not lines:
        return None
    start = float(lines[0][0]) - float(lines[0][1])
    end = float(lines[-1][0])
    return start, end - start, wall - end
