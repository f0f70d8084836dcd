"""Many runs at once: the cells of a table not recorded yet, on local workers or on a SLURM cluster.

    lpnb sweep --table 2 --labels 500,1000 --methods supervised,lp --splits 3 --workers 4
    lpnb sweep --table 2 --preset paper --executor slurm --partition gpu --timeout-min 60

The unit of parallelism is the run (the protocol's batch of 100 images is too small to split
over GPUs): every run is one process on one GPU. The stage-1 runs go first, and a stage-2 run
starts once the stage-1 run it continues is recorded with its checkpoint. `lpnb.experiment.run`
locks a run's folder while it trains, so two sweeps, or a sweep and a notebook, on the same
results never train one run twice at the same time, and records are written atomically.
"""
import contextlib
import ctypes
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lpnb import data as lpdata
from lpnb.config import base_config, make_config, run_id
from lpnb.experiment import PAPER_ON_CPU, being_retrained, default_results_dir, read_record, trains_on_cpu
from lpnb.tables import TABLES, check_selection, table_configs, training_time

STATES = ("done", "running", "waiting", "failed")
ATTEMPT = "--- sweep: attempt started "  # a line of a run's sweep.log before each attempt's output
MAX_REQUEUES = 20  # times SLURM may requeue a job stopped at its time limit (each continues the run)
MIN_TIMEOUT = 5  # minutes: the least time limit of a SLURM job
STOP_BEFORE_LIMIT = 180  # seconds: a SLURM job's run stops this long before its time limit, before SLURM's signal


@dataclass
class Job:
    """One run to do: `cfg`, the run id it waits for (`after`, its stage-1 run) and its state."""
    cfg: object
    after: str | None = None
    require_checkpoint: bool = False  # a stage-1 run that a stage-2 run will start from
    state: str = "waiting"
    error: str = ""
    process: object = field(default=None, repr=False)  # local: the `lpnb run` process; slurm: the submitit job
    slot: str | None = None  # local: the GPU it runs on
    log_path: Path | None = None
    started: float | None = None  # time.time() when it started and ended (local)
    ended: float | None = None

    @property
    def run_id(self):
        return run_id(self.cfg)


def table_cells(table, *, labels=None, methods=None, splits=None, datasets=None, preset="paper", **overrides):
    """The Configs of a table's cells, selected as its notebook selects them: `labels`, `methods` and
    `datasets` narrow the table's own (None: all of them); `splits` is a count (splits 0..n-1) or a list
    of split numbers (None: the preset's count for each dataset, as in the notebooks)."""
    for name, value in (("labels", labels), ("methods", methods), ("datasets", datasets)):
        if value is not None and not value:
            raise ValueError(f"{name} is empty: give one or more, or None for all of the table's")
    check_selection(table, labels, methods, datasets)
    spec = TABLES[table]
    if isinstance(splits, (list, tuple)) and not (splits and all(isinstance(n, int) and n >= 0 for n in splits)):
        raise ValueError(f"splits must be split numbers >= 0, got {splits!r}")
    if not isinstance(splits, (list, tuple, type(None))) and not (isinstance(splits, int) and splits >= 1):
        raise ValueError(f"splits must be a count >= 1 (splits 0..n-1) or a list of split numbers, got {splits!r}")
    rows = [row for row in spec["rows"] if methods is None or row["method"] in methods]
    return [cfg for dataset in datasets or spec["datasets"]
            for cfg in table_configs(rows, labels or spec["labels"], splits, dataset, preset, overrides)]


def plan(cells, results_dir):
    """The jobs for the cells not recorded yet: each stage-1 run they need first (missing, or finished
    without the checkpoint that a stage-2 run starts from; none for a stage-2 run under way), then the
    stage-2 runs, each after its own."""
    runs = Path(results_dir) / "runs"
    jobs = {}
    for cfg in cells:
        rid = run_id(cfg)
        if (runs / rid / "record.json").exists() and not being_retrained(runs / rid):
            read_record(runs / rid / "record.json")  # a corrupt one is named with its remedy, not counted as done
            continue
        after, base = None, base_config(cfg)
        if base is not None and not _keeps_its_base(runs / rid / "checkpoint.pt"):
            base_dir = runs / run_id(base)
            if recorded := (base_dir / "record.json").exists():
                read_record(base_dir / "record.json")  # corrupt: named now, not when its stage-2 job fails
            started = (runs / rid / "checkpoint.pt").exists()  # an older checkpoint: stage 1's record is enough
            finished = (base_dir / "checkpoint.pt").exists() and not being_retrained(base_dir)
            if not recorded or (not started and not finished):
                after = run_id(base)
                job = jobs.setdefault(after, Job(base))
                job.require_checkpoint = job.require_checkpoint or not started
        if rid in jobs:
            jobs[rid].cfg = cfg
        else:
            jobs[rid] = Job(cfg, after)
    return sorted(jobs.values(), key=lambda j: base_config(j.cfg) is not None)  # stage-1 runs first


def _keeps_its_base(checkpoint):
    """Whether a stage-2 run's checkpoint keeps the stage-1 record it began from: it resumes without stage 1."""
    import torch
    try:
        return "base" in torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # missing, or unreadable (`lpnb run` says so)
        return False


def command(job, results_dir, data_root=None, time_limit=None):
    """The `lpnb run` command line of a job: every field of its config as a JSON flag."""
    cmd = [sys.executable, "-m", "lpnb.cli", "run", "--results-dir", str(results_dir)]
    for name, value in asdict(job.cfg).items():
        cmd += ["--preset", value] if name == "preset" else [f"--{name.replace('_', '-')}", json.dumps(value)]
    cmd += ["--data-root", str(data_root)] if data_root is not None else []
    cmd += ["--require-checkpoint"] if job.require_checkpoint else []
    cmd += ["--time-limit", str(time_limit)] if time_limit is not None else []
    return cmd


def _stopped_with_the_sweep():
    """The preexec_fn of a local worker (Linux; else None): the kernel sends it SIGTERM when the sweep's thread that
    started it ends, even killed by SIGKILL, so that no worker trains on unwatched (it stops as at `kill`, what it
    finished kept). prctl is looked up here, in the sweep: the child only calls it."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    return lambda: prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG


def summary(jobs):
    """How many of `jobs` are in each state, e.g. "3 done, 1 running, 4 waiting, 0 failed"."""
    counts = {state: sum(j.state == state for j in jobs) for state in STATES}
    return ", ".join(f"{counts[s]} {s}" for s in STATES)


def run_local(jobs, results_dir, *, data_root=None, workers=None, per_gpu=1, poll=1.0, log=print):
    """Run the jobs as `lpnb run` processes, `workers` at a time. With CUDA each worker slot is pinned to one
    visible GPU (CUDA_VISIBLE_DEVICES), `per_gpu` slots per GPU; workers defaults to, and may not exceed,
    the number of slots (on a CPU, or when every job trains on the CPU, it defaults to 1 and has no limit).
    A job's output goes to runs/<run-id>/sweep.log. Returns the jobs, their state set."""
    import torch

    on_cpu = all(str(j.cfg.device) == "cpu" for j in jobs)  # --device cpu: no GPU slots
    count = 0 if on_cpu else torch.cuda.device_count()  # a GPU named as this process's CUDA_VISIBLE_DEVICES names it
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    gpus = visible.split(",")[:count] if visible else [str(g) for g in range(count)]
    slots = [g for _ in range(per_gpu) for g in gpus] or [None]  # round-robin: two workers use two GPUs
    if gpus and (numbered := sorted({j.cfg.device for j in jobs if str(j.cfg.device).startswith("cuda:")})):
        raise ValueError(f"--device {numbered[0]}: each local worker sees one GPU, its own, as 'cuda' "
                         "(CUDA_VISIBLE_DEVICES): give --device cuda or auto, and choose the GPUs with "
                         "CUDA_VISIBLE_DEVICES")
    if gpus and workers and workers > len(slots):  # more would share GPUs beyond per_gpu
        raise ValueError(f"--workers {workers} is more than the {len(gpus)} visible GPU(s) x --per-gpu {per_gpu}: "
                         f"give --workers {len(slots)} or fewer, or --per-gpu {-(-workers // len(gpus))} to share "
                         "each GPU between that many runs")
    workers = workers or len(slots)
    slots = (slots * workers)[:workers]
    free, by_id = list(slots), {j.run_id: j for j in jobs}
    where, threads = "GPUs " + ", ".join(sorted(set(slots))) if gpus else "the CPU", _cpu_threads(workers)
    log(f"sweep: {len(jobs)} runs to do, {workers} at a time on {where}"
        + (f" ({threads['OMP_NUM_THREADS']} threads each)" if threads else ""))
    with _workers_stopped_on_exit(jobs):
        _run_local(jobs, results_dir, data_root, free, by_id, poll, log, threads)
    return jobs


def _cpu_threads(workers):
    """The environment that shares this machine's cores between `workers` runs (torch's threads, OMP_NUM_THREADS),
    so that they do not each start a thread per core; none where OMP_NUM_THREADS is set."""
    if "OMP_NUM_THREADS" in os.environ:
        return {}
    try:  # the cores this process may use: a SLURM allocation's, a container's, taskset's
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # no affinity outside Linux
        cores = os.cpu_count() or 1
    return {"OMP_NUM_THREADS": str(max(1, cores // workers))}


@contextlib.contextmanager
def _workers_stopped_on_exit(jobs):
    """Stop the `lpnb run` processes still running when the sweep ends early (Ctrl-C, SIGTERM, an error): each
    keeps its last checkpoint, and a later sweep resumes it."""
    main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM) if main else None
    if main and previous in (signal.SIG_DFL, None):  # SIGTERM as Ctrl-C; a caller's handler (the CLI's) is kept
        signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        yield
    finally:
        if main:  # a second Ctrl-C or SIGTERM would leave the workers below running, holding their runs' locks
            handlers = [signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)]
        running = [j for j in jobs if j.state == "running" and j.process.poll() is None]
        for job in running:
            job.process.terminate()
        for job in running:
            try:
                job.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                job.process.kill()
            job.state, job.error = "failed", "stopped with the sweep"
        if main:
            signal.signal(signal.SIGINT, handlers[0])
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


@contextlib.contextmanager
def _signals_held():
    """Hold Ctrl-C and SIGTERM until the block ends, then act on them as usual (in the main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = []
    previous = {s: signal.signal(s, lambda number, frame: caught.append(number)) for s in (signal.SIGINT,
                                                                                          signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        for number in dict.fromkeys(caught):
            signal.raise_signal(number)


def _run_local(jobs, results_dir, data_root, free, by_id, poll, log, threads):
    """`run_local`'s loop: each waiting job starts on a free slot once its stage-1 run is done (`threads`: more
    environment for every worker)."""
    shown, with_the_sweep = None, _stopped_with_the_sweep()
    while any(j.state in ("waiting", "running") for j in jobs):
        for job in jobs:
            if job.state == "running" and job.process.poll() is not None:
                job.state, job.ended = ("done" if job.process.returncode == 0 else "failed"), time.time()
                job.error = "" if job.state == "done" else _why(job.process.returncode, job.log_path)
                free.append(job.slot)
        for job in jobs:
            before = by_id.get(job.after)
            if job.state == "waiting" and before is not None and before.state == "failed":
                job.state, job.error = "failed", f"its stage-1 run {job.after} failed"
            if job.state == "waiting" and free and (before is None or before.state == "done"):
                job.slot = free.pop(0)
                job.log_path = Path(results_dir) / "runs" / job.run_id / "sweep.log"
                lpdata.make_folder(job.log_path.parent)
                env = dict(os.environ, **threads, **({"CUDA_VISIBLE_DEVICES": job.slot} if job.slot else {}))
                with open(job.log_path, "ab") as out:  # kept across attempts, each after a line of its own
                    out.write(f"{ATTEMPT}{time.strftime('%Y-%m-%d %H:%M:%S')}{_by_this_sweep()}\n".encode())
                    out.flush()
                    with _signals_held():  # a worker started is a worker known as running, to be stopped
                        job.process = subprocess.Popen(command(job, results_dir, data_root), stdout=out,
                                                       stderr=subprocess.STDOUT, env=env, preexec_fn=with_the_sweep)
                        job.state, job.started = "running", time.time()
        shown = _show_progress(jobs, shown, poll, log)


def _show_progress(jobs, shown, poll, log):
    """Log the runs done, running, waiting and failed when that changed since `shown`; wait `poll` seconds while
    runs remain. Returns what is shown now."""
    if (now := summary(jobs)) != shown:
        log(f"sweep: {now}")
    if any(j.state in ("waiting", "running") for j in jobs):
        time.sleep(poll)
    return now


def _why(returncode, log_path):
    """Why a run's process failed: the end of its log, and the signal that killed it, if one did."""
    why = _tail(log_path)
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:  # a real-time signal: no name
            name = f"signal {-returncode}"
        why += (f"\nkilled by {name}" + (" (out of memory?)" if -returncode == signal.SIGKILL else "")
                + ": its epochs finished are checkpointed, and the same sweep resumes it")
    return why.strip("\n")


def _by_this_sweep():
    return f" by sweep {os.getpid()}"  # another sweep on the same results folder may append to the same log


def _tail(path, lines=15):
    """The last `lines` lines of a run's log written by this sweep's last attempt (an earlier one may have
    succeeded; another sweep's attempt, started meanwhile, may follow it)."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError as e:
        return f"(no log: {e})"
    log = text.splitlines()
    starts = [i for i, line in enumerate(log) if line.startswith(ATTEMPT)]
    ours = [i for i in starts if log[i].endswith(_by_this_sweep())] or starts
    shown = [line for line in log[ours[-1] + 1 if ours else 0:] if not line.startswith(ATTEMPT)]
    return "\n".join(shown[-lines:])


def report(jobs, log=print):
    """Print what failed and why; True if everything is done."""
    failed = [j for j in jobs if j.state != "done"]
    for job in failed:
        log(f"FAILED {job.run_id}:\n{job.error}\n")
    return not failed


def sweep(cells, *, results_dir=None, data_root=None, workers=None, per_gpu=1, executor="local", log=print,
          **slurm):
    """Run every cell of `cells` (Configs) not recorded yet under `results_dir`, stage 1 first, on local workers
    or on SLURM (`executor="slurm"`, with `slurm` options for `run_slurm`). Returns the jobs, each with its
    final state ("done" or "failed")."""
    counts = {"workers": workers, "per_gpu": per_gpu,  # None: not given
              **{k: slurm.get(k) for k in ("timeout_min", "gpus_per_job", "cpus_per_job")}}
    for name, value in counts.items():
        least = {"gpus_per_job": 0, "timeout_min": MIN_TIMEOUT}.get(name, 1)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < least):
            raise ValueError(f"{name} must be {'a positive integer' if least == 1 else f'an integer >= {least}'}, "
                             f"got {value!r}" + (" (a job stops 3 minutes before its time limit, and SLURM signals "
                                                 "it up to 150 s before)" if name == "timeout_min" else ""))
    if executor == "slurm" and shutil.which("sbatch") is None:
        raise RuntimeError("executor 'slurm': SLURM's sbatch is not on this machine's PATH; run the sweep from a "
                           "SLURM login node, or use executor 'local'")
    if results_dir is None:
        results_dir = default_results_dir(cells[0].preset if cells else None)
    results_dir = Path(results_dir)
    jobs = plan(cells, results_dir)
    if not jobs:
        log("sweep: every cell is recorded already")
        return jobs
    if estimate := training_time([job.cfg for job in jobs], results_dir):
        log(f"sweep: the runs to do, one after another: {estimate}")
    if executor == "local":  # the data and the labeled splits, once here rather than failing in every run
        if any(job.cfg.preset == "paper" and trains_on_cpu(job.cfg) for job in jobs):
            warnings.warn(PAPER_ON_CPU, stacklevel=2)
        for name in dict.fromkeys(job.cfg.dataset for job in jobs):
            try:
                data = lpdata.load_dataset(name, data_root)  # decoded once for all the workers
            except FileNotFoundError as e:
                raise FileNotFoundError(f"{e}\n(Or leave {name} out of the sweep with --datasets.)") from None
            for n_labels, split in dict.fromkeys((j.cfg.labels, j.cfg.split) for j in jobs if j.cfg.dataset == name):
                lpdata.labeled_indices(data, n_labels, split, root=data_root, results_dir=results_dir)
            del data
        return run_local(jobs, results_dir, data_root=data_root, workers=workers, per_gpu=per_gpu, log=log)
    if executor == "slurm":
        return run_slurm(jobs, results_dir, data_root=data_root, log=log, **slurm)
    raise ValueError(f"executor must be 'local' or 'slurm', got {executor!r}")


# --- SLURM, through submitit -------------------------------------------------------------------------------
class JobOutOfTime(RuntimeError):
    """A SLURM job's time ran out before it checkpointed one epoch. Raised in submitit's signal handler, wherever
    the run was, even in a checkpoint's write: not a plain RuntimeError, which that write would take for a full
    disk's."""


def _preempt_signal():
    """The signal that submitit's handler in a job takes as SLURM's before a time limit or a preemption
    (USR2, or $SUBMITIT_PREEMPT_SIGNAL)."""
    import submitit

    return getattr(signal, "SIG" + submitit.JobEnvironment.USR_SIG)


class SlurmRun:
    """What a SLURM job runs: one `lpnb.experiment.run`, stopped by its time limit at an epoch boundary
    a few minutes before SLURM's. It then signals itself as SLURM does before a time limit (`_preempt_signal`), and
    submitit requeues it (`checkpoint`); a preemption takes the same path. The requeued job resumes from
    the run's checkpoint. A job that checkpoints no epoch in its time fails instead (requeued, it would
    stop again, for ever), unless its time went waiting for another process that trained the run meanwhile."""
    deadline = float("inf")  # time.time() when the run's time is up (a signal before that requeues the job)
    checkpoints = None       # the checkpoint files when the job began the run (`_checkpoints`)

    def __call__(self, fields, results_dir, data_root, require_checkpoint, time_limit):
        from lpnb.experiment import TimeLimitReached, run

        cfg = _config(fields)
        if (left := _slurm_time_left()) is not None:  # SLURM's clock: the job's start-up took some of its time
            time_limit = min(time_limit, max(left - STOP_BEFORE_LIMIT, 60) / 60)
        self.deadline, self.checkpoints = time.time() + time_limit * 60, self._checkpoints(cfg, results_dir)
        try:
            return run(cfg, results_dir=results_dir, data_root=data_root, require_checkpoint=require_checkpoint,
                       time_limit=time_limit, progress=False)["run_id"]
        except TimeLimitReached as stop:
            if not stop.progressed:  # requeued, it would stop again at once, for ever
                raise stop.no_epoch_fits(f"a job's {time_limit}", "give the jobs more time (--timeout-min)") from None
            print(stop, flush=True)
            os.kill(os.getpid(), _preempt_signal())  # submitit's handler checkpoints, requeues and exits
            time.sleep(600)

    def checkpoint(self, fields, results_dir, data_root, require_checkpoint, time_limit):
        """Called by submitit in the job, on SLURM's signal before its time limit or a preemption (or on ours):
        the same run again, which resumes from its checkpoint. An error instead when the signal comes past the
        run's time limit and no checkpoint was written since the job began it: its first epoch outlasts the
        job, and requeued it would be stopped in the same epoch again."""
        import submitit

        cfg = _config(fields)
        if time.time() >= self.deadline and self._checkpoints(cfg, results_dir) == self.checkpoints:
            raise JobOutOfTime(f"{run_id(cfg)}: SLURM's time limit came before this job checkpointed one epoch; "
                               "requeued, it would be stopped in the same epoch again: give the jobs more time "
                               "(--timeout-min)")
        return submitit.helpers.DelayedSubmission(SlurmRun(), fields, results_dir, data_root, require_checkpoint,
                                                  time_limit)

    @staticmethod
    def _checkpoints(cfg, results_dir):
        """The run's checkpoint files as they are now, and its stage-1 run's (which it may train first): each
        written anew (atomically, by a rename) is another file. Compared, not read: no clock is involved."""
        def written(path):
            with contextlib.suppress(FileNotFoundError):
                return path.stat().st_ino, path.stat().st_mtime_ns
        return [written(Path(results_dir) / "runs" / run_id(c) / "checkpoint.pt")
                for c in (cfg, base_config(cfg)) if c is not None]


def _slurm_time_left():
    """Seconds left to this SLURM job (squeue's %L), or None outside one or where squeue does not say."""
    job = os.environ.get("SLURM_JOB_ID")  # an array task's own job id
    if not job:
        return None
    try:
        out = subprocess.run(["squeue", "-h", "-j", job, "-o", "%L"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    left = re.fullmatch(r"(?:(\d+)-)?(?:(\d+):)?(\d+):(\d+)", out.stdout.strip())  # [days-][hours:]minutes:seconds
    if left is None:  # UNLIMITED, INVALID, nothing
        return None
    days, hours, minutes, seconds = (int(g or 0) for g in left.groups())
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


def _config(fields):
    """The Config of a job from its fields (`asdict`), as sent to SLURM."""
    return make_config(fields["preset"], **{k: v for k, v in fields.items() if k != "preset"})


def _slurm_queue():
    """{job id: (state, reason)} of this user's jobs in the SLURM queue (array tasks one by one); None when
    squeue fails (a busy or restarting controller, or no squeue): the queue is then unknown, not empty."""
    try:
        out = subprocess.run(["squeue", "--me", "-h", "-r", "-o", "%i %T %r"], capture_output=True, text=True)
    except OSError:  # no squeue here
        return None
    if out.returncode != 0:
        return None
    rows = (line.split(maxsplit=2) for line in out.stdout.splitlines())  # a reason may hold spaces
    return {row[0]: (row[1], row[2]) for row in rows if len(row) == 3}


def run_slurm(jobs, results_dir, *, data_root=None, partition=None, timeout_min=60, gpus_per_job=1,
              cpus_per_job=4, poll=10.0, log=print):
    """Submit the jobs to SLURM with submitit: the stage-1 runs as one job array, then the stage-2 runs that
    continue each as a job (an array for several) that starts once that stage-1 job has succeeded
    (`afterok`); those of a stage-1 job that fails are cancelled and fail with it. Each job has `timeout_min`
    minutes, `gpus_per_job` GPUs and `cpus_per_job` CPUs, and is requeued up to MAX_REQUEUES times at its
    time limit; logs go to <results_dir>/slurm. Waits for every job, showing progress; returns the jobs with
    their states. Stopped while it waits (Ctrl-C, SIGTERM), it cancels the jobs not finished, so that none
    runs on unwatched and the same sweep submits them again."""
    import submitit

    folder = Path(results_dir) / "slurm"
    executor = submitit.AutoExecutor(folder=folder / "%j", cluster="slurm", slurm_max_num_timeout=MAX_REQUEUES)
    executor.update_parameters(timeout_min=timeout_min, cpus_per_task=cpus_per_job, tasks_per_node=1, nodes=1,
                               name="lpnb")
    if gpus_per_job:
        executor.update_parameters(gpus_per_node=gpus_per_job)
    if partition:
        executor.update_parameters(slurm_partition=partition)
    time_limit = timeout_min - STOP_BEFORE_LIMIT / 60  # minutes: stop at an epoch boundary before SLURM's signal
    first = [j for j in jobs if j.after is None]  # the runs that wait for nothing
    by_stage1 = {}  # the stage-2 runs of each stage-1 job
    for job in jobs:
        if job.after is not None:
            by_stage1.setdefault(job.after, []).append(job)
    stage1 = {j.run_id: j for j in first}
    try:
        if first:
            _submit(executor, first, results_dir, data_root, time_limit)
            array = first[0].process.job_id.split("_")[0]
            log(f"sweep: submitted {len(first)} runs as SLURM job array {array}" if len(first) > 1 else
                f"sweep: submitted 1 run as SLURM job {array}")
        for after, group in by_stage1.items():
            _submit(executor, group, results_dir, data_root, time_limit, f"afterok:{stage1[after].process.job_id}")
    except (RuntimeError, KeyboardInterrupt):  # an sbatch failed, or Ctrl-C: those submitted would run unwatched
        for job in jobs:
            if job.process is not None:
                job.process.cancel(check=False)
        raise
    if by_stage1:
        log(f"sweep: submitted {sum(map(len, by_stage1.values()))} runs as {len(by_stage1)} SLURM job(s) or "
            "array(s), each to start once the stage-1 run it continues has succeeded")
    try:
        with _sacct_failure_said_once(log):
            _follow_slurm(jobs, folder, poll, log)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: left queued, its jobs would run on and a new sweep submit them again
        pending = [j for j in jobs if j.state in ("waiting", "running")]
        for job in pending:
            job.process.cancel(check=False)
            job.state, job.error = "failed", "cancelled with the sweep"
        log(f"sweep: cancelled {len(pending)} SLURM job(s): each keeps its last checkpoint, and the same command "
            "submits what is not recorded again")
        raise
    return jobs


def _submit(executor, group, results_dir, data_root, time_limit, dependency=None):
    """Submit `group` as one SLURM job, or one job array for several, that waits for `dependency` (sbatch's)."""
    import submitit

    executor.update_parameters(slurm_additional_parameters={"requeue": True,  # a cluster's default may be not to
                                                            **({"dependency": dependency} if dependency else {})})
    try:
        with executor.batch():
            submitted = [executor.submit(SlurmRun(), asdict(job.cfg), str(results_dir),
                                         None if data_root is None else str(data_root), job.require_checkpoint,
                                         time_limit) for job in group]
    except (submitit.core.utils.FailedJobError, submitit.core.utils.FailedSubmissionError) as e:
        said = (str(e).strip().splitlines() or ["no message"])[-1]
        raise RuntimeError(f"sbatch could not submit the runs ({said}): run the sweep where sbatch reaches the "
                           "cluster's SLURM controller (a login node), or use --executor local") from None
    for job, process in zip(group, submitted):
        job.process = process


@contextlib.contextmanager
def _sacct_failure_said_once(log):
    """On a cluster without accounting, submitit warns at every poll that sacct failed: say it once instead
    (the job states are then read from squeue)."""
    import logging

    said = []

    def once(record):
        if "Bypassing sacct error" not in record.getMessage():
            return True
        if not said:
            said.append(record)
            log("sweep: sacct fails on this cluster (no job accounting?): job states are read from squeue")
        return False
    logger = logging.getLogger("submitit")
    logger.addFilter(once)
    try:
        yield
    finally:
        logger.removeFilter(once)


def _follow_slurm(jobs, folder, poll, log):
    """Poll the SLURM jobs until each is done or failed (with why), showing progress; a job still in the queue
    (a suspended one too) is not over. The jobs waiting for a stage-1 job that failed are cancelled (their
    dependency can no longer be met), as are those SLURM says it will never start (a stage-1 job that wrote its
    result, then did not end COMPLETED)."""
    shown, gone, by_id = None, set(), {j.run_id: j for j in jobs}
    while any(j.state in ("waiting", "running") for j in jobs):
        queue = _slurm_queue()
        for job in jobs:  # the stage-1 runs first
            if job.state not in ("waiting", "running"):
                continue
            state, reason = (queue or {}).get(job.process.job_id, ("GONE", ""))
            stage1_failed = job.after is not None and by_id[job.after].state == "failed"
            if stage1_failed or reason == "DependencyNeverSatisfied":
                job.process.cancel(check=False)
                job.state, job.error = "failed", (
                    f"its stage-1 run {job.after} failed (this SLURM job is cancelled)" if stage1_failed else
                    f"SLURM will never start it (DependencyNeverSatisfied): the job of its stage-1 run {job.after} "
                    f"did not end COMPLETED (see {folder}), so it is cancelled; the same sweep submits it again")
                continue
            listed = queue is not None and state != "GONE"  # pending, running, suspended, requeued: not over,
            if not listed and job.process.done():  # though submitit takes any state outside its few for an end
                try:
                    job.process.result()
                    job.state = "done"
                except Exception as e:  # submitit raises the job's own error, with its traceback
                    job.state, job.error = "failed", f"{type(e).__name__}: {e}"[-3000:]
                continue
            if queue is None or job.process.state != "UNKNOWN":  # UNKNOWN: no accounting (sacct), so the queue's
                state = job.process.state
            if state == "GONE" and job.process.job_id in gone:  # out of the queue twice, and no result
                job.state, job.error = "failed", f"the job left the SLURM queue without a result: see {folder}"
            gone = gone - {job.process.job_id} | ({job.process.job_id} if state == "GONE" else set())
            if state in ("RUNNING", "PENDING", "REQUEUED"):  # a requeued job waits again
                job.state = "running" if state == "RUNNING" else "waiting"
        shown = _show_progress(jobs, shown, poll, log)
