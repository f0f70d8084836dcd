"""Do two runs sharing one GPU finish sooner than one after the other? (`lpnb sweep --per-gpu`)

Trains the same short runs (Mean Teacher's stage 1 of --runs splits at 4000 labels, --epochs epochs each,
at --preset: two-stream batches of B = 100 over all the images, as in every stage-2 epoch) twice with
`lpnb.sweep`: one at a time, then all at once on one device, each phase with its own results folder. A
warm-up run first fills the caches both phases then use (the decoded images, torch's compiled kernels), as
they are for all but the first runs of a sweep. Prints the wall-clock of both and their ratio, and the
same ratio for the training steps alone (from the records: a run's steps, slowed down by its neighbour
while they share, against its steps alone), which is what decides for runs of 180 + 180 epochs, whose
start-up is a few percent. Above 1.0x, sharing a GPU pays and `--per-gpu 2` is the better default.

    PYTHONPATH=. python3 benchmarks/gpu_sharing.py --data-root carry     # paper preset, 2 runs of 5 epochs
    python benchmarks/gpu_sharing.py --preset smoke --device cpu --data-root ../shared/data   # tried on a CPU
"""
import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from lpnb.experiment import read_record
from lpnb.sweep import report, sweep, table_cells


def timed_sweep(cells, data_root, workers, folder):
    """The sweep's wall-clock seconds and the median training-step seconds of its runs (their records)."""
    start = time.perf_counter()
    jobs = sweep(cells, results_dir=folder / "results", data_root=data_root, workers=workers, per_gpu=workers,
                 log=lambda line: None)
    seconds = time.perf_counter() - start
    if not report(jobs, log=print):
        raise SystemExit("a run failed: see its sweep.log above")
    steps = [read_record(path)["timings"]["train"] for path in (folder / "results" / "runs").glob("*/record.json")]
    return seconds, statistics.median(steps)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", required=True)
    parser.add_argument("--preset", default="paper")
    parser.add_argument("--runs", type=int, default=2, help="runs sharing the device (default 2)")
    parser.add_argument("--epochs", type=int, default=5, help="epochs of each run (default 5)")
    parser.add_argument("--device", default=None, help="default: cuda (a GPU); cpu only when given")
    args = parser.parse_args()
    if args.device is None and not torch.cuda.is_available():  # the paper preset would train for hours here
        parser.error("no CUDA device here, and this benchmark is meant for one: pass --device cpu "
                     "(with --preset smoke) to try its code path on this CPU")
    args.device = args.device or "cuda"
    if args.runs < 2 or args.epochs < 1:
        parser.error(f"--runs must be at least 2 and --epochs at least 1, got --runs {args.runs} "
                     f"--epochs {args.epochs}")
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")  # one GPU: the sweep would give each run a GPU of its own first
    os.environ["CUDA_VISIBLE_DEVICES"] = visible.split(",")[0] if visible else "0"
    cells = table_cells(2, labels=[4000], methods=["mt"], splits=args.runs + 1, preset=args.preset,
                        epochs_stage1=args.epochs, device=args.device)
    warm_up, cells = cells[-1:], cells[:-1]
    with tempfile.TemporaryDirectory(prefix="lpnb-sharing-") as tmp:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(Path(tmp) / "inductor")  # the runs' processes inherit it
        timed_sweep(warm_up, args.data_root, 1, Path(tmp) / "warm-up")
        alone, steps_alone = timed_sweep(cells, args.data_root, 1, Path(tmp) / "one-at-a-time")
        shared, steps_shared = timed_sweep(cells, args.data_root, args.runs, Path(tmp) / "sharing")
    print(f"{args.runs} Mean Teacher runs of {args.epochs} epochs at the {args.preset} preset on {args.device}: "
          f"one at a time {alone:.1f} s, {args.runs} sharing the device {shared:.1f} s, "
          f"speed-up {alone / shared:.2f}x; "
          f"training steps of a run {steps_alone:.1f} s alone, {steps_shared:.1f} s sharing (median), "
          f"speed-up {args.runs * steps_alone / steps_shared:.2f}x while they share")


if __name__ == "__main__":
    main()
