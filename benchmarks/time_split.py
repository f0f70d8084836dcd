"""Where a run's time went, from its record: set-up, training steps, descriptor passes, k-NN search and
graph, conjugate gradient, test evaluation, for stage 1 and stage 2 (`lpnb.tables.time_split`).

    python benchmarks/time_split.py results/runs/<run-id>/record.json [--wall SECONDS [--since TIME]]

--wall: the wall-clock seconds of the processes that trained the run (benchmarks/paper_cell.sh passes
them), so that the rest (start-up, imports, checkpoints) shows as a part of its own. --since: when the
first of them started (seconds since the epoch): a stage-1 run that had finished before is left out.
"""
import argparse
from datetime import datetime

from lpnb.experiment import read_record
from lpnb.tables import data_said, time_split


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("record", help="a run's record.json")
    parser.add_argument("--wall", type=float, default=None, help="wall-clock seconds of the processes that ran it")
    parser.add_argument("--since", type=float, default=None, help="when the first of them started (epoch seconds)")
    args = parser.parse_args()
    record = read_record(args.record)
    base_finished = record.get("base_run_finished")
    with_stage1 = not (args.since and base_finished and
                       datetime.strptime(base_finished, "%Y-%m-%dT%H:%M:%S%z").timestamp() < args.since)
    if not with_stage1:
        print(f"stage 1 (run {record['base_run']}) finished before these processes started: left out")
    epochs = {stage: sum(h["stage"] == stage for h in record["history"]) for stage in (1, 2)}
    print(f"{record['run_id']}: {record['preset']} preset, {record['n_train']} training images, "
          f"{epochs[1]} + {epochs[2]} epochs, test error {record['test_error']:.2f}%, on {record['device']}; "
          f"{data_said(record)}")
    try:
        print(time_split(record, args.wall, with_stage1).to_string(index=False))
    except ValueError as e:
        parser.error(str(e))


if __name__ == "__main__":
    main()
