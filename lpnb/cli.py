"""Command line: `lpnb run ...` trains one experiment; `lpnb sweep ...` the cells of a table not recorded yet, on
local workers or SLURM; `lpnb reproduce` re-executes every notebook; `lpnb status` prints the README's status table.

Every field of `lpnb.config.Config` is a flag (`--epochs-stage2 30`, `--use-omega false`);
values are read as JSON where they parse (numbers, true/false, null, lists; Python's True/False/None
too), else as strings; a value of the wrong type or range for its field is an error.
"""
import argparse
import dataclasses
import functools
import json
import math
import numbers
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

from lpnb import data as lpdata
from lpnb.config import DATASET_DEFAULTS, METHODS, PRESETS, Config, make_config
from lpnb.experiment import REPO, TimeLimitReached, default_results_dir, load_record, run, trains_on_cpu
from lpnb.notebook import notebook_defaults, output_dir
from lpnb.tables import COMMITTED_PRESET, data_said, readme_with_status, status_table

NOTEBOOKS = REPO / "notebooks"
NONE_MEANS = {"unlabeled_size": "all", "test_size": "all", "lr_rampdown_epochs": "210/180 of a stage's epochs",
              "hist_epochs": "(0, T'/2)", "amp": "on for CUDA", "channels_last": "on for CUDA",
              "compile": "reduce-overhead for CUDA", **dict.fromkeys(  # lpnb.config.DATASET_DEFAULTS
                  ("lr", "batch_size", "labeled_batch_size", "arch"), "the paper's for the dataset")}
CHOICES = {"dataset": " | ".join(DATASET_DEFAULTS), "method": " | ".join(METHODS), "arch": "cnn13 | resnet18",
           "knn": "exact | approx", **dict.fromkeys(("use_omega", "use_zeta", "nesterov"), "true | false")}
SELECTED = ("preset", "dataset", "labels", "split", "method", "use_omega", "use_zeta")  # a sweep's cells set these
PAPER_NOT_GIVEN = ("no --preset given: the default, paper (the full protocol), would train for days on this machine's "
                   "CPU. Pass --preset paper to train it anyway, or --preset cpu (minutes, a small version of the "
                   "protocol)")
TIME_LIMIT_EXIT = 3  # `lpnb run --time-limit`: stopped at an epoch boundary, checkpoint written; run it again


def _value(text):
    """A flag's value: JSON where it parses (3, 0.5, [0, 7], true), Python's True/False/None/nan/inf too, none,
    numbers separated by commas as a list (0,7), else the string."""
    python_literals = {"True": True, "False": False, "None": None, "none": None}
    if text in python_literals:
        return python_literals[text]
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    for number in (int, float):  # int: 0100 and 1_000 (not JSON); float: Python's nan and inf (JSON's NaN, Infinity)
        try:
            return number(text)
        except ValueError:
            pass
    if "," in text:  # 0,7 as [0, 7], as --labels and --splits read their lists
        parts = [_value(part) for part in text.split(",")]
        if all(isinstance(p, numbers.Number) and not isinstance(p, bool) for p in parts):
            return parts
    return text


def _folder(text):
    """A --data-root or --results-dir: not empty (an empty path would mean the current folder), not a file, with
    ~ expanded (a shell leaves it in --results-dir=~/x)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path: give a folder, or leave the flag out for the default")
    path = os.path.expanduser(text)
    if os.path.isfile(path):
        run = Path(path).absolute().parent
        if run.parent.name == "runs":  # a run's record or checkpoint: a results folder holds runs/<run-id>/
            raise argparse.ArgumentTypeError(f"{text} is a file of run {run.name}: give the results folder that "
                                             f"holds runs/ ({os.path.relpath(run.parent.parent)})")
        raise argparse.ArgumentTypeError(f"{text} is a file: give the folder that holds it "
                                         f"({os.path.dirname(path) or '.'})")
    return path


def _minutes(text):
    """A --time-limit: a positive number of minutes."""
    try:
        minutes = float(text)
    except ValueError:
        minutes = math.nan
    if not minutes > 0:
        raise argparse.ArgumentTypeError(f"a positive number of minutes, e.g. 8.5; got {text!r}")
    return minutes


def _overrides(args, skip=("preset",)):
    """The Config fields given as flags (`--unlabeled-size null` too: None is a value of its own)."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(Config)
            if f.name not in skip and hasattr(args, f.name)}


def _config_flags(parser, skip=("preset",)):
    """Every field of Config as a flag (`--epochs-stage2 30`), read by `_value`; a flag not given sets nothing."""
    for f in dataclasses.fields(Config):
        if f.name not in skip:
            parser.add_argument("--" + f.name.replace("_", "-"), dest=f.name, type=_value, default=argparse.SUPPRESS,
                                help=(f"{CHOICES[f.name]}; " if f.name in CHOICES else "")
                                + f"default: the preset's, else {f.default!r}"
                                + (f" ({NONE_MEANS[f.name]})" if f.name in NONE_MEANS else ""))


def _run(args):
    cfg = make_config(args.preset or "paper", **_overrides(args))
    if args.preset is None and trains_on_cpu(cfg) and load_record(cfg, args.results_dir) is None:
        raise ValueError(PAPER_NOT_GIVEN)
    try:
        record = run(cfg, data_root=args.data_root, results_dir=args.results_dir, force=args.force,
                     time_limit=args.time_limit, require_checkpoint=args.require_checkpoint)
    except TimeLimitReached as stop:
        if not stop.progressed:
            raise stop.no_epoch_fits(f"--time-limit {args.time_limit}", "give it more time") from None
        print(stop, flush=True)
        sys.exit(TIME_LIMIT_EXIT)
    top5 = f", top-5 {record['test_error_top5']:.2f}%" if cfg.dataset in ("cifar100", "miniimagenet") else ""
    print(f"{record['run_id']}: test error {record['test_error']:.2f}%{top5} ({record['n_labeled']} labeled, "
          f"{record['n_unlabeled']} unlabeled, {record['n_test']} test images; {record['device']}; "
          f"{data_said(record)})")


class NotebookFailed(RuntimeError):
    """A cell of a notebook raised (`execute_notebook`)."""


def execute_notebook(source, out, parameters=None, *, log_output=False):
    """Execute a notebook with papermill (from the repository root, as `lpnb reproduce` does), then drop what
    changes from one execution to the next (papermill's and the kernel's timestamps and durations), so that
    re-executing a notebook on the same records writes the same bytes. A cell that raises, or a kernel that
    dies, raises `NotebookFailed`, naming it and the error."""
    try:
        import nbformat
        import papermill
    except ImportError as e:
        raise RuntimeError(f"executing notebooks needs papermill ({e}): pip install -e '.[notebooks]'") from e

    accepted = papermill.inspect_notebook(str(source))
    executed = Path(tempfile.mkdtemp(prefix="lpnb-notebook-")) / Path(out).name  # `out` changes only on success
    try:
        papermill.execute_notebook(str(source), str(executed), cwd=str(REPO), log_output=log_output,
                                   parameters={k: v for k, v in (parameters or {}).items() if k in accepted},
                                   progress_bar=sys.stderr.isatty())
    except papermill.PapermillExecutionError as e:
        raise NotebookFailed(f"{Path(source).name} failed in cell {e.exec_count}: {e.ename}: {e.evalue} "
                             f"(the traceback is in {executed}; {out} is unchanged)") from None
    except BaseException as e:  # the kernel died (out of memory?), a cell timed out, Ctrl-C: no cell's error to name
        shutil.rmtree(executed.parent, ignore_errors=True)  # nothing in it to read
        if not isinstance(e, Exception):
            raise
        raise NotebookFailed(f"{Path(source).name} failed: {type(e).__name__}: {e} ({out} is unchanged)") from None
    nb = nbformat.read(executed, as_version=4)
    nb.metadata.pop("papermill", None)
    for cell in nb.cells:
        for key in ("papermill", "execution"):
            cell.metadata.pop(key, None)
        if cell.metadata.get("tags") == []:  # papermill's; the paired .py has none (`jupytext --test` compares)
            del cell.metadata["tags"]
        if cell.cell_type == "code":
            cell.outputs = merged_streams(cell.outputs)
    text = nbformat.writes(nb)  # as nbformat.write writes it
    lpdata.write_text(out, text if text.endswith("\n") else text + "\n")
    shutil.rmtree(executed.parent)


def merged_streams(outputs):
    """A cell's outputs with each run of consecutive stream outputs of one stream (stdout, stderr) as one: where
    the kernel cuts a cell's printed text into messages varies from one execution to the next."""
    merged = []
    for output in outputs:
        if (output.output_type == "stream" and merged and merged[-1].output_type == "stream"
                and merged[-1].name == output.name):
            merged[-1].text += output.text
        else:
            merged.append(output)
    return merged


def _reproduce(args):
    import torch

    preset = args.preset
    if preset == "auto":
        preset = "paper" if torch.cuda.is_available() else "cpu"
    if preset not in PRESETS:
        raise ValueError(f"--preset must be auto or one of {sorted(PRESETS)}, got {preset!r}")
    notebooks = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    if args.only is not None and not all(key.strip() for key in args.only):  # `--only "$EMPTY"` would match all
        raise ValueError(f"--only {args.only!r}: an empty name matches every notebook; give parts of their names "
                         "(e.g. table2 figure4), or leave --only out to run them all")
    if args.only:
        notebooks = [nb for nb in notebooks if any(key in nb.stem for key in args.only)]
        if not notebooks:
            raise ValueError(f"--only {' '.join(args.only)} matches no notebook in {NOTEBOOKS}")
    # at the committed preset the notebooks run in place with their own parameters (no injected cell, so
    # each stays in sync with its .py; the data root reaches them as $LPNB_DATA_ROOT); at another preset, or
    # with $LPNB_RESULTS_DIR, their executed copies go apart
    if args.data_root is not None:
        if not os.path.isdir(args.data_root):  # the notebooks would run without data, training nothing
            raise ValueError(f"--data-root {args.data_root} is not a folder: give the one that holds the datasets")
        os.environ["LPNB_DATA_ROOT"] = os.path.abspath(args.data_root)  # the kernels inherit it
    parameters = {"preset": preset} if preset != COMMITTED_PRESET else {}
    own_results = os.environ.get("LPNB_RESULTS_DIR")  # the notebooks write its tables and figures: it takes them all
    out_dir = (default_results_dir(preset) / "notebooks" if own_results else
               output_dir(preset) / "notebooks" if parameters else NOTEBOOKS)
    lpdata.make_folder(out_dir)
    started = time.time()
    written, failed = [], []
    for i, nb in enumerate(notebooks, 1):
        print(f"[{i}/{len(notebooks)}] {nb.name} (preset {preset})", flush=True)
        out = out_dir / nb.name
        given = parameters
        if parameters and "preset" not in notebook_defaults(nb.stem):  # the toy figures' notebooks: apart all the same
            given = {} if own_results else {"figures_dir": str(output_dir(preset) / "figures")}
        try:
            execute_notebook(nb, out, given, log_output=args.verbose)
            written.append(out)
        except NotebookFailed as e:  # the others still run
            print(f"  {e}", flush=True)
            failed.append(nb.name)
    results = default_results_dir(preset)  # $LPNB_RESULTS_DIR too
    written = list(dict.fromkeys(written + [
        p for d in (REPO / "figures", REPO / "results", output_dir(preset), results) for p in sorted(d.rglob("*"))
        if p.is_file() and p.stat().st_mtime >= started and "runs" not in p.parts
        and not p.name.startswith(".")]))  # not a table's lock file
    runs = {p.parent.name for p in (results / "runs").glob("*/record.json") if p.stat().st_mtime >= started}
    minutes = (time.time() - started) / 60
    print(f"\nExecuted {len(notebooks) - len(failed)} of {len(notebooks)} notebooks in {minutes:.1f} min. Wrote:")
    for p in written:
        print(f"  {os.path.relpath(p)}")
    print(f"  {len(runs)} new run records under {os.path.relpath(results / 'runs')}/")
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(notebooks)} notebooks failed: {', '.join(failed)}")


def _list(text, flag, kind=str):
    """A comma-separated flag value (`--labels 500,1000`) as a list; None when the flag is not given."""
    if text is None:
        return None
    try:
        values = [kind(v.strip()) for v in text.split(",") if v.strip()]
    except ValueError:
        example = "3 (a count) or 0,4 (split numbers)" if flag == "--splits" else "500,1000"
        raise ValueError(f"{flag} must be comma-separated integers, e.g. {example}; got {text!r}") from None
    if not values:
        raise ValueError(f"{flag} is empty: give one or more values, or leave the flag out for all of the table's")
    return values


def _sweep(args):
    from lpnb.sweep import report, sweep, table_cells

    if args.split is not None:
        raise ValueError(f"lpnb sweep takes --splits, a count or split numbers: --splits {args.split}, (with the "
                         f"comma) for split {args.split} alone; --splits {args.split} is a count of splits from 0")
    splits = _list(args.splits, "--splits", int)
    splits = splits[0] if splits and "," not in args.splits else splits  # "3": a count; "0,4" or "4,": numbers
    cells = table_cells(args.table, labels=_list(args.labels, "--labels", int),
                        methods=_list(args.methods, "--methods"), datasets=_list(args.datasets, "--datasets"),
                        splits=splits, preset=args.preset or "paper", **_overrides(args, SELECTED))
    if args.preset is None and args.executor == "local" and any(  # SLURM: the cluster's CUDA counts, not ours
            trains_on_cpu(cell) and load_record(cell, args.results_dir) is None for cell in cells):
        raise ValueError(PAPER_NOT_GIVEN)
    options = {"local": ("workers", "per_gpu"), "slurm": ("partition", "timeout_min", "gpus_per_job", "cpus_per_job")}
    given = {executor: {k: getattr(args, k) for k in names if getattr(args, k) is not None}
             for executor, names in options.items()}
    for executor, values in given.items():
        if values and executor != args.executor:
            flags = " ".join("--" + k.replace("_", "-") for k in values)
            raise ValueError(f"{flags}: for --executor {executor}, not {args.executor}")
    jobs = sweep(cells, results_dir=args.results_dir, data_root=args.data_root, executor=args.executor,
                 **given[args.executor])
    if not report(jobs):
        sys.exit(1)


def _status(args):
    results = Path(args.results_dir) if args.results_dir is not None else default_results_dir()
    if not results.is_dir():
        raise ValueError(f"the results folder {results} does not exist: give the folder the runs were written to "
                         "(--results-dir, or $LPNB_RESULTS_DIR)")
    if args.readme:
        if results.resolve() != (REPO / "results").resolve():
            raise ValueError(f"--readme writes the repository's README from its own results/, not {results}: "
                             "leave --results-dir out and unset $LPNB_RESULTS_DIR")
        readme = REPO / "README.md"
        lpdata.write_text(readme, readme_with_status(readme.read_text(encoding="utf-8"), results))
        print(f"updated the status table of {readme}")
    else:
        print(status_table(results), end="")
    presets = [p.parent.name.split("-")[-2] for p in (results / "runs").glob("*/record.json")]
    if not {"paper", "cpu"} & set(presets):  # a run id ends in -<preset>-<hash>
        found = f"{len(presets)} run record(s), none" if presets else "no run record"
        print(f"lpnb: note: {found} at the paper or cpu preset in {results / 'runs'}/: is it the folder the runs "
              "were written to (`lpnb run --results-dir X` writes X/runs/<run-id>/record.json)?", file=sys.stderr)


def _show_warning(show, message, category, filename, *args, **kwargs):
    """lpnb's own warnings in one line each, as its errors are; other libraries' as Python shows them."""
    if Path(filename).parent == Path(__file__).parent:
        print(f"lpnb: warning: {message}", file=sys.stderr)
    else:
        show(message, category, filename, *args, **kwargs)


class Terminated(KeyboardInterrupt):
    """SIGTERM (`kill`, a scheduler stopping the job), raised where the process is, so that it stops as at Ctrl-C."""


def _terminated(signum, frame):
    raise Terminated


def _parser():
    """`lpnb`'s command line: its commands run, sweep, reproduce and status, and their flags."""
    # no abbreviated flags: `sweep --split 4` must not be read as `--splits 4` (four splits)
    parser = argparse.ArgumentParser(prog="lpnb", description=__doc__.split("\n\n")[0].replace("\n", " "),
                                     allow_abbrev=False)
    sub = parser.add_subparsers(dest="command", required=True)
    command = functools.partial(sub.add_parser, allow_abbrev=False)
    p = command("run", help="train one experiment and write results/runs/<run-id>/record.json")
    p.add_argument("--preset", default=None, choices=sorted(PRESETS),
                   help="paper | cpu | smoke (default: paper, the full protocol; without CUDA it must be given, as "
                        "the paper preset trains for days on a CPU)")
    p.add_argument("--data-root", type=_folder, default=None,
                   help="folder holding the dataset (torchvision files, <name>.tar.gz or <name>/)")
    p.add_argument("--results-dir", type=_folder, default=None,
                   help="default: $LPNB_RESULTS_DIR, else the repository's results/ (smoke: smoke/results in "
                        "$LPNB_CACHE_DIR, default ~/.cache/lpnb)")
    p.add_argument("--force", action="store_true",
                   help="recompute this run even if a record or checkpoint exists (its stage-1 run, supervised or "
                        "mt, is kept where it has a checkpoint, else retrained; force it with --method supervised "
                        "or mt)")
    p.add_argument("--time-limit", type=_minutes, default=None, metavar="MINUTES",
                   help=f"stop at the last epoch boundary that fits in MINUTES, judged by the epochs timed so far (a "
                        f"new run's first epoch always starts), checkpoint written, with exit status "
                        f"{TIME_LIMIT_EXIT}; the same command continues the run")
    p.add_argument("--require-checkpoint", action="store_true",
                   help="retrain a finished run that has no checkpoint (stage 2 starts from one)")
    _config_flags(p)
    p.set_defaults(func=_run)
    w = command("sweep", help="run the cells of a table not recorded yet, on local workers or SLURM")
    w.add_argument("--table", type=int, required=True, choices=(1, 2, 3), help="the paper's table")
    w.add_argument("--labels", help="label counts, e.g. 500,1000 (default: the table's)")
    w.add_argument("--methods", help="e.g. supervised,lp (default: the table's)")
    w.add_argument("--datasets", help="e.g. cifar100 (default: the table's)")
    w.add_argument("--splits", help="a count (3: splits 0-2) or split numbers (0,4; 4, for split 4 alone); "
                                    "default: the preset's count")
    w.add_argument("--split", help=argparse.SUPPRESS)  # lpnb run's flag: refused with the one to use
    w.add_argument("--preset", default=None, choices=sorted(PRESETS),
                   help="paper | cpu | smoke (default: paper; for local workers without CUDA it must be given)")
    w.add_argument("--data-root", type=_folder, default=None, help="as for lpnb run")
    w.add_argument("--results-dir", type=_folder, default=None, help="as for lpnb run")
    w.add_argument("--executor", choices=("local", "slurm"), default="local",
                   help="local: workers on this machine (default); slurm: jobs submitted through submitit")
    w.add_argument("--workers", type=int,
                   help="local: runs at a time (default: visible GPUs times --per-gpu, and no more; 1 on a CPU)")
    w.add_argument("--per-gpu", type=int, help="local: runs sharing one GPU (default 1)")
    w.add_argument("--partition", help="slurm: the partition (default: the cluster's)")
    w.add_argument("--timeout-min", type=int, help="slurm: minutes per job before it is requeued to continue "
                   "(default 60; more than one epoch takes, or the job fails)")
    w.add_argument("--gpus-per-job", type=int, help="slurm: GPUs per job (default 1; 0 for CPU jobs)")
    w.add_argument("--cpus-per-job", type=int, help="slurm: CPUs per job (default 4)")
    _config_flags(w, SELECTED)
    w.set_defaults(func=_sweep)
    r = command("reproduce", help="execute every notebook in notebooks/ with papermill")
    r.add_argument("--preset", default="auto",
                   help=f"auto (paper on CUDA, else cpu) | paper | cpu | smoke; at {COMMITTED_PRESET}, the committed "
                        "one, notebooks, tables and figures are rewritten in place; at another preset they go to "
                        "build/<preset>/ (smoke: smoke/ in $LPNB_CACHE_DIR, default ~/.cache/lpnb); with "
                        "$LPNB_RESULTS_DIR, at any preset, to that folder (notebooks/, figures/). The notebooks "
                        "train the cells not recorded: on a GPU, auto means the paper preset, every cell of the "
                        "paper not yet recorded (days of GPU time: lpnb sweep spreads them)")
    r.add_argument("--data-root", type=_folder, default=None)
    r.add_argument("--only", nargs="+", help="notebook names containing any of these (e.g. table2 figure4)")
    r.add_argument("--verbose", action="store_true", help="stream the notebooks' output")
    r.set_defaults(func=_reproduce)
    s = command("status", help="the status table of the README (our numbers beside the paper's), from the records")
    s.add_argument("--results-dir", type=_folder, default=None,
                   help="default: $LPNB_RESULTS_DIR, else the repository's results/")
    s.add_argument("--readme", action="store_true",
                   help="write the table of the repository's results/ into README.md instead of printing it")
    s.set_defaults(func=_status)
    return parser


def main(argv=None):
    parser = _parser()
    args = parser.parse_args(argv)
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminated) if main_thread else None
    try:
        with warnings.catch_warnings():
            warnings.showwarning = functools.partial(_show_warning, warnings.showwarning)
            args.func(args)
    except (ValueError, OSError, RuntimeError) as e:  # OSError: a path that is missing, not a folder, not writable
        hint = (" (check the path and its permissions: --results-dir, --data-root and $LPNB_CACHE_DIR choose where "
                "lpnb writes and reads)" if isinstance(e, OSError) and e.filename else "")
        parser.exit(2, f"lpnb: error: {e}{hint}\n")
    except KeyboardInterrupt as e:
        again = ("the same command without --force continues them; if none was trained yet, run it with --force "
                 "again" if getattr(args, "force", False) else "the same command continues")
        how = "stopped by SIGTERM" if isinstance(e, Terminated) else "interrupted"
        print(f"lpnb: {how} (what finished is kept: decoded data, checkpointed epochs, records; {again})",
              file=sys.stderr, flush=True)
        if isinstance(e, Terminated):  # and dies of it, as its caller expects (exit status 143, -15 to Python)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
        sys.exit(130)
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    main()
