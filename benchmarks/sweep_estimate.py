"""Estimated wall-clock time of a whole table at the paper preset on 1, 8 and 64 GPUs: an ESTIMATE.

Each cell of the table is one run on one GPU (`lpnb sweep`); a stage-2 run starts when the stage-1
run it continues has ended. This script schedules the runs greedily (the longest ready run on the
first free GPU; `lpnb sweep` with one worker per GPU starts the ready runs in its plan's order
instead, which a simulation put 2% later at 8 GPUs) from the minutes one run of each method takes,
and prints the wall-clock time per GPU count.

The default minutes per run (`--minutes`) are, for the supervised stage 1, the measured wall-clock
of the paper-preset runs on one H200 (38-100 s, read from the jobs' output; their records,
`results/runs/*-paper-*`, hold the training and evaluation seconds alone; taken as 1.2 min); for
the others, estimates from the per-epoch rates measured on one H100 (benchmarks/README.md): a
stage-2 epoch of LP 2.56 s + one refresh 0.41 s, of Mean Teacher 3.79 s, times 180 epochs.

    python benchmarks/sweep_estimate.py                      # Table 2: 5 methods x 4 label counts x 10 splits
    python benchmarks/sweep_estimate.py --minutes lp=9 mt=12
"""
import argparse
import heapq

MINUTES = {  # one run of each method on one GPU, stage 2 alone for the stage-2 methods
    "supervised": 1.2,                   # measured: 38-100 s per run on an H200
    "mt": 180 * 3.79 / 60,               # estimate: 11.4 min
    "network": 180 * (2.56 + 0.41) / 60,  # estimate: 8.9 min (as LP)
    "lp": 180 * (2.56 + 0.41) / 60,      # estimate: 8.9 min
    "mt+lp": 180 * (3.79 + 0.41) / 60,   # estimate: 12.6 min
}
BASE = {"network": "supervised", "lp": "supervised", "mt+lp": "mt"}


def wall_clock(cells, minutes, gpus):
    """Minutes until every run has ended on `gpus` GPUs; `cells` are (method, cell key) pairs."""
    free, ended, pending = [0.0] * gpus, {}, set(cells)  # free: when each GPU is next free
    while pending:
        now = heapq.heappop(free)
        ready = [c for c in pending if c[0] not in BASE or ended.get((BASE[c[0]], c[1]), float("inf")) <= now]
        if not ready:  # this GPU waits for the next stage-1 run to end
            heapq.heappush(free, min(t for t in ended.values() if t > now))
            continue
        run = max(ready, key=lambda c: minutes[c[0]])  # the longest first
        ended[run] = now + minutes[run[0]]
        heapq.heappush(free, ended[run])
        pending.remove(run)
    return max(ended.values())


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--methods", default="supervised,network,lp,mt,mt+lp")
    p.add_argument("--labels", type=int, default=4, help="label counts (Table 2: 4)")
    p.add_argument("--splits", type=int, default=10, help="splits per cell (the paper's 10 for CIFAR-10)")
    p.add_argument("--gpus", default="1,8,64")
    p.add_argument("--minutes", nargs="*", default=[], help="method=minutes per run, overriding the defaults")
    args = p.parse_args()
    try:
        given = {k: float(v) for k, v in (m.split("=") for m in args.minutes)}
        gpu_counts = [int(g) for g in args.gpus.split(",")]
    except ValueError:
        p.error(f"--minutes takes method=minutes pairs and --gpus a comma-separated list of counts, got "
                f"--minutes {' '.join(args.minutes)} --gpus {args.gpus}")
    minutes = {**MINUTES, **given}
    methods = args.methods.split(",")
    if set(methods) - set(MINUTES) or set(given) - set(MINUTES) or not all(v > 0 for v in given.values()):
        p.error(f"methods are {sorted(MINUTES)}, each with a positive number of minutes; got --methods "
                f"{args.methods} --minutes {' '.join(args.minutes)}")
    if args.labels < 1 or args.splits < 1 or not all(g > 0 for g in gpu_counts):
        p.error("--labels, --splits and every --gpus count must be positive")
    cells = [(m, (n, s)) for m in methods for n in range(args.labels) for s in range(args.splits)]
    cells = sorted(set(cells) | {(BASE[m], key) for m, key in cells if m in BASE})  # and the stage-1 runs they need
    print(f"{len(cells)} runs; minutes per run: " + ", ".join(f"{m} {minutes[m]:.1f}" for m in sorted(minutes)))
    print(f"GPU time in all: {sum(minutes[m] for m, _ in cells) / 60:.1f} h (an estimate)")
    for gpus in gpu_counts:
        print(f"{gpus:3d} GPUs: {wall_clock(cells, minutes, gpus) / 60:5.1f} h wall-clock (an estimate)")


if __name__ == "__main__":
    main()
