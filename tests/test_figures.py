"""Figures 4-7 (lpnb.plots): what each draws, from run records (Figure 6 from those in results/runs)."""
from dataclasses import asdict
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_rgb

from lpnb.config import make_config
from lpnb.experiment import REPO
from lpnb.plots import describe_runs, plot_figure4, plot_figure5, plot_figure6, plot_figure7
from lpnb.tables import recorded, summarize


def captions(fig):
    """The figure's texts, their line breaks (wrapping) as spaces."""
    return [t.get_text().replace("\n", " ") for t in fig.texts]


def test_figure6_draws_the_full_protocol_cells_beside_the_smaller_preset():
    rows, labels = [{"method": "supervised"}, {"method": "lp"}], [500, 1000, 2000, 4000]
    cpu, _ = recorded(rows, labels, preset="cpu")
    full, _ = recorded(rows, labels, preset="paper")
    assert cpu and full, "results/runs should hold cpu- and paper-preset runs of Table 2"
    table, full_table, paper = summarize(cpu), summarize(full), pd.read_csv(REPO / "results/paper/table2.csv")
    assert (table.splits > 1).all()  # spreads to draw
    fig = plot_figure6(cpu, paper, full)
    ax = fig.axes[0]
    series = {c.get_label(): c for c in ax.containers}
    for name, summary in (("Fully supervised", table), ("Fully supervised, full protocol", full_table),
                          ("Ours (diffusion + weights)", table)):
        method = "lp" if name.startswith("Ours") else "supervised"
        cells = summary[summary.method == method].sort_values("labels")
        line, _, (bars,) = series[name].lines
        np.testing.assert_allclose(np.asarray(line.get_xdata(), float), cells.labels)
        np.testing.assert_allclose(np.asarray(line.get_ydata(), float), cells.ours_mean)
        half = [abs(seg[1, 1] - seg[0, 1]) / 2 for seg in bars.get_segments()]  # each error bar spans mean +- std
        np.testing.assert_allclose(half, cells.ours_std, atol=1e-9)
    line = series["Fully supervised, full protocol"].lines[0]
    assert line.get_marker() == "s" and line.get_linestyle() == ":"
    dashed = {(tuple(ln.get_xdata()), tuple(ln.get_ydata())) for ln in ax.lines if ln.get_linestyle() == "--"}
    for method in ("supervised", "lp", "mt", "mt+lp", "network"):  # the paper's numbers, as Table 2 gives them
        theirs = paper[(paper.method == method) & (paper.metric == "top1")].sort_values("labels")
        assert (tuple(theirs.labels), tuple(theirs.error)) in dashed
    assert "full protocol dotted" in ax.get_title()
    devices = "; ".join(sorted({r["device"] for r in full}))  # the GPUs of the paper-scale runs recorded so far
    assert captions(fig) == [  # what each set of lines is drawn from
        "solid: cpu preset, not the paper's protocol: 5000 unlabeled images, width 0.25, 60 + 15 epochs, splits 0, "
        "1, 2, on cpu (2 cores, x86_64), cifar10 from cifar10.tar.gz (JPEG q95 copy) dotted: paper preset, "
        f"splits 0, 1, 2, on {devices}, cifar10 from cifar10.tar.gz (JPEG q95 copy)"]
    assert "NVIDIA H200" in devices  # (a paper-scale run on new hardware adds its GPU to the caption)
    assert plot_figure6([], paper).axes[0].get_title() == "CIFAR-10: no run of ours recorded, paper dashed"
    selected = plot_figure6(cpu, paper, methods=["lp"]).axes[0]  # the paper's lines of the methods selected only
    assert [c.get_label() for c in selected.containers] == ["Ours (diffusion + weights)"]
    assert sum(ln.get_linestyle() == "--" for ln in selected.lines) == 1
    without = plot_figure6(cpu)
    assert not any("full protocol" in c.get_label() for c in without.axes[0].containers)
    assert without.axes[0].get_title() == "CIFAR-10: ours solid"  # no paper's line to name
    assert captions(without) == [captions(fig)[0].split(" dotted: ")[0]]
    split0 = [r for r in cpu if r["split"] == 0]
    one_split = summarize(split0)  # no spread: points without error bars
    assert one_split.ours_std.isna().all()
    line = {c.get_label(): c for c in plot_figure6(split0).axes[0].containers}["Fully supervised"].lines[0]
    np.testing.assert_allclose(np.asarray(line.get_ydata(), float), one_split[one_split.method == "supervised"]
                               .sort_values("labels").ours_mean)


def _lp_record(hist_epochs=(0, 90)):
    history = [{"stage": 1, "epoch": 0}] + [{"stage": 2, "epoch": e, "pseudo_label_acc": 60 + e / 10,
                                             "network_acc": 55 + e / 20} for e in range(180)]
    edges = np.linspace(0, 1, 5).tolist()
    hists = [{"epoch": e, "edges": edges, "correct": [1 + e, 2, 3, 4], "incorrect": [5, 6, 7 + e, 8]}
             for e in hist_epochs]
    return {"run_id": "r", "method": "lp", "dataset": "cifar10", "labels": 500, "history": history,
            "omega_histograms": hists, "preset": "paper", "config": asdict(make_config("paper", method="lp"))}


def test_figure4_draws_both_pseudo_label_accuracies_of_every_stage2_epoch():
    record = _lp_record()
    ax = plot_figure4(record).axes[0]
    lines = {ln.get_label(): ln for ln in ax.lines}
    stage2 = record["history"][1:]
    for label, key in (("Diffusion (7)", "pseudo_label_acc"), ("Network (1)", "network_acc")):
        np.testing.assert_allclose(lines[label].get_ydata(), [h[key] for h in stage2])
        np.testing.assert_allclose(lines[label].get_xdata(), range(180))
    assert ax.get_title() == "CIFAR-10, 500 labels"
    short = _lp_record()
    short["history"] = short["history"][:3]  # two stage-2 epochs, as at the smoke preset: whole epochs on the axis
    ticks = plot_figure4(short).axes[0].get_xticks()
    assert len(ticks) and all(float(t).is_integer() for t in ticks)
    assert plot_figure4({**short, "method": "gtg"}).axes[0].get_legend_handles_labels()[1] == ["GTG", "Network (1)"]


def test_figure5_shows_the_recorded_epochs_correct_in_blue_and_incorrect_in_red():
    record = _lp_record()
    fig = plot_figure5(record)
    assert [ax.get_title() for ax in fig.axes] == ["stage-2 epoch 0 (epochs 0-179)", "stage-2 epoch 90 (epochs 0-179)"]
    for ax, h in zip(fig.axes, record["omega_histograms"]):
        blue = [b.get_height() for b in ax.patches if b.get_facecolor()[:3] == to_rgb("#1f77b4")]
        red = [b.get_height() for b in ax.patches if b.get_facecolor()[:3] == to_rgb("#d62728")]
        assert (blue, red) == (h["correct"], h["incorrect"])
        assert [b.get_y() for b in ax.patches if b.get_facecolor()[:3] == to_rgb("#d62728")] == h["correct"]  # stacked
    assert make_config("paper", method="lp").hist_epochs == (0, 90)  # as the paper's Figure 5


def test_figure7_shows_the_mistakes_or_says_there_are_none():
    images = np.zeros((5, 32, 32, 3), np.uint8)
    data = SimpleNamespace(train_images=images, train_labels=np.zeros(5, np.int64),
                           classes=["airplane", "automobile", "bird"], source="/data/cifar10.tar.gz")
    mistakes = [{"index": i, "pseudo_label": 1, "label": 0, "omega": 0.9 - i / 10} for i in range(3)]
    record = {"run_id": "r", "history": [{"stage": 1}, {"stage": 2}], "confident_mistakes": mistakes}
    fig = plot_figure7(record, data)
    names = [ax.get_xlabel() for ax in fig.axes if ax.get_xlabel()]
    assert names == ["auto(0.90)", "auto(0.80)", "auto(0.70)"]  # the paper's short class names, below each image
    assert [t.get_text() for t in fig.texts] == ["run r, the 3 most confident mistakes the run recorded"]  # of 12
    full = {**record, "preset": "paper", "split": 2, "data": "cifar10 from cifar10.tar.gz", "device": "NVIDIA H200",
            "data_content": "2ad0627943a0028a"}  # the project's copy
    assert captions(plot_figure7(full, data)) == [
        "paper preset, split 2, run r, on NVIDIA H200, cifar10 from cifar10.tar.gz (JPEG q95 copy), the 3 "
        "most confident mistakes the run recorded"]
    narrow = plot_figure7({**full, "run_id": "cifar10-500-lp-split2-paper-0123abcd"}, data)  # 4.2 inches wide
    narrow.canvas.draw()
    assert narrow.texts[0].get_window_extent().x1 <= narrow.bbox.x1  # the caption wraps to fit
    torchvision = {**full, "data": "cifar10 from cifar-10-batches-py", "data_content": "fedcba9876543210"}
    assert captions(plot_figure7(torchvision, data, 3)) == [
        "paper preset, split 2, run r, on NVIDIA H200, cifar10 from cifar-10-batches-py"]  # torchvision's: the pixels
    assert captions(plot_figure7({**full, "data_content": "0123456789abcdef"}, data, 3)) == [  # one's own images
        "paper preset, split 2, run r, on NVIDIA H200, cifar10 from cifar10.tar.gz"]
    empty = plot_figure7({**full, "confident_mistakes": []}, data)
    assert [t.get_text() for t in empty.axes[0].texts] == ["no wrong pseudo-label in the last epoch"]
    assert captions(empty) == captions(plot_figure7(full, data, 3))  # the run it would show, named all the same
    assert captions(plot_figure7(full, data, n_images=3)) == [  # as many as asked for: nothing to add
        "paper preset, split 2, run r, on NVIDIA H200, cifar10 from cifar10.tar.gz (JPEG q95 copy)"]
    one = plot_figure7({**full, "confident_mistakes": mistakes[:1]}, data)
    assert one.get_figwidth() >= 4.2 and len(one.texts[0].get_text().splitlines()) <= 2  # not a narrow column
    with pytest.raises(ValueError, match="has no stage 2"):
        plot_figure7({**record, "history": [{"stage": 1}]}, data)
    for n_images in (0, -3, "abc", 2.0):
        with pytest.raises(ValueError, match="n_images must be a positive integer"):
            plot_figure7(record, data, n_images)


def test_figure7_shows_the_most_confident_mistakes_first_with_their_own_images():
    images = np.arange(20, dtype=np.uint8)[:, None, None, None] * np.ones((1, 8, 8, 3), np.uint8)  # image i: all i
    data = SimpleNamespace(train_images=images, train_labels=np.zeros(20, np.int64), classes=["cat", "dog"],
                           source="")
    mistakes = [{"index": 19 - i, "pseudo_label": 1, "label": 0, "omega": 0.95 - i / 100} for i in range(20)]
    fig = plot_figure7({"run_id": "r", "history": [{"stage": 2}], "confident_mistakes": mistakes}, data, 12)
    shown = [ax for ax in fig.axes if ax.images]
    assert [ax.get_xlabel() for ax in shown] == [f"dog({0.95 - i / 100:.2f})" for i in range(12)]  # as recorded
    assert [int(ax.images[0].get_array()[0, 0, 0]) for ax in shown] == [19 - i for i in range(12)]


def test_figure7_names_another_copy_of_the_images_and_refuses_other_data():
    data = SimpleNamespace(train_images=np.zeros((5, 32, 32, 3), np.uint8), train_labels=np.array([0, 0, 2, 0, 0]),
                           classes=["airplane", "automobile", "bird"], source="/data/cifar-10-batches-py")
    mistakes = [{"index": i, "pseudo_label": 1, "label": 0, "omega": 0.9} for i in (0, 1)]
    record = {"run_id": "r", "history": [{"stage": 2}], "confident_mistakes": mistakes, "data_source": "cifar10.tar.gz"}
    assert [t.get_text() for t in plot_figure7(record, data, 2).texts] == ["run r, images from cifar-10-batches-py"]
    assert [t.get_text() for t in plot_figure7({**record, "data_source": "cifar-10-batches-py"}, data, 2).texts] == [
        "run r"]
    for index in (2, 5):  # another class here; no such image
        bad = {**record, "confident_mistakes": [*mistakes, {**mistakes[0], "index": index}]}
        with pytest.raises(ValueError, match=rf"not the images of run r .*training images \[{index}\].*in the "
                                             "notebook: data_root, the folder that holds that copy"):
            plot_figure7(bad, data)


def test_a_caption_says_how_a_smaller_preset_differs_from_the_papers_protocol():
    paper = _lp_record()
    assert "not the paper's protocol" not in describe_runs([paper])
    small = dict(paper, preset="cpu", config=asdict(make_config("cpu", method="lp")), run_id="s")
    assert "cpu, paper preset, not the paper's protocol: 5000 unlabeled images, width 0.25, 60 + 15 epochs" in \
        describe_runs([paper, small])
    whole = dict(small, config=dict(small["config"], unlabeled_size=None))
    assert "5000/all unlabeled images" in describe_runs([small, whole])
