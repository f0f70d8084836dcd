"""Do two runs sharing one GPU finish sooner than one after the other? (`lpnb sweep --per-gpu`)

Trains the same short runs (the stage 1 of --runs splits, --epochs epochs each, at --preset) twice with
`lpnb.sweep`: one at a time, then all at once on one device, each phase with its own results folder. A
warm-up run first fills the caches both phases then use (the decoded images, torch's compiled kernels), as
they are for all but the first runs of a sweep. Prints the wall-clock of both and their ratio; above 1.0x,
sharing a GPU pays and `--per-gpu 2` is the better default.

    python benchmarks/gpu_sharing.py --data-root carry                  # paper preset, 2 runs of 3 epochs
    python benchmarks/gpu_sharing.py --preset smoke --device cpu --data-root ../shared/data   # tried on a CPU
"""
import argparse
import os
import tempfile
import time
from pathlib import Path

from lpnb.sweep import report, sweep, table_cells


def timed_sweep(cells, data_root, workers, folder):
    start = time.perf_counter()
    jobs = sweep(cells, results_dir=folder / "results", data_root=data_root, workers=workers, per_gpu=workers,
                 log=lambda line: None)
    seconds = time.perf_counter() - start
    if not report(jobs, log=print):
        raise SystemExit("a run failed: see its sweep.log above")
    return seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", required=True)
    parser.add_argument("--preset", default="paper")
    parser.add_argument("--runs", type=int, default=2, help="runs sharing the device (default 2)")
    parser.add_argument("--epochs", type=int, default=3, help="stage-1 epochs of each run (default 3)")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    cells = table_cells(2, labels=[4000], methods=["supervised"], splits=args.runs + 1, preset=args.preset,
                        epochs_stage1=args.epochs, device=args.device)
    warm_up, cells = cells[-1:], cells[:-1]
    with tempfile.TemporaryDirectory(prefix="lpnb-sharing-") as tmp:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(Path(tmp) / "inductor")  # the runs' processes inherit it
        timed_sweep(warm_up, args.data_root, 1, Path(tmp) / "warm-up")
        alone = timed_sweep(cells, args.data_root, 1, Path(tmp) / "one-at-a-time")
        shared = timed_sweep(cells, args.data_root, args.runs, Path(tmp) / "sharing")
    print(f"{args.runs} runs of {args.epochs} epochs at the {args.preset} preset on {args.device}: "
          f"one at a time {alone:.1f} s, {args.runs} sharing the device {shared:.1f} s, "
          f"speed-up {alone / shared:.2f}x")


if __name__ == "__main__":
    main()
