"""benchmarks/run_state.py: a run stopped on one machine continues on another from the files a device job
brings back (benchmarks/paper_cell.sh)."""
import shutil
import sys
from pathlib import Path

import pytest
from conftest import same_run, smoke

from lpnb import experiment
from lpnb.config import base_config, run_id

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
import run_state  # noqa: E402


@pytest.mark.parametrize("limit, stage", [(1.5, 1), (15, 2)])  # stopped in stage 1, or in stage 2 (smoke: 2 + 4 epochs)
def test_a_stopped_run_continues_on_a_fresh_machine_from_what_came_back(env, tmp_path, minute_epochs, limit, stage):
    root, results = env
    cfg = smoke("lp", epochs_stage1=2, epochs_stage2=4)
    ids = [run_id(cfg), run_id(base_config(cfg))]  # as paper_cell.sh names them: the cell's run first
    reference = experiment.run(cfg, data_root=root, results_dir=tmp_path / "reference", progress=False)
    with pytest.raises(experiment.TimeLimitReached) as stop:
        experiment.run(cfg, data_root=root, results_dir=results, progress=False, time_limit=limit)
    assert stop.value.stage == stage
    back = tmp_path / "out"  # what the job brings back: the records paper_cell.sh copies, the checkpoint's pieces
    for rid in ids:
        if (results / "runs" / rid / "record.json").exists():
            back.mkdir(exist_ok=True)
            shutil.copy(results / "runs" / rid / "record.json", back / f"{rid}.json")
    sent = run_state.send(results, back, ids, piece=100_000)
    stopped = ids[0] if stage == 2 else ids[1]
    assert [p.name for p in sent] == [f"{stopped}.ckpt.{i}" for i in range(len(sent) - 1)] + [f"{stopped}.ckpt.sha256"]
    assert len(sent) > 2 and all(p.stat().st_size <= 100_000 for p in sent)

    fresh = tmp_path / "fresh"  # another machine: nothing of the run but what came back
    restored = run_state.restore(back, fresh, ids)
    assert fresh / "runs" / stopped / "checkpoint.pt" in restored
    assert (fresh / "runs" / stopped / "checkpoint.pt").read_bytes() == (
        results / "runs" / stopped / "checkpoint.pt").read_bytes()
    assert run_state.restore(back, fresh, ids) == []  # restored once: a newer checkpoint there is kept
    same_run(experiment.run(cfg, data_root=root, results_dir=fresh, progress=False), reference)


def test_a_piece_missing_or_changed_is_named_and_no_checkpoint_is_written(env, tmp_path, minute_epochs):
    root, results = env
    cfg = smoke("supervised", epochs_stage1=3)
    with pytest.raises(experiment.TimeLimitReached):
        experiment.run(cfg, data_root=root, results_dir=results, progress=False, time_limit=1.5)
    assert run_state.send(results, tmp_path / "none", ["no-such-run"]) == []
    *pieces, manifest = run_state.send(results, tmp_path / "out", [run_id(cfg)], piece=50_000)
    damaged = bytearray(pieces[1].read_bytes())
    damaged[10] ^= 1
    pieces[1].write_bytes(bytes(damaged))
    with pytest.raises(ValueError, match=rf"{pieces[1].name} is not the piece its manifest names"):
        run_state.restore(tmp_path / "out", tmp_path / "fresh", [run_id(cfg)])
    pieces[1].unlink()
    with pytest.raises(ValueError, match=rf"{pieces[1].name} is missing .*delete .*{manifest.name} to start"):
        run_state.restore(tmp_path / "out", tmp_path / "fresh", [run_id(cfg)])
    assert not (tmp_path / "fresh" / "runs" / run_id(cfg) / "checkpoint.pt").exists()
