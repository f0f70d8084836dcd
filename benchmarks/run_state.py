"""A stopped run's checkpoint, carried from one lent GPU machine to the next (benchmarks/paper_cell.sh).

A device job brings back at most 8 files of at most 16 MiB each, and a paper-scale checkpoint is 25-38 MB
(the network, its SGD momentum, and Mean Teacher's teacher). `send` writes the checkpoint of the first of the
runs named that has one in pieces, with a manifest of their SHA-256 hashes; `restore` puts it back in place on
a fresh machine, checked, with the records sent back beside it, where that run has none yet (a newer one on a
machine still warm is kept).

    python benchmarks/run_state.py send RESULTS_DIR OUT RUN_ID [RUN_ID ...]
    python benchmarks/run_state.py restore FROM RESULTS_DIR RUN_ID [RUN_ID ...]
"""
import argparse
import hashlib
import sys
from pathlib import Path

from lpnb.data import atomic_write

PIECE = 15 * 2**20  # bytes: under the 16 MiB a device job brings back per file


def _sha256(data):
    return hashlib.sha256(data).hexdigest()


def _write(path, data):
    atomic_write(path, lambda f: f.write(data))


def send(results_dir, out, run_ids, piece=PIECE):
    """Write the checkpoint of the first run of `run_ids` that has one into `out` as <run-id>.ckpt.0, .1, ...
    and <run-id>.ckpt.sha256 (each piece's hash, then the whole's); returns the files written (none if no run
    has a checkpoint). Pass the stage-2 run first: its checkpoint holds the stage-1 record it continues."""
    for rid in run_ids:
        checkpoint = Path(results_dir) / "runs" / rid / "checkpoint.pt"
        if checkpoint.exists():
            break
    else:
        return []
    data, out = checkpoint.read_bytes(), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    pieces = [data[i:i + piece] for i in range(0, len(data), piece)]
    lines = []
    for i, chunk in enumerate(pieces):
        (out / f"{rid}.ckpt.{i}").write_bytes(chunk)
        lines.append(f"{_sha256(chunk)}  {rid}.ckpt.{i}")
    manifest = out / f"{rid}.ckpt.sha256"
    manifest.write_text("\n".join([*lines, f"{_sha256(data)}  {rid}/checkpoint.pt"]) + "\n")
    return [out / f"{rid}.ckpt.{i}" for i in range(len(pieces))] + [manifest]


def restore(source, results_dir, run_ids):
    """Put back, for each of `run_ids`, its record (<run-id>.json, as paper_cell.sh sends it back) and the
    checkpoint that `send` wrote into `source`, each only where `results_dir` has none yet; returns the files
    restored. A piece missing or changed raises ValueError naming it, and that checkpoint is not written."""
    restored = []
    for rid in run_ids:
        record, folder = Path(source) / f"{rid}.json", Path(results_dir) / "runs" / rid
        if record.exists() and not (folder / "record.json").exists():  # a finished stage-1 run's, sent back with it
            _write(folder / "record.json", record.read_bytes())
            restored.append(folder / "record.json")
        manifest, target = Path(source) / f"{rid}.ckpt.sha256", folder / "checkpoint.pt"
        if not manifest.exists() or target.exists():
            continue
        *pieces, (whole, _) = [line.split("  ") for line in manifest.read_text().splitlines()]
        data = b""
        for digest, name in pieces:
            path = Path(source) / name
            if not path.exists() or _sha256(chunk := path.read_bytes()) != digest:
                raise ValueError(f"{path} is {'missing' if not path.exists() else 'not the piece its manifest names'}"
                                 f" ({manifest}): bring back every file of the job that stopped run {rid}, or delete "
                                 f"{manifest} to start that run over")
            data += chunk
        if _sha256(data) != whole:
            raise ValueError(f"the pieces named in {manifest} do not make up the checkpoint it names: bring them back "
                             f"again, or delete {manifest} to start run {rid} over")
        _write(target, data)
        restored.append(target)
    return restored


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    sending = commands.add_parser("send", help="a stopped run's checkpoint into pieces")
    sending.add_argument("results_dir")
    sending.add_argument("out")
    restoring = commands.add_parser("restore", help="the pieces back into a checkpoint")
    restoring.add_argument("source")
    restoring.add_argument("results_dir")
    for command in (sending, restoring):
        command.add_argument("run_ids", nargs="+")
    args = parser.parse_args(argv)
    try:
        if args.command == "send":
            written = send(args.results_dir, args.out, args.run_ids)
            pieces = len(written) - 1
            print(f"checkpoint sent back in {pieces} piece{'s' * (pieces > 1)}: {written[-1].name}" if written else
                  "no checkpoint to send back")
        else:
            for path in restore(args.source, args.results_dir, args.run_ids):
                print(f"restored {path} from {args.source}/")
    except ValueError as e:
        sys.exit(f"run_state.py: {e}")


if __name__ == "__main__":
    main()
