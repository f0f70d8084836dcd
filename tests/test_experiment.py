"""End-to-end runs of the training engine on a small CIFAR-like dataset written by the tests."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lpnb import experiment
from lpnb.experiment import make_config, run, run_id

pytestmark = pytest.mark.slow
CLASSES = [f"class{i}" for i in range(10)]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    """cifar10/{train,test}/<class>/<index>.png: 30 train and 10 test 32x32 images per class, colour-coded."""
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    index = 0
    for split, per_class in (("train", 30), ("test", 10)):
        for c, name in enumerate(CLASSES):
            folder = root / "cifar10" / split / name
            folder.mkdir(parents=True)
            for j in range(per_class):
                img = rng.integers(0, 80, (32, 32, 3)) + np.array([25 * c, 255 - 25 * c, 128])[None, None] * 0.6
                number = index if split == "train" else j
                Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(folder / f"{number:05d}.png")
                index += split == "train"
    return root


@pytest.fixture()
def env(tmp_path, monkeypatch, data_root):
    monkeypatch.setenv("LPNB_CACHE_DIR", str(tmp_path / "cache"))
    return data_root, tmp_path / "results"


def smoke(method, **kw):
    return make_config("smoke", method=method, labels=50, unlabeled_size=200, test_size=100, device="cpu", **kw)


@pytest.mark.parametrize("method", ["supervised", "network", "lp", "gtg", "mt", "mt+lp"])
def test_every_method_runs_end_to_end(env, method):
    root, results = env
    rec = run(smoke(method), data_root=root, results_dir=results, progress=False)
    assert rec["method"] == method and 0 <= rec["test_error"] <= 100
    assert (rec["n_labeled"], rec["n_unlabeled"], rec["n_test"]) == (50, 200, 100)
    saved = json.loads((results / "runs" / rec["run_id"] / "record.json").read_text())
    assert saved["test_error"] == rec["test_error"] and saved["config"]["method"] == method
    stages = [h["stage"] for h in rec["history"]]
    if method in ("supervised", "mt"):
        assert stages == [1, 1] and rec["base_run"] is None and "stage1" not in rec["timings"]
    else:  # stage 2 continues the shared stage-1 run
        assert stages == [1, 1, 2, 2]
        base = json.loads((results / "runs" / rec["base_run"] / "record.json").read_text())
        assert base["method"] == ("mt" if method == "mt+lp" else "supervised")
        assert rec["history"][:2] == base["history"] and rec["stage1_test_error"] == base["test_error"]
        assert rec["timings"]["stage1"] == base["timings"] and rec["timings"]["train"] > 0
        assert all(0 <= h["pseudo_label_acc"] <= 100 and 0 <= h["network_acc"] <= 100 for h in rec["history"][2:])
        assert [h["epoch"] for h in rec["omega_histograms"]] == [0, 1]
        hist = rec["omega_histograms"][0]
        assert sum(hist["correct"]) + sum(hist["incorrect"]) == 200
        mistakes = rec["confident_mistakes"]
        assert all(m["pseudo_label"] != m["label"] for m in mistakes)
        assert [m["omega"] for m in mistakes] == sorted((m["omega"] for m in mistakes), reverse=True)
    if method.startswith("mt"):
        assert "teacher_test_error" in rec["history"][-1]


def test_table1_variants_share_stage1_and_have_distinct_ids(env):
    root, results = env
    ids = {run_id(smoke("lp", use_omega=o, use_zeta=z)) for o in (True, False) for z in (True, False)}
    assert len(ids) == 4
    a = run(smoke("lp", use_omega=False), data_root=root, results_dir=results, progress=False)
    b = run(smoke("network"), data_root=root, results_dir=results, progress=False)
    assert a["base_run"] == b["base_run"] and "noomega" in a["run_id"]
    assert len(list((results / "runs").glob("*supervised*"))) == 1


def test_finished_run_is_loaded_not_recomputed(env, monkeypatch):
    root, results = env
    first = run(smoke("lp"), data_root=root, results_dir=results, progress=False)
    monkeypatch.setattr(experiment.Trainer, "train_epoch", lambda *a, **k: pytest.fail("retrained a finished run"))
    assert run(smoke("lp"), data_root=root, results_dir=results, progress=False) == first


def test_corrupt_checkpoint_is_reported_not_used(env):
    root, results = env
    cfg = smoke("supervised")
    run_dir = results / "runs" / run_id(cfg)
    run_dir.mkdir(parents=True)
    (run_dir / "checkpoint.pt").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(RuntimeError, match="corrupt or incomplete"):
        run(cfg, data_root=root, results_dir=results, progress=False)


def test_sigkill_then_resume_gives_the_uninterrupted_result(env, tmp_path):
    root, results = env
    kw = dict(epochs_stage1=2, epochs_stage2=6)
    reference = run(smoke("lp", **kw), data_root=root, results_dir=tmp_path / "reference", progress=False)

    cmd = [sys.executable, "-m", "lpnb.cli", "run", "--preset", "smoke", "--method", "lp", "--labels", "50",
           "--unlabeled-size", "200", "--test-size", "100", "--device", "cpu", "--epochs-stage1", "2",
           "--epochs-stage2", "6", "--data-root", str(root), "--results-dir", str(results)]
    proc = subprocess.Popen(cmd, env={**os.environ, "PYTHONPATH": str(Path(experiment.__file__).parents[1])},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ckpt = results / "runs" / reference["run_id"] / "checkpoint.pt"
    deadline = time.time() + 300
    while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (ckpt.parent / "record.json").exists(), "the run finished before it could be killed"

    resumed = run(smoke("lp", **kw), data_root=root, results_dir=results, progress=False)
    assert [(h["stage"], h["epoch"]) for h in resumed["history"]] == [(1, 0), (1, 1)] + [(2, e) for e in range(6)]
    assert resumed["test_error"] == pytest.approx(reference["test_error"])
    np.testing.assert_allclose([h["loss"] for h in resumed["history"]], [h["loss"] for h in reference["history"]], rtol=1e-5)


def test_stage2_resumes_from_its_own_checkpoint_without_stage1s(env):
    """A stage-2 checkpoint carried to another machine without its stage-1 checkpoint: stage 1 is not retrained."""
    root, results = env
    first = run(smoke("lp", epochs_stage2=3), data_root=root, results_dir=results, progress=False)
    base_dir = results / "runs" / first["base_run"]
    (base_dir / "checkpoint.pt").unlink()
    (results / "runs" / first["run_id"] / "record.json").unlink()
    base_written = (base_dir / "record.json").stat().st_mtime_ns
    again = run(smoke("lp", epochs_stage2=3), data_root=root, results_dir=results, progress=False)
    assert (base_dir / "record.json").stat().st_mtime_ns == base_written, "stage 1 was retrained"
    assert again["history"] == first["history"] and again["test_error"] == first["test_error"]


def test_bad_config_is_rejected():
    with pytest.raises(ValueError, match="unknown method"):
        make_config("smoke", method="fixmatch")
    with pytest.raises(ValueError, match="unknown preset"):
        make_config("huge")
    with pytest.raises(ValueError, match="unknown config field"):
        make_config("smoke", learning_rate=0.1)
    with pytest.raises(ValueError, match="unknown dataset"):
        make_config("smoke", dataset="svhn")
    for field, value in [("use_omega", "False"), ("labels", 2.5), ("labels", True), ("width", "x"), ("amp", "no"), ("labels", None)]:
        with pytest.raises(ValueError, match=f"config field {field} must be"):
            make_config("smoke", **{field: value})
    cfg = make_config("smoke", labels=np.int64(50), lr=1, hist_epochs=[0, 1], amp=None)  # numpy ints, ints for floats
    assert (cfg.labels, cfg.lr, cfg.hist_epochs) == (50, 1, (0, 1)) and (type(cfg.labels), type(cfg.lr)) == (int, float)
    assert run_id(cfg) == run_id(make_config("smoke", labels=50, lr=1.0, hist_epochs=(0, 1)))


def test_cli_reads_json_and_python_literals(capsys):
    from lpnb.cli import _value, main
    assert [_value(t) for t in ("false", "False", "True", "None", "null", "3", "0.5", "[0, 7]", "reduce-overhead")] == \
        [False, False, True, None, None, 3, 0.5, [0, 7], "reduce-overhead"]
    with pytest.raises(SystemExit):  # a wrong type exits with a message, before any training
        main(["run", "--preset", "smoke", "--use-omega", "no"])
    assert "config field use_omega must be bool, got 'no'" in capsys.readouterr().err


def test_notebook_settings_smoke_test_forces_smoke_and_training(monkeypatch, tmp_path):
    from lpnb.experiment import notebook_settings
    monkeypatch.setenv("SMOKE_TEST", "1")
    monkeypatch.setenv("LPNB_SMOKE_DIR", str(tmp_path))
    s = notebook_settings("paper", results_dir="/committed/results", splits=None, train=False)
    assert (s.preset, s.results_dir, s.figures_dir, s.splits, s.train) == ("smoke", tmp_path / "results", tmp_path / "figures", 1, True)
    monkeypatch.delenv("SMOKE_TEST")
    s = notebook_settings("paper", results_dir=tmp_path, train=False)
    assert (s.preset, s.splits, s.train) == ("paper", 10, False)
    assert notebook_settings("paper", dataset="cifar100").splits == 3
    assert notebook_settings("cpu").splits == 3  # the splits recorded and reported: make reproduce regenerates them


def test_run_rows_without_training_lists_what_is_missing(env, capsys):
    from lpnb.experiment import run_rows
    root, results = env
    done = run(smoke("supervised"), data_root=root, results_dir=results, progress=False)
    records = run_rows([{"method": "supervised"}, {"method": "lp"}], 50, 1, preset="smoke", results_dir=results,
                       train=False, unlabeled_size=200, test_size=100, device="cpu")
    assert [r["run_id"] for r in records] == [done["run_id"]]
    assert "not run yet (1): cifar10-50-lp-split0-smoke" in capsys.readouterr().out


def test_recorded_returns_finished_runs_and_the_missing_ids(env):
    from lpnb.experiment import recorded
    root, results = env
    done = run(smoke("supervised"), data_root=root, results_dir=results, progress=False)
    kw = dict(preset="smoke", results_dir=results, unlabeled_size=200, test_size=100, device="cpu")
    records, missing = recorded([{"method": "supervised"}, {"method": "lp"}], [50], 2, **kw)
    assert [r["run_id"] for r in records] == [done["run_id"]]
    assert [m.rsplit("-", 1)[0] for m in missing] == ["cifar10-50-supervised-split1-smoke", "cifar10-50-lp-split0-smoke",
                                                      "cifar10-50-lp-split1-smoke"]
    assert len(recorded([{"method": "lp"}], 50, dataset="cifar100", **{**kw, "preset": "paper"})[1]) == 3  # the paper's 3 splits


def test_miniimagenet_stand_in_trains_resnet18_end_to_end(tmp_path, monkeypatch):
    """Ravi & Larochelle's csv layout (images/ folder), 4 classes x 24 images at 84x84: the ResNet-18 and
    the Mini-ImageNet augmentation through both stages, with top-5 error recorded."""
    monkeypatch.setenv("LPNB_CACHE_DIR", str(tmp_path / "cache"))
    folder = tmp_path / "data" / "miniimagenet"
    (folder / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = {"train": [], "val": [], "test": []}
    for c, split in enumerate(["train", "train", "val", "test"]):
        wnid = f"n0{c}"
        for j in range(24):
            name = f"{wnid}{j:08d}.jpg"
            Image.fromarray(rng.integers(0, 255, (84, 84, 3), dtype=np.uint8)).save(folder / "images" / name)
            rows[split].append(f"{name},{wnid}")
    for split, lines in rows.items():
        (folder / f"{split}.csv").write_text("filename,label\n" + "\n".join(lines) + "\n")
    cfg = make_config("smoke", dataset="miniimagenet", method="lp", labels=8, unlabeled_size=None, test_size=None,
                      batch_size=16, labeled_batch_size=8, epochs_stage1=1, epochs_stage2=1, k=5, device="cpu")
    rec = run(cfg, data_root=tmp_path / "data", results_dir=tmp_path / "results", progress=False)
    assert rec["config"]["arch"] == "resnet18" and (rec["n_train"], rec["n_test"]) == (80, 16)
    assert 0 <= rec["test_error_top5"] <= rec["test_error"] <= 100
    assert [h["stage"] for h in rec["history"]] == [1, 2]


@pytest.mark.gpu
@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("compile", [None, True])  # None: the CUDA default, CUDA graphs
def test_cuda_fast_path_runs_mean_teacher_plus_lp(env, compile):
    root, results = env
    rec = run(make_config("smoke", method="mt+lp", labels=50, unlabeled_size=200, test_size=100, device="cuda", compile=compile),
              data_root=root, results_dir=results, progress=False)
    assert rec["config"]["amp"] and rec["config"]["channels_last"] and rec["config"]["compile"] == (compile or "reduce-overhead")
    assert 0 <= rec["test_error"] <= 100 and not rec["device"].startswith("cpu")


def test_side_by_side_marks_a_cell_not_run():
    def record(labels, method, error):
        return {"dataset": "cifar100", "labels": labels, "method": method, "preset": "cpu", "device": "cpu",
                "config": {"use_omega": True, "use_zeta": True}, "test_error": error}
    records = [record(4000, "supervised", 70.0), record(4000, "supervised", 71.0), record(4000, "mt", 75.0),
               record(10000, "supervised", 60.0)]
    table = experiment.side_by_side(experiment.summarize(records))
    assert table.loc["mt", ("cifar100", 10000, "top1")] == "not run"
    assert table.loc["mt", ("cifar100", 4000, "top1")] == "75.00"  # one split: no ± 0.00 as if measured
    assert table.loc["supervised", ("cifar100", 4000, "top1")] == "70.50 ± 0.50"


def test_write_table_updates_the_cells_it_has_and_keeps_the_rest(tmp_path):
    import pandas as pd

    def record(labels, method, error, preset="cpu"):
        return {"dataset": "cifar10", "labels": labels, "method": method, "preset": preset, "device": "cpu",
                "config": {"use_omega": True, "use_zeta": True}, "test_error": error}
    path = tmp_path / "table2.csv"
    full = [record(labels, method, e + s) for labels, e in ((500, 50.0), (1000, 40.0))
            for method in ("supervised", "lp") for s in (0, 2)]
    experiment.write_table(experiment.summarize(full), path)
    experiment.write_table(experiment.summarize([record(500, "lp", 33.5)]), path)  # `-p labels 500 -p splits 1`
    experiment.write_table(experiment.summarize([record(500, "lp", 30.0, preset="paper")]), path)
    experiment.write_table(experiment.summarize([]), path)  # nothing recorded: the file is left as it is
    rows = [(r.labels, r.method, r.preset, r.ours_mean, r.splits) for r in pd.read_csv(path).itertuples()]
    assert rows == [(500, "supervised", "cpu", 51.0, 2), (500, "lp", "cpu", 33.5, 1), (1000, "supervised", "cpu", 41.0, 2),
                    (1000, "lp", "cpu", 41.0, 2), (500, "lp", "paper", 30.0, 1)]
