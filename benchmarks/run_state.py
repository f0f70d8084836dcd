"""A stopped run's checkpoint, carried from one lent GPU machine to the next (benchmarks/paper_cell.sh).

A device job brings back at most 8 files of at most 16 MiB each, and a paper-scale checkpoint is 25.1 MB (the
13-layer network and its SGD momentum; 37.6 MB with Mean Teacher's teacher: benchmarks/README.md). `send` writes
the checkpoint of the first of the runs named that has one in pieces, with a manifest of their SHA-256 hashes;
`restore` puts it back in place on a fresh machine, checked, with the records sent back beside it, where that run
has none yet (a newer one on a machine still warm is kept).

    python benchmarks/run_state.py send RESULTS_DIR OUT RUN_ID [RUN_ID ...]
    python benchmarks/run_state.py restore FROM RESULTS_DIR RUN_ID [RUN_ID ...]
"""
import argparse
import hashlib
import io
import json
import sys
from pathlib import Path

PIECE = 15 * 2**20  # bytes: under the 16 MiB a device job brings back per file
MAX_PIECES = 3  # a job brings back 8 files: these, the manifest, log.txt, two records and <run-id>.wall


def _sha256(data):
    return hashlib.sha256(data).hexdigest()


def _write(path, data):
    from lpnb.data import atomic_write  # here, not above: `send` runs in a job's last seconds, without torch

    atomic_write(path, lambda f: f.write(data))


def send(results_dir, out, run_ids, piece=PIECE):
    """Write the checkpoint of the first run of `run_ids` that has one into `out` as <run-id>.ckpt.0, .1, ...
    and <run-id>.ckpt.sha256 (each piece's hash, then the whole's); returns the files written (none if no run
    has a checkpoint). Pass the stage-2 run first: its checkpoint holds the stage-1 record it continues. A
    checkpoint of more than MAX_PIECES pieces (a ResNet-18's) raises ValueError: it would not come back."""
    for rid in run_ids:
        checkpoint = Path(results_dir) / "runs" / rid / "checkpoint.pt"
        if checkpoint.exists():
            break
    else:
        return []
    data, out = checkpoint.read_bytes(), Path(out)
    pieces = [data[i:i + piece] for i in range(0, len(data), piece)]
    if len(pieces) > MAX_PIECES:
        raise ValueError(f"{checkpoint} is {len(data) / 2**20:.0f} MiB, {len(pieces)} pieces: more than the "
                         f"{MAX_PIECES} a job can bring back beside its other files; the run continues only on this "
                         "machine")
    out.mkdir(parents=True, exist_ok=True)
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
    restored. A piece missing or changed, a damaged manifest, manifests in `source` of other runs only (a
    checkpoint of another cell, or of this cell under another run id: the run would start over), or the
    checkpoint of a run that `source` brings the finished record of, but not of its finished training (pieces
    of an earlier job left beside the last one's) raise ValueError naming them, and no checkpoint is written."""
    restored, manifests = [], sorted(p.name for p in Path(source).glob("*.ckpt.sha256"))
    if manifests and not any(f"{rid}.ckpt.sha256" in manifests for rid in run_ids):
        held = ", ".join(m.removesuffix(".ckpt.sha256") for m in manifests)
        raise ValueError(f"{source} holds the checkpoint of {held}, not of {' or '.join(run_ids)}: continue that cell, "
                         f"or empty {source} to start this one")
    for rid in run_ids:
        record, folder = Path(source) / f"{rid}.json", Path(results_dir) / "runs" / rid
        manifest, target = Path(source) / f"{rid}.ckpt.sha256", folder / "checkpoint.pt"
        data = _pieces(manifest, source, rid) if manifest.exists() and not target.exists() else None
        if data is not None and record.exists():
            _check_finished(data, json.loads(record.read_bytes()), manifest, source)
        if record.exists() and not (folder / "record.json").exists():  # a finished stage-1 run's, sent back with it
            _write(folder / "record.json", record.read_bytes())
            restored.append(folder / "record.json")
        if data is not None:
            _write(target, data)
            restored.append(target)
    return restored


def _pieces(manifest, source, rid):
    """The checkpoint (bytes) that the manifest's pieces in `source` make up, each checked against its hash."""
    lines = [line.split("  ") for line in manifest.read_text().splitlines()]
    if len(lines) < 2 or any(len(line) != 2 for line in lines):
        raise ValueError(f"{manifest} is damaged (not '<sha256>  <file>' lines, a piece's and the whole's): "
                         f"bring it back again, or delete it to start run {rid} over")
    *pieces, (whole, _) = lines
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
    return data


def _check_finished(checkpoint, record, manifest, source):
    """The checkpoint (bytes) beside a finished record must be of that training's end: a ValueError otherwise."""
    import torch

    state = torch.load(io.BytesIO(checkpoint), map_location="cpu", weights_only=False)
    epochs = sum(entry["stage"] == state["stage"] for entry in record["history"])
    if state["stage"] != record["history"][-1]["stage"] or state["epoch"] != epochs:
        raise ValueError(f"{manifest} is a checkpoint after {state['epoch']} epochs of stage {state['stage']}, "
                         f"beside the record of the finished run ({record['run_id']}.json): pieces of an earlier job. "
                         f"Empty {source}/ and copy in the files of the last job alone")


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
            restored = restore(args.source, args.results_dir, args.run_ids)
            for path in restored:
                print(f"restored {path} from {args.source}/")
            if not restored:
                print(f"nothing restored from {args.source}/: this machine has what it holds of "
                      f"{' and '.join(args.run_ids)}, or it holds none")
    except ValueError as e:
        sys.exit(f"run_state.py: {e}")


if __name__ == "__main__":
    main()
