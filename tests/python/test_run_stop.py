"""How `shardq run` ends, as README's "Stopping a job" promises it:
- a bare run stopped by SIGTERM or SIGINT, and a run under mpirun stopped by SIGUSR1, exits 75
  with an info line "stopped by SIG... after layer K/N" where K is the count of layers the
  journal holds (the progress lines' count), no `error:` line, and resumes to the bytes of an
  uninterrupted run;
- SIGTERM to mpirun (Open MPI kills the ranks) leaves a journal that resumes to the same bytes;
- `shardq status` says "running" with rank 0's pid while the job runs, "interrupted (resume
  with the same command)" once its processes are gone (killed or stopped);
- a failure every rank knows (a bad spec, a seqlen beyond the model's positions, a missing
  model or calibration file)
  under mpirun -np 2 prints one `error:` line and no MPI_ABORT banner.
- a rank killed where the launcher does not end the others (mpirun --enable-recovery leaves them
  running, as srun does when a node's slurmstepd dies) ends every other rank through the peer
  watch (worker/peer_watch.h), which names it, rank 0 or another; the journal resumes to the same
  bytes. (A rank paused for as long as a test takes to act on it is not taken for dead: the
  SIGUSR1 test above pauses rank 0 and expects no `error:` line.)
Jobs are acted on at points of their own progress: SHARDQ_FAULT=after-journal:L with
SHARDQ_FAULT_ACTION=stop makes rank 0 SIGSTOP itself once layer L is journaled (worker/fault.h);
nothing here waits on the clock."""
import hashlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from shardq_testlib import ROOT, SHARDQ, calibration_text, make_model, mpirun, run, write_spec

LAYERS = 4
ENV = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1", "OMPI_MCA_rmaps_base_oversubscribe": "1",
       "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("stop")
    model = make_model(tmp / "model", "--layers", str(LAYERS), "--hidden", "64", "--intermediate", "128",
                       "--heads", "4", "--kv-heads", "2", "--vocab", "512", "--seed", "5")
    return {"tmp": tmp, "model": model, "calib": calibration_text(tmp)}


def spec_for(work, name, **overrides):
    spec = {"name": name, "model": str(work["model"]),
            "data": {"calibration": str(work["calib"]), "nsamples": 8, "seqlen": 32},
            "steps": [{"gptq": {"bits": 4, "group_size": 32}}],
            "state_uri": str(work["tmp"] / name / "state"), "output_uri": str(work["tmp"] / name / "output"),
            "parallel": {"mode": "sequential", "micro_batch": 2}, "seed": 7}
    spec.update(overrides)
    return write_spec(work["tmp"] / f"{name}.json", spec), Path(spec["output_uri"])


def journal_of(work, name):
    return json.loads((work["tmp"] / name / "state" / "journal.json").read_text())


def digests(directory):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(Path(directory).iterdir())}


def start(cmd, pause_after_layer):
    env = dict(os.environ, **ENV, SHARDQ_FAULT=f"after-journal:{pause_after_layer}", SHARDQ_FAULT_ACTION="stop")
    return subprocess.Popen([str(c) for c in cmd], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def wait_paused(pid, proc):
    """Until `pid` is stopped (state T), failing if the job ends first."""
    while True:
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T":
                return
        except FileNotFoundError:
            pass
        assert proc.poll() is None, proc.communicate()[0]
        time.sleep(0.02)


def wait_pending(pid, sig, proc):
    """Until the stopped process `pid` holds `sig` pending (mpirun forwards signals on its own time)."""
    bit = 1 << (sig - 1)
    while True:
        fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
        if (int(fields["SigPnd"], 16) | int(fields["ShdPnd"], 16)) & bit:
            return
        assert proc.poll() is None, proc.communicate()[0]
        time.sleep(0.02)


def wait_holder(work, name, proc):
    """Rank 0's pid, from the journal's holder, once rank 0 has paused."""
    while not (work["tmp"] / name / "state" / "journal.json").exists():
        assert proc.poll() is None, proc.communicate()[0]
        time.sleep(0.02)
    pid = journal_of(work, name)["holder"]["pid"]
    wait_paused(pid, proc)
    return pid


def status(spec):
    return run([SHARDQ, "status", spec]).stdout


@pytest.fixture(scope="module")
def baseline(work):
    spec, output = spec_for(work, "baseline")
    run([SHARDQ, "run", spec], env=ENV)
    return digests(output)


@pytest.fixture(scope="module")
def two_rank_baseline(work):
    spec, output = spec_for(work, "baseline2")
    mpirun(2, ["run", spec])
    return digests(output)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_bare_run_stops_cleanly(work, baseline, sig):
    name = f"bare-{sig.name}"
    spec, output = spec_for(work, name)
    proc = start([SHARDQ, "run", spec], pause_after_layer=0)
    wait_paused(proc.pid, proc)
    proc.send_signal(sig)
    os.kill(proc.pid, signal.SIGCONT)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 75, out
    done = len(journal_of(work, name)["steps"][0]["layers"])
    assert 1 <= done < LAYERS
    assert f"stopped by {sig.name} after layer {done}/{LAYERS}; the journal is consistent" in out
    assert f"layer {done}/{LAYERS} quantized" in out  # the same count as the progress lines
    assert "error:" not in out
    assert "holder" not in journal_of(work, name)
    assert "interrupted (resume with the same command)" in status(spec)
    run([SHARDQ, "run", spec], env=ENV)
    assert digests(output) == baseline


def test_status_of_a_killed_job(work, baseline):
    name = "killed"
    spec, output = spec_for(work, name)
    proc = start([SHARDQ, "run", spec], pause_after_layer=1)
    wait_paused(proc.pid, proc)
    running = status(spec)
    assert f"running (rank 0 is pid {proc.pid} on {os.uname().nodename})" in running, running
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    assert journal_of(work, name)["holder"]["pid"] == proc.pid  # a killed run cannot clear it
    interrupted = status(spec)
    assert "interrupted (resume with the same command)" in interrupted
    assert "running" not in interrupted
    assert "2 layers done" in interrupted
    run([SHARDQ, "run", spec], env=ENV)
    assert digests(output) == baseline
    finished = status(spec)
    assert "  done\n" in finished and "interrupted" not in finished


def test_mpirun_sigusr1_stops_cleanly(work, two_rank_baseline):
    name = "mpirun-usr1"
    spec, output = spec_for(work, name)
    proc = start(["mpirun", "-np", "2", "--bind-to", "none", SHARDQ, "run", spec], pause_after_layer=0)
    rank0 = wait_holder(work, name, proc)
    proc.send_signal(signal.SIGUSR1)  # mpirun forwards SIGUSR1 to every rank
    wait_pending(rank0, signal.SIGUSR1, proc)
    os.kill(rank0, signal.SIGCONT)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 75, out
    done = len(journal_of(work, name)["steps"][0]["layers"])
    assert f"stopped by SIGUSR1 after layer {done}/{LAYERS}; the journal is consistent" in out
    assert "error:" not in out
    mpirun(2, ["run", spec])
    assert digests(output) == two_rank_baseline


def rank_pid(launcher, rank):
    """The pid of the launcher's child that is MPI rank `rank`."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            environ = (stat.parent / "environ").read_bytes().split(b"\0")
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if ppid == launcher.pid and f"OMPI_COMM_WORLD_RANK={rank}".encode() in environ:
            return int(stat.parent.name)
    raise AssertionError(f"no rank {rank} under pid {launcher.pid}")


def unwatched_by_mpirun(spec):
    return ["mpirun", "-np", "2", "--enable-recovery", "--bind-to", "none", SHARDQ, "run", spec]


def ended_by_the_peer_watch(out, spec, output, baseline, watcher, lost):
    """Rank `watcher` said rank `lost` had gone, and the journal resumes to the uninterrupted bytes."""
    assert f"[shardq {watcher}/2] error: rank {lost} (on " in out and ") has ended without saying goodbye" in out, out
    mpirun(2, ["run", spec])
    assert digests(output) == baseline


def test_a_rank_killed_unseen_by_the_launcher_ends_rank_0(work, two_rank_baseline):
    spec, output = spec_for(work, "unseen-rank1")
    proc = start(unwatched_by_mpirun(spec), pause_after_layer=0)
    rank0 = wait_holder(work, "unseen-rank1", proc)  # rank 1 waits for it in a collective
    os.kill(rank_pid(proc, 1), signal.SIGKILL)
    os.kill(rank0, signal.SIGCONT)
    out, _ = proc.communicate(timeout=300)  # without the peer watch rank 0 would wait for rank 1 forever
    ended_by_the_peer_watch(out, spec, output, two_rank_baseline, watcher=0, lost=1)


def test_rank_0_killed_unseen_by_the_launcher_ends_the_others(work, two_rank_baseline):
    spec, output = spec_for(work, "unseen-rank0")
    killed = run(unwatched_by_mpirun(spec), env={"SHARDQ_FAULT": "after-journal:1"}, timeout=300, check=False)
    assert "fault injection: SIGKILL at after-journal of layer 1" in killed.stderr + killed.stdout
    ended_by_the_peer_watch(killed.stderr + killed.stdout, spec, output, two_rank_baseline, watcher=1, lost=0)


def test_mpirun_sigterm_kills_ranks_and_the_journal_resumes(work, two_rank_baseline):
    # Open MPI 4.1 answers SIGTERM by killing the ranks (SIGTERM, SIGKILL a second later) and
    # exits 1 whatever they return: README documents it; the journal must still resume.
    name = "mpirun-term"
    spec, output = spec_for(work, name)
    proc = start(["mpirun", "-np", "2", "--bind-to", "none", SHARDQ, "run", spec], pause_after_layer=0)
    wait_holder(work, name, proc)
    proc.send_signal(signal.SIGTERM)  # mpirun itself sends the ranks SIGCONT, then SIGTERM
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 1, out
    # In the second between SIGCONT and SIGTERM the ranks may finish this tiny job: either way
    # the journal is consistent and the process gone.
    after = status(spec)
    assert "interrupted (resume with the same command)" in after or "  done\n" in after, after
    mpirun(2, ["run", spec])
    assert digests(output) == two_rank_baseline


@pytest.mark.parametrize("fault", ["spec", "model-shape", "model", "data"])
def test_agreed_failure_prints_one_error_line(work, fault):
    name = f"failing-{fault}"
    if fault == "spec":
        spec, _ = spec_for(work, name, steps=[{"gptq": {"bits": 5, "group_size": 32}}])
        expected = "steps[0].gptq.bits"
    elif fault == "model-shape":  # found against the model's config: windows beyond its positions
        spec, _ = spec_for(work, name, data={"calibration": str(work["calib"]), "nsamples": 8, "seqlen": 4096})
        expected = "data.seqlen"
    elif fault == "model":
        expected = str(work["tmp"] / "no-such-model")
        spec, _ = spec_for(work, name, model=expected)
    else:
        missing = str(work["tmp"] / "no-such-calibration.txt")
        spec, _ = spec_for(work, name, data={"calibration": missing, "nsamples": 8, "seqlen": 32})
        expected = missing
    proc = mpirun(2, ["run", spec], check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    errors = [line for line in out.splitlines() if "error:" in line]
    assert len(errors) == 1, out
    assert expected in out
    assert "MPI_ABORT" not in out and "ORTE_ERROR_LOG" not in out


@pytest.mark.parametrize("holder, expected, rc", [
    ({"host": "elsewhere-host", "pid": 4242, "pid_start": 1},
     "running on elsewhere-host (rank 0 is pid 4242 there; if it is gone, the job was interrupted", 0),
    ({"host": "h", "pid": "4242", "pid_start": 1}, "journal.json: holder.pid: must be a process id", 1),
    ({"pid": 4242, "pid_start": 1}, "journal.json: holder.host: must be a string", 1),
])
def test_status_reads_the_holder_a_journal_records(work, holder, expected, rc):
    # A journal written here by hand: a holder on another host cannot be checked; a malformed one is named.
    name = "hand-written"
    spec, _ = spec_for(work, name)
    state = work["tmp"] / name / "state"
    state.mkdir(parents=True, exist_ok=True)
    (state / "journal.json").write_text(json.dumps({
        "format": "shardq-journal/1", "spec_sha256": "0" * 64, "holder": holder,
        "steps": [{"kind": "gptq", "status": "running", "layers": []}]}))
    r = run([SHARDQ, "status", spec], check=False)
    assert r.returncode == rc and expected in r.stdout + r.stderr, r.stdout + r.stderr
