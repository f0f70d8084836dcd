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


@pytest.mark.parametrize("method, limit, stage, epoch", [  # smoke: 2 + 4 epochs; the minute_epochs clock
    ("lp", 1.5, 1, 1),     # stopped in stage 1: the stage-1 run's checkpoint goes
    ("lp", 4, 2, 0),       # between the stages: the finished stage-1 run's checkpoint and record
    ("lp", 15, 2, 2),      # in stage 2: its checkpoint, which holds the stage-1 record it continues
    ("mt+lp", 27, 2, 2)])  # a teacher in the checkpoint too
def test_a_stopped_run_continues_on_a_fresh_machine_from_what_came_back(env, tmp_path, minute_epochs, method, limit,
                                                                        stage, epoch):
    root, results = env
    cfg = smoke(method, epochs_stage1=2, epochs_stage2=4)
    ids = [run_id(cfg), run_id(base_config(cfg))]  # as paper_cell.sh names them: the cell's run first
    reference = experiment.run(cfg, data_root=root, results_dir=tmp_path / "reference", progress=False)
    with pytest.raises(experiment.TimeLimitReached) as stop:
        experiment.run(cfg, data_root=root, results_dir=results, progress=False, time_limit=limit)
    assert (stop.value.stage, stop.value.epoch) == (stage, epoch)
    back = tmp_path / "out"  # what the job brings back: the records paper_cell.sh copies, the checkpoint's pieces
    back.mkdir()
    for rid in ids:
        if (results / "runs" / rid / "record.json").exists():
            shutil.copy(results / "runs" / rid / "record.json", back / f"{rid}.json")
    stopped = ids[0] if epoch > 0 and stage == 2 else ids[1]
    checkpoint = results / "runs" / stopped / "checkpoint.pt"
    sent = run_state.send(results, back, ids, piece=-(-checkpoint.stat().st_size // 3))  # in 3 pieces, the most
    assert [p.name for p in sent] == [f"{stopped}.ckpt.{i}" for i in range(3)] + [f"{stopped}.ckpt.sha256"]

    fresh = tmp_path / "fresh"  # another machine: nothing of the run but what came back
    restored = run_state.restore(back, fresh, ids)
    assert fresh / "runs" / stopped / "checkpoint.pt" in restored
    assert (fresh / "runs" / stopped / "checkpoint.pt").read_bytes() == checkpoint.read_bytes()
    assert run_state.restore(back, fresh, ids) == []  # restored once: a newer checkpoint there is kept
    same_run(experiment.run(cfg, data_root=root, results_dir=fresh, progress=False), reference)


def test_what_cannot_be_restored_is_named_and_no_checkpoint_is_written(env, tmp_path, minute_epochs):
    root, results = env
    cfg = smoke("supervised", epochs_stage1=3)
    with pytest.raises(experiment.TimeLimitReached):
        experiment.run(cfg, data_root=root, results_dir=results, progress=False, time_limit=1.5)
    assert run_state.send(results, tmp_path / "none", ["no-such-run"]) == []
    size = (results / "runs" / run_id(cfg) / "checkpoint.pt").stat().st_size
    with pytest.raises(ValueError, match=r"4 pieces: more than the 3 a job can bring back"):
        run_state.send(results, tmp_path / "many", [run_id(cfg)], piece=-(-size // 4))
    out, fresh = tmp_path / "out", tmp_path / "fresh"
    *pieces, manifest = run_state.send(results, out, [run_id(cfg)], piece=-(-size // 3))
    with pytest.raises(ValueError, match=rf"holds the checkpoint of {run_id(cfg)}, not of other-run: continue"):
        run_state.restore(out, fresh, ["other-run"])  # another cell's checkpoint: not a silent start over
    text = manifest.read_text()
    manifest.write_text("")
    with pytest.raises(ValueError, match=rf"{manifest.name} is damaged"):
        run_state.restore(out, fresh, [run_id(cfg)])
    manifest.write_text(text)
    damaged = bytearray(pieces[1].read_bytes())
    damaged[10] ^= 1
    pieces[1].write_bytes(bytes(damaged))
    with pytest.raises(ValueError, match=rf"{pieces[1].name} is not the piece its manifest names"):
        run_state.restore(out, fresh, [run_id(cfg)])
    pieces[1].unlink()
    with pytest.raises(ValueError, match=rf"{pieces[1].name} is missing .*delete .*{manifest.name} to start"):
        run_state.restore(out, fresh, [run_id(cfg)])
    assert not (fresh / "runs" / run_id(cfg) / "checkpoint.pt").exists()


def test_a_checkpoint_left_from_an_earlier_job_beside_a_finished_record_is_refused(env, tmp_path, minute_epochs):
    """Stage 1 stopped in one job (its checkpoint sent back), finished in the next (its record sent back): the
    earlier pieces, left in the folder, are not put back beside the record as its training."""
    root, results = env
    cfg = smoke("lp", epochs_stage1=2, epochs_stage2=4)
    ids, back = [run_id(cfg), run_id(base_config(cfg))], tmp_path / "back"
    with pytest.raises(experiment.TimeLimitReached, match="after 1 of 2 epochs of stage 1"):
        experiment.run(cfg, data_root=root, results_dir=results, progress=False, time_limit=1.5)
    run_state.send(results, back, ids)
    with pytest.raises(experiment.TimeLimitReached, match="before epoch 0 of 4 of stage 2"):
        experiment.run(cfg, data_root=root, results_dir=results, progress=False, time_limit=3)
    shutil.copy(results / "runs" / ids[1] / "record.json", back / f"{ids[1]}.json")
    with pytest.raises(ValueError, match=rf"{ids[1]}.ckpt.sha256 is a checkpoint after 1 epochs of stage 1, beside "
                                         rf"the record of the finished run \({ids[1]}.json\).*Empty {back}/"):
        run_state.restore(back, tmp_path / "fresh", ids)
    assert not (tmp_path / "fresh" / "runs").exists()  # neither the record nor the checkpoint
    run_state.send(results, back, ids)  # the last job's pieces: the finished stage 1's checkpoint
    assert len(run_state.restore(back, tmp_path / "fresh", ids)) == 2
