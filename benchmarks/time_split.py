"""Where a run's time went, from its record: set-up, training steps, descriptor passes, k-NN search and
graph, conjugate gradient, test evaluation, for stage 1 and stage 2 (`lpnb.tables.time_split`).

    python benchmarks/time_split.py results/runs/<run-id>/record.json [--wall SECONDS]

--wall: the wall-clock seconds of the processes that trained the run (benchmarks/paper_cell.sh passes
them), so that the rest (start-up, imports, checkpoints) shows as a part of its own.
"""
import argparse

from lpnb.experiment import read_record
from lpnb.tables import time_split


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("record", help="a run's record.json")
    parser.add_argument("--wall", type=float, default=None, help="wall-clock seconds of the processes that ran it")
    args = parser.parse_args()
    record = read_record(args.record)
    epochs = {stage: sum(h["stage"] == stage for h in record["history"]) for stage in (1, 2)}
    print(f"{record['run_id']}: {record['preset']} preset, {record['n_train']} training images, "
          f"{epochs[1]} + {epochs[2]} epochs, test error {record['test_error']:.2f}%, on {record['device']}")
    print(time_split(record, args.wall).to_string(index=False))


if __name__ == "__main__":
    main()
