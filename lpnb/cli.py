"""Command line: `lpnb run ...` trains one experiment; `lpnb reproduce` re-executes every notebook.

Every field of `lpnb.experiment.Config` is a flag (`--epochs-stage2 30`, `--use-omega false`);
values are read as JSON where they parse (numbers, true/false, null, lists; Python's True/False/None
too), else as strings; a value of the wrong type for its field is an error.
"""
import argparse
import dataclasses
import json
import os
import sys
import time

from lpnb.experiment import REPO, Config, make_config, run

NOTEBOOKS = REPO / "notebooks"


def _value(text):
    """A flag's value: JSON where it parses (3, 0.5, [0, 7], true), Python's True/False/None too, else the string."""
    python_literals = {"True": True, "False": False, "None": None}
    if text in python_literals:
        return python_literals[text]
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _run(args):
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(Config)
                 if f.name != "preset" and getattr(args, f.name) is not None}
    cfg = make_config(args.preset, **overrides)
    record = run(cfg, data_root=args.data_root, results_dir=args.results_dir, force=args.force)
    top5 = f", top-5 {record['test_error_top5']:.2f}%" if cfg.dataset in ("cifar100", "miniimagenet") else ""
    print(f"{record['run_id']}: test error {record['test_error']:.2f}%{top5} "
          f"({record['n_labeled']} labeled, {record['n_unlabeled']} unlabeled, {record['n_test']} test images; {record['device']})")


def _reproduce(args):
    import papermill

    preset = args.preset
    if preset == "auto":
        import torch
        preset = "paper" if torch.cuda.is_available() else "cpu"
    notebooks = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    if args.only:
        notebooks = [nb for nb in notebooks if any(key in nb.stem for key in args.only)]
    started = time.time()
    for i, nb in enumerate(notebooks, 1):
        print(f"[{i}/{len(notebooks)}] {nb.name} (preset {preset})", flush=True)
        params = papermill.inspect_notebook(str(nb))
        parameters = {k: v for k, v in {"preset": preset, "data_root": args.data_root}.items() if k in params and v is not None}
        if parameters.get("preset") == params.get("preset", {}).get("default", "").strip("'\""):
            parameters.pop("preset")  # the notebook's own default: no injected cell, the pair stays in sync
        path = os.path.relpath(nb)  # as the notebook's metadata records it
        papermill.execute_notebook(path, path, parameters=parameters, cwd=str(REPO), log_output=args.verbose,
                                   progress_bar=sys.stderr.isatty())
    written = [p for d in ("figures", "results") for p in sorted((REPO / d).rglob("*"))
               if p.is_file() and p.stat().st_mtime >= started and "runs" not in p.parts]
    runs = {p.parent.name for p in (REPO / "results" / "runs").glob("*/record.json") if p.stat().st_mtime >= started}
    print(f"\nExecuted {len(notebooks)} notebooks in {(time.time() - started) / 60:.1f} min. Wrote:")
    for p in written + notebooks:
        print(f"  {p.relative_to(REPO)}")
    print(f"  {len(runs)} new run records under results/runs/")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="lpnb", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="train one experiment and write results/runs/<run-id>/record.json")
    p.add_argument("--preset", default="paper", help="paper | cpu | smoke (default: paper)")
    p.add_argument("--data-root", default=None, help="folder holding the dataset (torchvision files, <name>.tar.gz or <name>/)")
    p.add_argument("--results-dir", default=None, help="default: the repository's results/")
    p.add_argument("--force", action="store_true", help="recompute even if a record or checkpoint exists")
    for f in dataclasses.fields(Config):
        if f.name != "preset":
            p.add_argument("--" + f.name.replace("_", "-"), dest=f.name, type=_value, default=None,
                           help=f"default: {f.default!r} (or the preset's)")
    p.set_defaults(func=_run)
    r = sub.add_parser("reproduce", help="execute every notebook in notebooks/ with papermill, in place")
    r.add_argument("--preset", default="auto", help="auto (paper on CUDA, else cpu) | paper | cpu | smoke")
    r.add_argument("--data-root", default=None)
    r.add_argument("--only", nargs="*", help="notebook names containing any of these (e.g. table2 figure4)")
    r.add_argument("--verbose", action="store_true", help="stream the notebooks' output")
    r.set_defaults(func=_reproduce)
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        parser.exit(2, f"lpnb: error: {e}\n")


if __name__ == "__main__":
    main()
