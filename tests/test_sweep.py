"""Sweeps (lpnb.sweep): which runs a table still needs, in which order, on local workers; and runs locked
against being trained twice at once."""
import functools
import json
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
import warnings
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
from conftest import RECORD_REST, smoke, write_timed_record

from lpnb import experiment
from lpnb import sweep as sweep_module
from lpnb.cli import main
from lpnb.config import base_config, make_config, run_id
from lpnb.data import atomic_write, write_standin
from lpnb.sweep import Job, SlurmRun, command, plan, report, run_local, sweep, table_cells

ROOT = Path(__file__).resolve().parents[1]


def touch(results, cfg, *files):
    folder = results / "runs" / run_id(cfg)
    folder.mkdir(parents=True, exist_ok=True)
    record = {"run_id": run_id(cfg), "method": cfg.method, "dataset": cfg.dataset, "preset": cfg.preset,
              "labels": cfg.labels, "split": cfg.split, "test_error": 50.0, "history": [{"stage": 1, "epoch": 0}],
              "device": "cpu", "omega_histograms": [], "confident_mistakes": [], **RECORD_REST}
    for name in files:
        (folder / name).write_text(json.dumps(record) if name == "record.json" else "{}")


def test_table_cells_select_like_the_notebooks():
    assert len(table_cells(2)) == 5 * 4 * 10  # methods x label counts x the paper's 10 splits
    cells = table_cells(2, labels=[1000], methods=["lp", "mt"], splits=[0, 4], preset="cpu")
    assert [(c.labels, c.method, c.split, c.preset) for c in cells] == [
        (1000, "lp", 0, "cpu"), (1000, "lp", 4, "cpu"), (1000, "mt", 0, "cpu"), (1000, "mt", 4, "cpu")]
    assert {c.dataset for c in table_cells(3, splits=1)} == {"cifar100", "miniimagenet"}
    table1 = table_cells(1, splits=1, preset="smoke", unlabeled_size=300)
    assert len(table1) == 6 and {c.unlabeled_size for c in table1} == {300}
    with pytest.raises(ValueError, match="Table 1 has no method"):
        table_cells(1, methods=["mt"])
    with pytest.warns(UserWarning, match=r"Table 2 has no column of 250 labels \(its columns: 500, 1000, 2000, 4000\)"):
        assert [c.labels for c in table_cells(2, labels=[250, 500], methods=["lp"], splits=1)] == [250, 500]
    with pytest.raises(ValueError, match="table must be one of"):
        table_cells(4)
    with pytest.raises(ValueError, match="Table 3 has no dataset"):
        table_cells(3, datasets=["cifar10"])
    for splits in (0, -1, [], [-1]):
        with pytest.raises(ValueError, match="splits must be"):
            table_cells(2, splits=splits)


@pytest.mark.parametrize("flags, message", [
    (["--workers", "-1"], "workers must be a positive integer"), (["--per-gpu", "0"], "per_gpu must be"),
    (["--splits", "0"], "splits must be a count >= 1"), (["--labels", "abc"], "--labels must be comma-separated"),
    (["--splits", "abc"], "--splits must be comma-separated integers, e.g. 3 (a count) or 0,4 (split numbers)"),
    (["--methods", ","], "--methods is empty"), (["--methods="], "--methods is empty"),
    (["--labels", ","], "--labels is empty"),
    (["--timeout-min", "4", "--executor", "slurm"], "timeout_min must be an integer >= 5, got 4 (a job stops"),
    (["--executor", "slurm"], "sbatch is not on this machine's PATH")])
def test_a_bad_sweep_is_refused_before_anything_runs(flags, message, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("lpnb.sweep.shutil.which", lambda name: None)  # no SLURM here
    with pytest.raises(SystemExit) as stop:
        main(["sweep", "--table", "2", "--preset", "smoke", "--results-dir", str(tmp_path), *flags])
    assert stop.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_a_slurm_controller_sbatch_cannot_reach_is_said_in_one_line(tmp_path, monkeypatch, capsys):
    pytest.importorskip("submitit")
    bin_dir = tmp_path / "bin"  # an sbatch that fails as a machine outside the cluster's network does
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text("#!/bin/sh\necho 'sbatch: error: Batch job submission failed: Unable to contact "
                                    "slurm controller (connect failure)' >&2\nexit 1\n")
    (bin_dir / "sbatch").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(SystemExit) as stop:
        main(["sweep", "--table", "2", "--labels", "500", "--methods", "supervised", "--splits", "1", "--preset",
              "smoke", "--results-dir", str(tmp_path / "results"), "--executor", "slurm"])
    assert stop.value.code == 2 and capsys.readouterr().err.endswith(
        "lpnb: error: sbatch could not submit the runs (sbatch: error: Batch job submission failed: Unable to contact "
        "slurm controller (connect failure)): run the sweep where sbatch reaches the cluster's SLURM controller (a "
        "login node), or use --executor local\n")


def fake_slurm(tmp_path, monkeypatch, sbatch="echo 'Submitted batch job 4242'"):
    """sbatch, scancel, sacct and squeue on PATH: a cluster that takes the jobs (scancel's arguments go to the
    file `cancelled`), then never answers about them."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, script in (("sbatch", sbatch), ("scancel", f'echo "$@" >> {tmp_path / "cancelled"}'),
                         ("sacct", "exit 1"), ("squeue", "exit 1")):
        (bin_dir / name).write_text(f"#!/bin/sh\n{script}\n")
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


def test_a_slurm_sweep_stopped_while_it_waits_cancels_its_jobs(tmp_path, monkeypatch):
    """Left queued, the jobs would run on unwatched, and the same command would submit them a second time."""
    pytest.importorskip("submitit")
    fake_slurm(tmp_path, monkeypatch)

    def interrupted(*args):
        raise KeyboardInterrupt
    monkeypatch.setattr(sweep_module, "_show_progress", interrupted)
    cells, lines = table_cells(2, labels=[500], methods=["supervised", "lp"], splits=1, preset="smoke"), []
    with pytest.raises(KeyboardInterrupt):
        sweep(cells, results_dir=tmp_path / "results", executor="slurm", log=lines.append)
    assert (tmp_path / "cancelled").read_text().split() == ["4242", "4242"]  # stage 1, stage 2 (one run each)
    assert lines[0] == "sweep: submitted 1 run as SLURM job 4242"  # not an array
    assert lines[-1] == ("sweep: cancelled 2 SLURM job(s): each keeps its last checkpoint, and the same command "
                         "submits what is not recorded again")


def test_a_slurm_sweep_starts_each_stage_2_job_after_its_own_stage_1_job(tmp_path, monkeypatch):
    """Not after the whole stage-1 array: a stage-2 run would wait for the slowest stage-1 run, and each run
    continuing a failed one would train it again, one after another."""
    pytest.importorskip("submitit")
    fake_slurm(tmp_path, monkeypatch, sbatch=f"cat \"$1\" >> {tmp_path / 'scripts'}; echo '---' >> "
                                             f"{tmp_path / 'scripts'}; echo 'Submitted batch job 4242'")

    def interrupted(*args):
        raise KeyboardInterrupt
    monkeypatch.setattr(sweep_module, "_show_progress", interrupted)
    cells = table_cells(2, labels=[500, 1000], methods=["supervised", "lp", "network"], splits=1, preset="smoke")
    lines = []
    with pytest.raises(KeyboardInterrupt):
        sweep(cells, results_dir=tmp_path / "results", executor="slurm", log=lines.append)
    scripts = (tmp_path / "scripts").read_text().split("---\n")[:-1]
    dependencies = [[line for line in script.splitlines() if "--dependency" in line] for script in scripts]
    assert dependencies == [[], ["#SBATCH --dependency=afterok:4242_0"], ["#SBATCH --dependency=afterok:4242_1"]]
    assert "#SBATCH --array=0-1" in scripts[0] and "#SBATCH --array=0-1" in scripts[1]  # 2 stage-2 runs each
    assert all("#SBATCH --requeue\n" in script for script in scripts)  # where a cluster's default is not to
    assert lines[:2] == ["sweep: submitted 2 runs as SLURM job array 4242",
                         "sweep: submitted 4 runs as 2 SLURM job(s) or array(s), each to start once the stage-1 "
                         "run it continues has succeeded"]
    assert sorted((tmp_path / "cancelled").read_text().split()) == ["4242_0", "4242_0", "4242_0", "4242_1",
                                                                    "4242_1", "4242_1"]
    # every sbatch here answers job 4242: the last array's two submissions are what is left to read
    submissions = [pickle.loads(p.read_bytes()) for p in (tmp_path / "results" / "slurm").rglob("*_submitted.pkl")]
    assert len(submissions) == 2 and {(d.args[-1], d._timeout_min, d._timeout_countdown) for d in submissions} == {
        (60 - sweep_module.STOP_BEFORE_LIMIT / 60, 60, sweep_module.MAX_REQUEUES)}  # the run stops before SLURM's end



def test_a_slurm_submission_that_fails_midway_cancels_the_jobs_submitted_before_it(tmp_path, monkeypatch):
    pytest.importorskip("submitit")
    fake_slurm(tmp_path, monkeypatch, sbatch=f"[ -e {tmp_path / 'once'} ] && {{ echo 'sbatch: error: "
                                             "QOSMaxSubmitJobPerUserLimit' >&2; exit 1; }; "
                                             f"touch {tmp_path / 'once'}; echo 'Submitted batch job 4242'")
    cells = table_cells(2, labels=[500], methods=["supervised", "lp"], splits=1, preset="smoke")
    with pytest.raises(RuntimeError, match=r"sbatch could not submit the runs \(sbatch: error: "
                                           r"QOSMaxSubmitJobPerUserLimit\)"):
        sweep(cells, results_dir=tmp_path / "results", executor="slurm", log=lambda line: None)
    assert (tmp_path / "cancelled").read_text().split() == ["4242"]  # the stage-1 job, submitted before
    (tmp_path / "cancelled").unlink()
    (tmp_path / "once").unlink()
    calls = []

    def interrupted(*args, **kwargs):  # Ctrl-C during the second sbatch
        calls.append(args)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return submit(*args, **kwargs)
    submit = sweep_module._submit
    monkeypatch.setattr(sweep_module, "_submit", interrupted)
    with pytest.raises(KeyboardInterrupt):
        sweep(cells, results_dir=tmp_path / "results", executor="slurm", log=lambda line: None)
    assert (tmp_path / "cancelled").read_text().split() == ["4242"]


class FakeSlurmJob:
    """A submitit job as `_follow_slurm` sees it: done with a result, done with an error, or pending."""
    def __init__(self, job_id, outcome=None):
        self.job_id, self.outcome, self.cancelled = job_id, outcome, False
        self.state = "PENDING"

    def done(self):
        return self.outcome is not None

    def result(self):
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome

    def cancel(self, check=True):
        self.cancelled = True


def test_the_slurm_jobs_of_a_failed_stage_1_run_are_cancelled_and_fail_with_it(tmp_path, monkeypatch):
    cells = table_cells(2, labels=[500, 1000], methods=["supervised", "lp"], splits=1, preset="smoke")
    jobs = plan(cells, tmp_path)
    assert [j.after is None for j in jobs] == [True, True, False, False]
    for job, outcome in zip(jobs, [RuntimeError("out of memory"), "done", None, None]):
        job.process = FakeSlurmJob(job.run_id, outcome)
    jobs[3].process.outcome = "done"  # the stage-2 run of the stage-1 run that succeeded
    polls = []

    def show_progress(jobs, shown, poll, log):
        polls.append(sweep_module.summary(jobs))
        assert len(polls) < 5, f"the sweep still waits for a job that can never start: {polls}"
    monkeypatch.setattr(sweep_module, "_show_progress", show_progress)
    sweep_module._follow_slurm(jobs, tmp_path, 0, lambda line: None)
    assert [j.state for j in jobs] == ["failed", "done", "failed", "done"]
    assert jobs[2].process.cancelled and not jobs[3].process.cancelled
    assert jobs[2].error == f"its stage-1 run {jobs[0].run_id} failed (this SLURM job is cancelled)"
    assert jobs[0].error == "RuntimeError: out of memory"


def test_a_slurm_job_whose_dependency_slurm_calls_never_satisfied_is_cancelled(tmp_path, monkeypatch):
    """Its stage-1 job wrote its result (submitit: done), then did not end COMPLETED (a crash at exit, out of
    memory): `afterok` never starts the stage-2 job, which must not be waited for for ever."""
    cells = table_cells(2, labels=[500], methods=["supervised", "lp"], splits=1, preset="smoke")
    jobs = plan(cells, tmp_path)
    jobs[0].process, jobs[1].process = FakeSlurmJob("7", "done"), FakeSlurmJob("8")
    queue = {"8": ("PENDING", "DependencyNeverSatisfied")}
    monkeypatch.setattr(sweep_module, "_slurm_queue", lambda: queue)
    polls = []
    monkeypatch.setattr(sweep_module, "_show_progress", lambda jobs, *a: polls.append(1) if len(polls) < 3 else
                        pytest.fail(f"the sweep waits for ever: {sweep_module.summary(jobs)}"))
    sweep_module._follow_slurm(jobs, tmp_path, 0, lambda line: None)
    assert [j.state for j in jobs] == ["done", "failed"] and jobs[1].process.cancelled
    assert jobs[1].error.startswith(f"SLURM will never start it (DependencyNeverSatisfied): the job of its stage-1 "
                                    f"run {jobs[0].run_id} did not end COMPLETED")


def test_a_suspended_slurm_job_is_waited_for_not_failed(tmp_path, monkeypatch):
    """submitit takes SUSPENDED for an end, and its missing result for a failure: while squeue lists the job, it
    is not over (its stage-2 job would be cancelled with it)."""
    cells = table_cells(2, labels=[500], methods=["supervised", "lp"], splits=1, preset="smoke")
    jobs = plan(cells, tmp_path)
    jobs[0].process, jobs[1].process = FakeSlurmJob("7", RuntimeError("no result yet")), FakeSlurmJob("8")
    queues = [{"7": ("SUSPENDED", "None"), "8": ("PENDING", "Dependency")}] * 2 + [{}]
    monkeypatch.setattr(sweep_module, "_slurm_queue", lambda: queues[0])

    def show_progress(jobs, *args):
        if len(queues) == 1:  # out of the queue: the jobs' results are read
            assert [j.state for j in jobs] == ["done", "done"]
            return
        assert [j.state for j in jobs] == ["waiting", "waiting"]
        queues.pop(0)
        if len(queues) == 1:  # resumed and done, then its stage-2 job too
            jobs[0].process.outcome = jobs[1].process.outcome = "done"
    monkeypatch.setattr(sweep_module, "_show_progress", show_progress)
    sweep_module._follow_slurm(jobs, tmp_path, 0, lambda line: None)
    assert [j.state for j in jobs] == ["done", "done"] and not jobs[1].process.cancelled


def test_a_requeued_slurm_job_is_shown_waiting_again(tmp_path, monkeypatch):
    [job] = plan(table_cells(2, labels=[500], methods=["supervised"], splits=1, preset="smoke"), tmp_path)
    job.process, seen = FakeSlurmJob("7"), []
    job.process.state = "RUNNING"
    monkeypatch.setattr(sweep_module, "_slurm_queue", lambda: {} if job.process.done() else {"7": ("RUNNING", "")})

    def show_progress(jobs, *args):
        seen.append(job.state)
        job.process.state = "REQUEUED"  # stopped at its time limit, queued again
        job.process.outcome = "done" if len(seen) == 2 else None
    monkeypatch.setattr(sweep_module, "_show_progress", show_progress)
    sweep_module._follow_slurm([job], tmp_path, 0, lambda line: None)
    assert seen[:2] == ["running", "waiting"] and job.state == "done"


def test_no_squeue_is_an_unknown_queue(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    assert sweep_module._slurm_queue() is None


def test_submitits_warning_that_sacct_fails_is_said_once(caplog):
    import logging
    lines, logger = [], logging.getLogger("submitit")
    with sweep_module._sacct_failure_said_once(lines.append), caplog.at_level(logging.WARNING, "submitit"):
        for call in (1, 2, 3):
            logger.warning(f"Call #{call} - Bypassing sacct error boom, status may be inaccurate.")
        logger.warning("another warning")
    assert lines == ["sweep: sacct fails on this cluster (no job accounting?): job states are read from squeue"]
    assert [r.getMessage() for r in caplog.records] == ["another warning"]
    logger.warning("Call #4 - Bypassing sacct error boom, status may be inaccurate.")  # after the sweep: as before
    assert len(caplog.records) == 2


@pytest.mark.skipif(torch.cuda.is_available(), reason="trains the paper preset on a GPU")
def test_a_local_sweep_without_preset_on_a_cpu_asks_for_one(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("lpnb.sweep.sweep", lambda *args, **kwargs: pytest.fail("the sweep started"))
    with pytest.raises(SystemExit) as stop:
        main(["sweep", "--table", "2", "--labels", "500", "--methods", "supervised", "--results-dir", str(tmp_path)])
    assert stop.value.code == 2 and "no --preset given: the default, paper (the full protocol), would train for " \
        "days on this machine's CPU. Pass --preset paper" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
    monkeypatch.undo()
    for cell in table_cells(2, labels=[500], methods=["supervised"], splits=1):
        touch(tmp_path, cell, "record.json")
    main(["sweep", "--table", "2", "--labels", "500", "--methods", "supervised", "--splits", "1", "--results-dir",
          str(tmp_path)])  # every cell recorded: nothing would train, so nothing to refuse
    assert "every cell is recorded already" in capsys.readouterr().out


def test_lpnbs_warnings_take_one_line_and_other_librarys_are_shown_as_python_shows_them(tmp_path, monkeypatch,
                                                                                         capsys):
    monkeypatch.setattr("lpnb.sweep.plan", lambda *args: [])  # nothing to run
    main(["sweep", "--table", "2", "--labels", "250", "--preset", "smoke", "--results-dir", str(tmp_path),
          "--data-root", str(tmp_path)])
    err = capsys.readouterr().err
    assert err.startswith("lpnb: warning: Table 2 has no column of 250 labels") and "UserWarning" not in err
    library = functools.partial(warnings.warn, "a library's", FutureWarning, stacklevel=1)
    monkeypatch.setattr("lpnb.sweep.plan", lambda *args: library() or [])
    with pytest.warns(FutureWarning, match="a library's"):  # shown as Python shows it, with where it came from
        main(["sweep", "--table", "2", "--preset", "smoke", "--results-dir", str(tmp_path), "--data-root",
              str(tmp_path)])
    assert "lpnb: warning" not in capsys.readouterr().err


@pytest.mark.parametrize("flags, message", [(["--preset", "huge"], "--preset must be auto or one of"),
                                            (["--only", "table9"], "--only table9 matches no notebook"),
                                            (["--only"], "--only: expected at least one argument"),
                                            (["--only", "table2", " "], "an empty name matches every notebook")])
def test_reproduce_refuses_a_bad_preset_or_an_empty_selection(flags, message, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["reproduce", *flags])
    assert stop.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize("flags, message", [
    (["--split", "4"], "lpnb sweep takes --splits, a count or split numbers: --splits 4, (with the comma) for split 4 "
                       "alone; --splits 4 is a count of splits from 0"),
    (["--preset", ""], "argument --preset: invalid choice: ''"),  # not the paper preset, unguarded
    (["--partition", "gpu"], "--partition: for --executor slurm, not local"),
    (["--executor", "slurm", "--workers", "2"], "--workers: for --executor local, not slurm")])
def test_a_sweep_flag_is_taken_as_written_and_for_its_executor(flags, message, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("lpnb.sweep.shutil.which", lambda name: "/usr/bin/" + name)
    monkeypatch.setattr("lpnb.sweep.plan", lambda *args: pytest.fail("a bad sweep was planned"))
    with pytest.raises(SystemExit) as stop:
        main(["sweep", "--table", "2", "--preset", "smoke", "--results-dir", str(tmp_path), *flags])
    assert stop.value.code == 2 and message in capsys.readouterr().err


def test_reproduce_passes_the_data_root_without_a_parameters_cell_and_reports_a_failing_notebook(
        tmp_path, monkeypatch, capsys):
    """At the committed preset the notebooks run as committed (the data root as $LPNB_DATA_ROOT); a notebook that
    fails is named with its error, the others still run, and the command fails."""
    import papermill

    from lpnb import cli
    from lpnb.tables import COMMITTED_PRESET

    monkeypatch.delenv("LPNB_DATA_ROOT", raising=False)
    seen = []

    def fake_papermill(source, out, parameters, **kwargs):
        seen.append((Path(source).name, parameters, os.environ.get("LPNB_DATA_ROOT")))
        Path(out).write_text("the notebook as far as it ran")
        if "table2" in source:
            raise papermill.PapermillExecutionError(3, 3, "", "FileNotFoundError", "no cifar10 here", [])
        Path(out).write_text(Path(source).read_text())
    monkeypatch.setattr(papermill, "execute_notebook", fake_papermill)
    monkeypatch.setattr(cli, "NOTEBOOKS", tmp_path)
    for name in ("01_table1", "02_table2", "03_table3"):
        (tmp_path / f"{name}.ipynb").write_text((cli.REPO / "notebooks" / f"{name}.ipynb").read_text())
    (tmp_path / "somewhere").mkdir()
    monkeypatch.chdir(tmp_path)  # a relative data root, passed on as an absolute one
    with pytest.raises(SystemExit) as stop:
        main(["reproduce", "--preset", COMMITTED_PRESET, "--data-root", "somewhere"])
    assert stop.value.code == 2
    assert seen == [(f"{n}.ipynb", {}, str(tmp_path / "somewhere")) for n in ("01_table1", "02_table2", "03_table3")]
    out, err = capsys.readouterr()
    assert "02_table2.ipynb failed in cell 3: FileNotFoundError: no cifar10 here" in out
    assert "1 of 3 notebooks failed: 02_table2.ipynb" in err
    assert "02_table2.ipynb is unchanged" in out  # the committed notebook, not papermill's failed copy
    for name in ("01_table1", "02_table2", "03_table3"):
        assert (tmp_path / f"{name}.ipynb").read_text() == (cli.REPO / "notebooks" / f"{name}.ipynb").read_text()


def test_reproduce_counts_the_runs_and_tables_written_to_the_results_dir_in_use(tmp_path, monkeypatch, capsys):
    import papermill

    from lpnb import cli

    monkeypatch.setenv("LPNB_RESULTS_DIR", str(tmp_path / "mine"))
    monkeypatch.setenv("LPNB_CACHE_DIR", str(tmp_path / "cache"))  # the smoke preset's executed notebooks

    def fake_papermill(source, out, parameters, **kwargs):  # a notebook that trains one run and writes its table
        (tmp_path / "mine" / "runs" / "a-run").mkdir(parents=True)
        (tmp_path / "mine" / "runs" / "a-run" / "record.json").write_text("{}")
        (tmp_path / "mine" / "table2.csv").write_text("cells")
        (tmp_path / "mine" / ".table2.csv.lock").write_text("")  # as tables.write_table leaves it
        Path(out).write_text(Path(source).read_text())
    monkeypatch.setattr(papermill, "execute_notebook", fake_papermill)
    monkeypatch.setattr(cli, "NOTEBOOKS", tmp_path)
    (tmp_path / "02_table2.ipynb").write_text((cli.REPO / "notebooks" / "02_table2.ipynb").read_text())
    main(["reproduce", "--preset", "smoke"])
    out = capsys.readouterr().out
    assert f"{os.path.relpath(tmp_path / 'mine' / 'table2.csv')}\n" in out and ".lock" not in out
    assert f"1 new run records under {os.path.relpath(tmp_path / 'mine' / 'runs')}/" in out


def test_reproduce_at_another_preset_writes_the_toy_figures_apart_too(tmp_path, monkeypatch):
    """Figures 1 and 3 take no preset; at another than the committed one, figures/ is left as committed."""
    import papermill

    from lpnb import cli

    monkeypatch.setenv("LPNB_CACHE_DIR", str(tmp_path / "cache"))
    seen = {}

    def fake_papermill(source, out, parameters, **kwargs):
        seen[Path(source).stem] = parameters
        Path(out).write_text(Path(source).read_text())
    monkeypatch.setattr(papermill, "execute_notebook", fake_papermill)
    monkeypatch.setattr(cli, "NOTEBOOKS", tmp_path)
    for name in ("02_table2", "04_figure1"):
        (tmp_path / f"{name}.ipynb").write_text((cli.REPO / "notebooks" / f"{name}.ipynb").read_text())
    main(["reproduce", "--preset", "smoke"])
    assert seen == {"02_table2": {"preset": "smoke"},
                    "04_figure1": {"figures_dir": str(tmp_path / "cache" / "smoke" / "figures")}}


def test_a_home_folder_flag_or_variable_is_expanded(tmp_path, monkeypatch):
    """A shell leaves ~ as it is in --results-dir=~/x and in quotes: it is the home folder, not a folder named ~."""
    from lpnb.cli import _folder
    from lpnb.data import default_cache_dir

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("LPNB_RESULTS_DIR", "~/results")
    monkeypatch.setenv("LPNB_CACHE_DIR", "~/cache")
    assert _folder("~/mine") == str(tmp_path / "mine")
    assert experiment.default_results_dir() == tmp_path / "results" and default_cache_dir() == tmp_path / "cache"


def test_comma_separated_flags_may_have_spaces():
    from lpnb.cli import _list
    assert _list("supervised, lp", "--methods") == ["supervised", "lp"]
    assert _list("500, 1000", "--labels", int) == [500, 1000]


def test_plan_runs_missing_stage1_first_and_only_what_is_not_recorded(tmp_path):
    lp, network, gtg = (smoke(m) for m in ("lp", "network", "gtg"))
    mt_lp = smoke("mt+lp")
    touch(tmp_path, gtg, "record.json")  # recorded: nothing to do
    touch(tmp_path, smoke("supervised"), "record.json")  # a committed stage-1 record: no checkpoint
    touch(tmp_path, network, "checkpoint.pt")  # a stage-2 run under way needs only stage 1's record
    jobs = plan([lp, network, gtg, mt_lp], tmp_path)
    ids = [j.run_id for j in jobs]
    assert run_id(gtg) not in ids
    assert ids[:2] == [run_id(smoke("supervised")), run_id(smoke("mt"))]  # stage-1 runs first
    by_id = {j.run_id: j for j in jobs}
    assert by_id[run_id(smoke("supervised"))].require_checkpoint  # lp starts from its checkpoint
    assert by_id[run_id(lp)].after == run_id(smoke("supervised")) and by_id[run_id(network)].after is None
    assert by_id[run_id(mt_lp)].after == run_id(smoke("mt"))
    touch(tmp_path, smoke("supervised"), "checkpoint.pt")
    assert {j.run_id for j in plan([lp], tmp_path)} == {run_id(lp)}
    touch(tmp_path, gtg, experiment.RETRAINING)  # its record of an earlier training; a retraining stopped before
    assert plan([gtg], tmp_path) == []  # its first epoch: the record stands
    touch(tmp_path, gtg, "checkpoint.pt")  # a retraining under way
    assert [j.run_id for j in plan([gtg], tmp_path)] == [run_id(gtg)]
    (tmp_path / "runs" / run_id(gtg) / experiment.RETRAINING).unlink()
    record = tmp_path / "runs" / run_id(gtg) / "record.json"
    record.write_text(record.read_text()[:20])  # cut short: named with its remedy, not taken for done
    with pytest.raises(RuntimeError, match=f"record {record} is corrupt .* delete that file alone and run again"):
        plan([gtg], tmp_path)
    base = tmp_path / "runs" / run_id(smoke("supervised")) / "record.json"
    base.write_text(base.read_text()[:20])  # the stage-1 record lp needs: named before any job starts
    with pytest.raises(RuntimeError, match=f"record {base} is corrupt"):
        plan([lp], tmp_path)


def test_a_stage2_run_under_way_needs_no_stage1_run(tmp_path):
    """Its checkpoint keeps the stage-1 record it began from: neither that run's record nor its checkpoint."""
    lp = smoke("lp")
    (tmp_path / "runs" / run_id(lp)).mkdir(parents=True)
    torch.save({"run_id": run_id(lp), "trainer": {}, "base": {"run_id": run_id(smoke("supervised"))}},
               tmp_path / "runs" / run_id(lp) / "checkpoint.pt")
    [job] = plan([lp], tmp_path)
    assert job.run_id == run_id(lp) and job.after is None


def test_a_jobs_command_line_gives_its_run_id(tmp_path, monkeypatch):
    cfg = make_config("smoke", method="mt+lp", labels=50, hist_epochs=(0,), compile=None, lr=0.0, unlabeled_size=None)
    assert cfg.unlabeled_size != make_config("smoke").unlabeled_size  # None (all) is not the preset's value
    [job] = [j for j in plan([cfg], tmp_path) if j.run_id == run_id(cfg)]
    seen = {}

    class Called(Exception):
        pass

    def fake_run(cfg, **kwargs):
        seen.update(cfg=cfg, **kwargs)
        raise Called
    monkeypatch.setattr("lpnb.cli.run", fake_run)
    with pytest.raises(Called):
        main(command(job, tmp_path)[3:])  # python -m lpnb.cli | run ...
    assert run_id(seen["cfg"]) == run_id(cfg) and seen["results_dir"] == str(tmp_path)
    assert seen["require_checkpoint"] is False and (seen["cfg"].lr, seen["cfg"].unlabeled_size) == (0.0, None)
    [stage1] = [j for j in plan([cfg], tmp_path) if j.run_id != run_id(cfg)]  # Mean Teacher, for mt+lp to continue
    with pytest.raises(Called):
        main(command(stage1, tmp_path)[3:])
    assert stage1.require_checkpoint and seen["require_checkpoint"] is True and seen["cfg"].method == "mt"


@pytest.mark.parametrize("flag, splits", [("2", [0, 1]), ("4,", [4]), ("0,4", [0, 4])])
def test_sweep_splits_are_a_count_or_with_a_comma_split_numbers(tmp_path, monkeypatch, flag, splits):
    seen = []

    class Called(Exception):
        pass

    def fake_sweep(cells, **kwargs):
        seen.extend(cells)
        raise Called
    monkeypatch.setattr("lpnb.sweep.sweep", fake_sweep)
    with pytest.raises(Called):
        main(["sweep", "--table", "2", "--labels", "500", "--methods", "supervised", "--splits", flag, "--preset",
              "smoke", "--results-dir", str(tmp_path)])
    assert [c.split for c in seen] == splits


def test_workers_take_the_gpus_this_process_may_use_one_each_first(tmp_path, monkeypatch):
    monkeypatch.setattr("torch.cuda.device_count", lambda: 2)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    monkeypatch.setattr(sweep_module, "command", lambda *args: [sys.executable, "-c", ""])
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)))
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    seen = []
    popen = subprocess.Popen
    monkeypatch.setattr(subprocess, "Popen", lambda cmd, env, **kw: seen.append(
        (env["CUDA_VISIBLE_DEVICES"], env["OMP_NUM_THREADS"])) or popen(cmd, env=env, **kw))
    jobs = [Job(smoke("supervised", split=s, device="auto")) for s in (0, 1)]
    lines = []
    run_local(jobs, tmp_path, workers=2, per_gpu=2, poll=0.01, log=lines.append)
    assert sorted(seen) == [("2", "8"), ("3", "8")]  # each its GPU, and half the cores (not a thread per core each)
    assert lines[0] == "sweep: 2 runs to do, 2 at a time on GPUs 2, 3 (8 threads each)"
    with pytest.raises(ValueError, match=r"--workers 5 is more than the 2 visible GPU\(s\) x --per-gpu 2: give "
                       r"--workers 4 or fewer, or --per-gpu 3"):
        run_local(jobs, tmp_path, workers=5, per_gpu=2, poll=0.01, log=lines.append)
    numbered = [Job(smoke("supervised", split=s, labels=30, device="cuda:1")) for s in (0, 1)]
    with pytest.raises(ValueError, match=r"--device cuda:1: each local worker sees one GPU, its own, as 'cuda'"):
        run_local(numbered, tmp_path, workers=2, per_gpu=2, poll=0.01, log=lines.append)
    assert len(seen) == 2, "a job was started"


def test_workers_of_runs_on_the_cpu_take_no_gpu_and_are_not_limited_by_the_gpus(tmp_path, monkeypatch):
    monkeypatch.setattr("torch.cuda.device_count", lambda: 1)
    monkeypatch.setattr(sweep_module, "command", lambda *args: [sys.executable, "-c", ""])
    seen, popen = [], subprocess.Popen
    monkeypatch.setattr(subprocess, "Popen", lambda cmd, env, **kw: seen.append(env.get("CUDA_VISIBLE_DEVICES"))
                        or popen(cmd, env=env, **kw))
    jobs, lines = [Job(smoke("supervised", split=s, labels=40)) for s in (0, 1)], []  # --device cpu
    run_local(jobs, tmp_path, workers=2, poll=0.01, log=lines.append)
    assert lines[0].startswith("sweep: 2 runs to do, 2 at a time on the CPU") and seen == [None, None]
    assert [j.state for j in jobs] == ["done", "done"]


def test_workers_on_the_cpu_share_its_cores_unless_omp_num_threads_is_set(tmp_path, monkeypatch):
    monkeypatch.setattr("torch.cuda.device_count", lambda: 0)
    cores = os.cpu_count()  # torch in the worker uses no more threads than the machine has
    monkeypatch.setattr(os, "cpu_count", lambda: 64)  # the machine's; this process may use 8 of them (affinity)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    threads = [sys.executable, "-c", "import torch; print(torch.get_num_threads())"]  # what the worker's torch uses
    monkeypatch.setattr(sweep_module, "command", lambda *args: threads)
    for workers, expected, omp in ((3, "2", None), (16, "1", None), (1, "1", "1")):  # the user's choice kept: 1, not 8
        if omp:
            monkeypatch.setenv("OMP_NUM_THREADS", omp)
        jobs, lines = [Job(smoke("supervised", split=s, labels=10 + workers)) for s in (0, 1)], []
        run_local(jobs, tmp_path, workers=workers, poll=0.01, log=lines.append)
        assert lines[0] == f"sweep: 2 runs to do, {workers} at a time on the CPU" + (
            "" if omp else f" ({expected} threads each)")
        assert [j.log_path.read_text().splitlines()[-1] for j in jobs] == [str(min(int(expected), cores))] * 2


def test_a_stopped_local_sweep_stops_its_workers(tmp_path, monkeypatch):
    monkeypatch.setattr(sweep_module, "command", lambda *args: [sys.executable, "-c", "import time; time.sleep(60)"])
    jobs = [Job(smoke("supervised"))]

    def interrupt(line):  # Ctrl-C (or SIGTERM) once the worker runs
        if "1 running" in line:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        run_local(jobs, tmp_path, poll=0.01, log=interrupt)
    assert jobs[0].process.poll() is not None and jobs[0].state == "failed"


def test_ctrl_c_while_a_worker_starts_still_stops_that_worker(tmp_path, monkeypatch):
    monkeypatch.setattr(sweep_module, "command", lambda *args: [sys.executable, "-c", "import time; time.sleep(60)"])
    started, popen = [], subprocess.Popen

    def start_then_interrupt(*args, **kwargs):  # Ctrl-C just after the process exists, before the sweep knows it
        started.append(popen(*args, **kwargs))
        os.kill(os.getpid(), signal.SIGINT)
        return started[-1]
    monkeypatch.setattr(subprocess, "Popen", start_then_interrupt)
    jobs = [Job(smoke("supervised"))]
    try:
        with pytest.raises(KeyboardInterrupt):
            run_local(jobs, tmp_path, poll=0.01, log=lambda line: None)
        assert started[0].poll() is not None and jobs[0].state == "failed", "the worker was left running"
    finally:
        started[0].kill()
        started[0].wait()


def test_sigterm_stops_a_local_sweep_and_its_workers_and_kills_it_as_lpnb_run_dies(tmp_path):
    """SIGTERM to `lpnb sweep` stops its workers and ends it by SIGTERM (143, as `lpnb run`), not as Ctrl-C."""
    root = write_standin(tmp_path / "data", train_per_class=60)
    pids = tmp_path / "pids"
    worker = f"import os, time; open({str(pids)!r}, 'a').write(f'{{os.getpid()}} '); time.sleep(60)"
    script = (f"import sys; from lpnb import cli, sweep; sweep.command = lambda *a: [sys.executable, '-c', "
              f"{worker!r}]; cli.main(sys.argv[1:])")
    proc = subprocess.Popen([sys.executable, "-c", script, "sweep", "--table", "2", "--preset", "smoke", "--labels",
                             "500", "--methods", "supervised", "--splits", "1", "--results-dir", str(tmp_path / "r"),
                             "--data-root", str(root)], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not pids.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert pids.exists(), proc.stderr.read() if proc.poll() is not None else "no worker started within 120 s"
    proc.terminate()
    assert proc.wait(timeout=60) == -15 and "lpnb: stopped by SIGTERM" in proc.stderr.read()
    worker = int(pids.read_text().split()[0])
    with pytest.raises(ProcessLookupError):  # terminated and reaped by the sweep
        os.kill(worker, 0)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_sweep_killed_by_sigkill_takes_its_workers_with_it(tmp_path):
    pids = tmp_path / "pids"
    worker = f"import os, time; open({str(pids)!r}, 'a').write(f'{{os.getpid()}} '); time.sleep(60)"
    script = (f"import sys; from lpnb import sweep; from conftest import smoke; sweep.command = lambda *a: "
              f"[sys.executable, '-c', {worker!r}]; sweep.run_local([sweep.Job(smoke('supervised'))], "
              f"{str(tmp_path)!r}, poll=0.01, log=print)")
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT / "tests", stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"))
    deadline = time.monotonic() + 60
    while not pids.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert pids.exists(), proc.stderr.read() if proc.poll() is not None else "no worker started within 60 s"
    stat = Path(f"/proc/{pids.read_text().split()[0]}/stat")

    def running():  # not gone, nor a zombie (where nothing reaps it)
        try:
            return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except FileNotFoundError:
            return False
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 30  # not left to sleep its 60 s
    while running() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not running(), "the worker outlived the sweep"


def test_a_failing_squeue_is_no_empty_queue(monkeypatch):
    monkeypatch.setattr(subprocess, "run", lambda *a, **kw: subprocess.CompletedProcess(a, 1, "", "timeout"))
    assert sweep_module._slurm_queue() is None
    monkeypatch.setattr(subprocess, "run", lambda *a, **kw: subprocess.CompletedProcess(
        a, 0, "12_0 RUNNING None\n13_1 PENDING DependencyNeverSatisfied\n14 PENDING launch failed requeued held\n", ""))
    assert sweep_module._slurm_queue() == {"12_0": ("RUNNING", "None"), "13_1": ("PENDING", "DependencyNeverSatisfied"),
                                           "14": ("PENDING", "launch failed requeued held")}


def test_a_slurm_job_where_no_epoch_fits_fails_instead_of_requeueing(tmp_path, monkeypatch):
    root = write_standin(tmp_path / "data")
    now = [0.0]
    monkeypatch.setattr(experiment, "clock", lambda: now[0])
    train_epoch = experiment.Trainer.train_epoch
    monkeypatch.setattr(experiment.Trainer, "train_epoch",
                        lambda self, *a, **kw: now.__setitem__(0, now[0] + 60) or train_epoch(self, *a, **kw))
    cfg = smoke("supervised", epochs_stage1=3)
    with pytest.raises(experiment.TimeLimitReached):  # one minute-long epoch in the history
        experiment.run(cfg, data_root=root, results_dir=tmp_path, progress=False, time_limit=1.5)
    monkeypatch.setattr(os, "kill", lambda *a: pytest.fail("requeued"))
    with pytest.raises(RuntimeError, match="Not one epoch fits in a job's 0.5 minutes.*--timeout-min") as error:
        SlurmRun()(asdict(cfg), str(tmp_path), str(root), False, 0.5)
    assert "again to continue" not in str(error.value)



def test_a_slurm_job_whose_first_epoch_outlasts_it_fails_instead_of_being_requeued_for_ever(tmp_path):
    """SLURM's signal before its time limit (or a preemption) calls `checkpoint` in the job: the same run again,
    unless the run's time is up and not one epoch was checkpointed in the job."""
    import submitit
    cfg = smoke("lp")
    fields, folder = asdict(cfg), tmp_path / "runs" / run_id(cfg)
    job = SlurmRun()  # a signal before the run began (a preemption at once): requeued
    assert isinstance(job.checkpoint(fields, str(tmp_path), None, False, 1.0), submitit.helpers.DelayedSubmission)
    job.deadline, job.checkpoints = time.time() - 1, SlurmRun._checkpoints(cfg, tmp_path)
    with pytest.raises(RuntimeError, match=f"{run_id(cfg)}: SLURM's time limit came before this job checkpointed "
                       r"one epoch; .* give the jobs more time \(--timeout-min\)"):
        job.checkpoint(fields, str(tmp_path), None, False, 1.0)
    job.deadline = time.time() + 60  # a preemption before the run's time is up: requeued
    assert isinstance(job.checkpoint(fields, str(tmp_path), None, False, 1.0), submitit.helpers.DelayedSubmission)
    job.deadline = time.time() - 1
    folder.mkdir(parents=True)
    (folder / "checkpoint.pt").write_bytes(b"epoch 1")  # an epoch checkpointed since the job began the run
    requeued = job.checkpoint(fields, str(tmp_path), None, False, 1.0)
    assert requeued.args == (fields, str(tmp_path), None, False, 1.0)
    assert requeued.function.deadline == float("inf")  # the next job's deadline is its own
    job.checkpoints = SlurmRun._checkpoints(cfg, tmp_path)  # then the next job, with the same checkpoint
    with pytest.raises(RuntimeError, match="give the jobs more time"):
        job.checkpoint(fields, str(tmp_path), None, False, 1.0)
    base = tmp_path / "runs" / run_id(base_config(cfg))
    base.mkdir(parents=True)
    (base / "checkpoint.pt").write_bytes(b"stage 1, epoch 1")  # or its stage-1 run's
    assert isinstance(job.checkpoint(fields, str(tmp_path), None, False, 1.0), submitit.helpers.DelayedSubmission)


def test_a_slurm_job_out_of_time_in_a_checkpoints_write_says_so_not_disk_full(tmp_path):
    """The error comes from submitit's signal handler, wherever the run is: in a checkpoint's write it passes
    through as it is, the checkpoint as it was kept, not taken for a full disk's RuntimeError."""
    cfg = smoke("lp")
    job, path = SlurmRun(), tmp_path / "runs" / run_id(cfg) / "checkpoint.pt"
    job.deadline, job.checkpoints = time.time() - 1, SlurmRun._checkpoints(cfg, tmp_path)

    def signalled(f):
        f.write(b"half a checkpoint")
        job.checkpoint(asdict(cfg), str(tmp_path), None, False, 1.0)
    with pytest.raises(sweep_module.JobOutOfTime, match=r"^[^\n]*give the jobs more time \(--timeout-min\)$"):
        atomic_write(path, signalled)
    assert not path.parent.exists() or list(path.parent.iterdir()) == []


def test_a_slurm_run_stopped_at_its_time_limit_signals_itself_as_submitit_expects(tmp_path, monkeypatch):
    import submitit
    stop = experiment.TimeLimitReached("r", 2, 3, 10)  # an epoch checkpointed: requeued, it goes on
    monkeypatch.setattr(experiment, "run", lambda cfg, **kw: (_ for _ in ()).throw(stop))
    sent = []
    monkeypatch.setattr(os, "kill", lambda pid, sig: sent.append((pid, sig)))
    monkeypatch.setattr(time, "sleep", lambda s: None)
    for name, expected in (("USR2", signal.SIGUSR2), ("USR1", signal.SIGUSR1)):  # $SUBMITIT_PREEMPT_SIGNAL
        monkeypatch.setattr(submitit.JobEnvironment, "USR_SIG", name)
        SlurmRun()(asdict(smoke("lp")), str(tmp_path), None, False, 5.0)
        assert sent.pop() == (os.getpid(), expected)
    stop = experiment.TimeLimitReached("r", None, 0, 0, trained=False, progressed=True)  # its time went waiting for
    SlurmRun()(asdict(smoke("lp")), str(tmp_path), None, False, 5.0)                    # another's lock: requeued
    assert sent.pop() == (os.getpid(), signal.SIGUSR1)


@pytest.mark.parametrize("left, seconds", [("9:30", 570), ("1:02:03", 3723), ("1-00:00:10", 86410),
                                           ("UNLIMITED", None), ("", None)])
def test_a_slurm_job_times_its_run_by_slurms_clock(tmp_path, monkeypatch, left, seconds):
    """Its start-up (a slow container, cold imports) has taken some of the job's time: the run stops 3 minutes
    before SLURM's limit as squeue gives it, not `time_limit` minutes after the job began it."""
    calls, limits = [], []
    monkeypatch.setattr(subprocess, "run", lambda cmd, **kw: calls.append(cmd) or subprocess.CompletedProcess(
        cmd, 0, left + "\n", ""))
    monkeypatch.setattr(experiment, "run", lambda cfg, **kw: limits.append(kw["time_limit"]) or {"run_id": "r"})
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    assert sweep_module._slurm_time_left() is None and not calls  # not in a SLURM job
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    assert sweep_module._slurm_time_left() == seconds and calls == [["squeue", "-h", "-j", "77", "-o", "%L"]]
    job, before = SlurmRun(), time.time()
    assert job(asdict(smoke("supervised")), str(tmp_path), None, False, 7.0) == "r"
    expected = 7.0 if seconds is None else min(7.0, (seconds - 180) / 60)  # 9:30 left: 6.5 minutes
    assert limits == [expected] and before + expected * 60 <= job.deadline <= time.time() + expected * 60


@pytest.mark.slow
def test_a_smoke_sweep_with_two_workers_records_every_cell_stage_1_first(tmp_path):
    root = write_standin(tmp_path / "data", train_per_class=80, test_per_class=10)
    cells = table_cells(1, splits=1, preset="smoke", device="cpu", test_size=100)
    lines = []
    jobs = sweep(cells, results_dir=tmp_path / "results", data_root=root, workers=2, log=lines.append)
    assert report(jobs) and len(jobs) == 7 and all(j.state == "done" for j in jobs)
    base = next(j for j in jobs if j.after is None)
    assert all(j.started >= base.ended for j in jobs if j.after)  # stage 2 after its stage 1
    assert max(sum(j.started <= t < j.ended for j in jobs) for t in (j.started for j in jobs)) == 2  # 2 at a time
    assert lines[0].startswith("sweep: 7 runs to do, 2 at a time on the CPU (")
    assert lines[-1].startswith("sweep: 7 done")
    for cfg in cells:
        record = json.loads((tmp_path / "results" / "runs" / run_id(cfg) / "record.json").read_text())
        assert record["base_run"] == base.run_id and record["base_run_finished"]
    assert sweep(cells, results_dir=tmp_path / "results", data_root=root, log=lines.append) == []
    assert lines[-1] == "sweep: every cell is recorded already"


@pytest.mark.slow
def test_a_worker_killed_by_a_signal_is_reported_with_the_signal(tmp_path, monkeypatch):
    monkeypatch.setattr(sweep_module, "command", lambda *args: [
        sys.executable, "-c", "import os, signal; print('epoch 3 of 180'); os.kill(os.getpid(), signal.SIGKILL)"])
    jobs = [Job(smoke("supervised"))]
    log = tmp_path / "runs" / jobs[0].run_id / "sweep.log"
    log.parent.mkdir(parents=True)
    log.write_text(f"{sweep_module.ATTEMPT}2026-01-01 00:00:00\nan earlier attempt: test error 40.00%\n")
    run_local(jobs, tmp_path, poll=0.01, log=lambda line: None)
    assert jobs[0].state == "failed" and jobs[0].error == (
        "epoch 3 of 180\nkilled by SIGKILL (out of memory?): its epochs finished are checkpointed, and the same "
        "sweep resumes it")
    assert "earlier attempt" in log.read_text()  # kept in the log, not quoted as this attempt's failure
    with log.open("a") as f:  # another sweep on the same folder started an attempt after this sweep's
        f.write(f"{sweep_module.ATTEMPT}2026-01-01 00:00:01 by sweep 1\nwaiting for the other process\n")
    assert sweep_module._tail(log) == "epoch 3 of 180\nwaiting for the other process"
    with log.open("a") as f:  # this process's sweep run again (a notebook kernel): its latest attempt is shown
        f.write(f"{sweep_module.ATTEMPT}2026-01-01 00:00:02{sweep_module._by_this_sweep()}\nthe second attempt\n")
    assert sweep_module._tail(log) == "the second attempt"
    assert sweep_module._why(-40, tmp_path / "no log").endswith("killed by signal 40: its epochs finished are "
                                                                "checkpointed, and the same sweep resumes it")


def test_a_failed_run_fails_the_runs_after_it_and_the_command(tmp_path, capsys):
    args = ["sweep", "--table", "2", "--labels", "500", "--methods", "supervised,lp", "--splits", "1", "--preset",
            "smoke", "--lr", "1e30", "--data-root", str(write_standin(tmp_path, train_per_class=60)),
            "--results-dir", str(tmp_path / "results")]
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 1
    out = capsys.readouterr().out
    assert "sweep: 0 done, 0 running, 0 waiting, 2 failed" in out
    assert "diverged: the stage-1 training loss of epoch 0 is nan" in out
    assert "its stage-1 run cifar10-500-supervised-split0-smoke" in out


def test_a_sweep_checks_the_labeled_splits_before_anything_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(subprocess, "Popen", lambda *a, **kw: pytest.fail("a run started with a bad split"))
    args = ["sweep", "--table", "2", "--methods", "supervised", "--preset", "smoke", "--data-root",
            str(write_standin(tmp_path)), "--results-dir", str(tmp_path / "results")]
    with pytest.raises(SystemExit) as exit_:
        main([*args, "--labels", "55"])
    assert exit_.value.code == 2
    assert "labels (--labels) = 55 must be a positive multiple of the number of classes (10) for a class-balanced " \
        "split drawn here, e.g. 60" in capsys.readouterr().err
    assert not (tmp_path / "results" / "runs").exists()
    monkeypatch.setattr(sweep_module, "run_local", lambda jobs, *args, **kwargs: jobs)
    write_timed_record(tmp_path / "results", make_config("smoke", method="supervised", labels=50, split=1), 90,
                       device="NVIDIA H200")
    lines = []
    sweep([make_config("smoke", method="supervised", labels=50)], results_dir=tmp_path / "results",
          data_root=tmp_path, log=lines.append)
    assert lines == ["sweep: the runs to do, one after another: about 1.5 h, judged from like runs recorded on "
                     "NVIDIA H200"]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.warns(UserWarning, match="training at the paper preset .* on a CPU: a full run takes days"):
        sweep([make_config("paper", method="supervised", labels=50)], results_dir=tmp_path / "results",
              data_root=tmp_path)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # on a GPU, or at a smaller preset: no warning
        for cfg in (make_config("paper", method="supervised", labels=50), smoke("supervised")):
            sweep([cfg], results_dir=tmp_path / "results", data_root=tmp_path)
    with pytest.warns(UserWarning, match="training at the paper preset"):  # a GPU here, but the CPU asked for
        sweep([make_config("paper", method="supervised", labels=50, device="cpu")],
              results_dir=tmp_path / "results", data_root=tmp_path)


def test_a_sweep_without_its_data_says_so_once_before_anything_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(subprocess, "Popen", lambda *a, **kw: pytest.fail("a run started without its data"))
    args = ["sweep", "--table", "2", "--labels", "500", "--methods", "supervised,lp", "--preset", "smoke",
            "--data-root", str(tmp_path), "--results-dir", str(tmp_path / "results")]
    with pytest.raises(SystemExit) as exit_:
        main(args)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("no cifar10 data found") == 1 and "--datasets" in err
    for method in ("supervised", "lp"):  # every cell recorded: nothing needs the data
        touch(tmp_path / "results", make_config("smoke", method=method, labels=500), "record.json")
    main(args)
    assert "sweep: every cell is recorded already" in capsys.readouterr().out


HOLD_AT_EPOCH_1 = """import os, time
from pathlib import Path
import lpnb.train
train_epoch = lpnb.train.Trainer.train_epoch
def held(self, stage, epoch, *args, **kwargs):  # epoch 1 waits for the test to let it go
    release = Path(os.environ["LPNB_TEST_RELEASE"])
    if epoch == 1:
        release.with_suffix(".held").touch()
    while epoch == 1 and not release.exists():
        time.sleep(0.05)
    return train_epoch(self, stage, epoch, *args, **kwargs)
lpnb.train.Trainer.train_epoch = held
"""


@pytest.mark.slow
def test_a_run_is_never_trained_twice_at_once(env, tmp_path, monkeypatch, capsys):
    """A second process (here: this one) asking for a run that another is training waits for it and reads its
    record instead of training it again. The other is held at its second epoch until this one waits."""
    root, results = env
    cfg = smoke("supervised", epochs_stage1=3)
    (tmp_path / "hook").mkdir()
    (tmp_path / "hook" / "sitecustomize.py").write_text(HOLD_AT_EPOCH_1)
    release = tmp_path / "release"
    other = subprocess.Popen(command(plan([cfg], results)[0], results, root), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": f"{tmp_path / 'hook'}:{ROOT}",
                                                          "LPNB_TEST_RELEASE": str(release)})
    ckpt = results / "runs" / run_id(cfg) / "checkpoint.pt"
    deadline = time.time() + 300
    while not ckpt.exists() and other.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert other.poll() is None, other.stderr.read().decode()[-2000:]
    monkeypatch.setattr(experiment.Trainer, "train_epoch", lambda *a, **k: pytest.fail("trained a second time"))
    monkeypatch.setattr(experiment, "build_trainer", lambda *a, **k: pytest.fail("resumed the finished run"))
    found = {}
    this = threading.Thread(target=lambda: found.update(record=experiment.run(cfg, data_root=root,
                                                                              results_dir=results, progress=False)))
    this.start()
    said = ""
    while "waiting for it" not in said and time.time() < deadline:
        said += capsys.readouterr().err
        time.sleep(0.05)
    assert (tmp_path / "release.held").exists() and other.poll() is None  # held: this one waited while it trained
    release.touch()
    this.join(300)
    assert "another process is training this run; waiting for it" in said
    assert other.wait() == 0 and found["record"]["history"][-1]["epoch"] == 2
    assert found["record"] == json.loads((results / "runs" / run_id(cfg) / "record.json").read_text())  # the other's
