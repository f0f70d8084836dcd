"""`lpnb sweep --executor slurm` against a real one-node SLURM cluster started on this machine
(tests/slurm/cluster.sh: Debian's slurmctld, slurmd and munge). Skipped, saying why, where those are not
installed or the tests do not run as root; `make test-slurm` installs them, and CI does."""
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from lpnb.config import run_id
from lpnb.data import write_standin
from lpnb.experiment import load_checkpoint
from lpnb.sweep import report, sweep, table_cells

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "tests" / "slurm" / "cluster.sh"
pytestmark = [pytest.mark.slurm, pytest.mark.slow]


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    missing = [b for b in ("slurmctld", "slurmd", "munged", "sbatch") if shutil.which(b) is None]
    if missing:
        pytest.skip(f"no SLURM here ({', '.join(missing)} missing): make test-slurm installs Debian's slurm-wlm, munge")
    if os.geteuid() != 0:
        pytest.skip("the test cluster's daemons run as root: run make test-slurm as root")
    pytest.importorskip("submitit")
    env = {**os.environ, "LPNB_SLURM_DIR": str(tmp_path_factory.mktemp("slurm"))}
    started = subprocess.run(["bash", str(CLUSTER), "start"], env=env, capture_output=True, text=True)
    if started.returncode != 0:
        pytest.skip(f"could not start a SLURM cluster here: {(started.stdout + started.stderr)[-1500:]}")
    os.environ["SLURM_CONF"] = started.stdout.strip().split("=", 1)[1]
    yield
    subprocess.run(["bash", str(CLUSTER), "stop"], env=env, check=False)
    del os.environ["SLURM_CONF"]


def squeue():
    out = subprocess.run(["squeue", "-h", "-o", "%i %T"], capture_output=True, text=True).stdout
    return [line.split() for line in out.splitlines()]


def test_a_smoke_sweep_through_slurm_records_every_cell_and_resumes_a_stopped_job(slurm, tmp_path):
    """And a stage-1 run that fails (1000 labels: more than the stand-in data's 80 images per class allow) takes
    the stage-2 runs continuing it with it, while the others go on."""
    root = write_standin(tmp_path / "data", train_per_class=80, test_per_class=10)
    results = tmp_path / "results"
    cells = table_cells(2, labels=[500, 1000], methods=["supervised", "lp", "network"], splits=1, preset="smoke",
                        device="cpu", test_size=100, epochs_stage2=20)
    lp = next(c for c in cells if (c.method, c.labels) == ("lp", 500))
    lines, done = [], []
    thread = threading.Thread(target=lambda: done.append(sweep(
        cells, results_dir=results, data_root=root, executor="slurm", gpus_per_job=0, cpus_per_job=1,
        timeout_min=10, poll=1.0, log=lines.append)))
    thread.start()
    # stop the stage-2 jobs mid-run as SLURM does before a time limit or a preemption (SIGUSR2)
    ckpt = results / "runs" / run_id(lp) / "checkpoint.pt"
    deadline = time.time() + 300
    while time.time() < deadline and not (ckpt.exists() and load_checkpoint(ckpt, run_id(lp))["epoch"] >= 3):
        assert thread.is_alive(), f"the sweep ended before the stage-2 runs got going: {lines}"
        time.sleep(0.5)
    running = [job for job, state in squeue() if state == "RUNNING"]
    assert running, f"no job running: {lines}"
    subprocess.run(["scancel", "--signal=USR2", *running], check=True)
    thread.join(timeout=600)
    assert not thread.is_alive(), lines
    jobs, said = {job.run_id: job for job in done[0]}, []
    assert not report(done[0], log=said.append) and len(said) == 3  # the runs of 1000 labels
    assert lines[0].startswith("sweep: submitted 2 runs as SLURM job array")  # the supervised stage-1 runs
    assert lines[1].startswith("sweep: submitted 4 runs as 2 SLURM job(s) or array(s), each to start once")
    assert lines.count("sweep: sacct fails on this cluster (no job accounting?): job states are read from squeue") == 1
    for cfg in cells:
        job = jobs[run_id(cfg)]
        record = results / "runs" / run_id(cfg) / "record.json"
        if cfg.labels == 500:
            assert job.state == "done" and record.exists(), f"{run_id(cfg)} not recorded: {job.error} {lines}"
        elif cfg.method == "supervised":
            assert job.state == "failed" and "fewer than the 100 per class" in job.error, job.error
        else:
            assert job.state == "failed" and job.error.startswith(f"its stage-1 run {job.after} failed"), job.error
            assert not record.parent.exists()  # never started
    logs = "".join(p.read_text(errors="replace") for p in (results / "slurm").rglob("*.err"))
    assert "resuming from its checkpoint after" in logs, "no stopped job resumed"
