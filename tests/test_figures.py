"""Figure 6 (lpnb.plots) drawn from the run records committed in results/runs."""
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from lpnb.experiment import REPO
from lpnb.plots import plot_figure6, plot_figure7
from lpnb.tables import recorded, summarize


def test_figure6_draws_the_full_protocol_cells_beside_the_smaller_preset():
    rows, labels = [{"method": "supervised"}, {"method": "lp"}], [500, 1000, 2000, 4000]
    cpu, _ = recorded(rows, labels, 1, preset="cpu")
    full, _ = recorded(rows, labels, preset="paper")
    assert cpu and full, "results/runs should hold cpu- and paper-preset runs of Table 2"
    full_table = summarize(full)
    fig = plot_figure6(summarize(cpu), pd.read_csv(REPO / "results/paper/table2.csv"), full_table)
    series = {c.get_label(): c.lines[0] for c in fig.axes[0].containers}
    supervised = full_table[full_table.method == "supervised"].sort_values("labels")
    line = series["Fully supervised, full protocol"]
    assert line.get_marker() == "s" and line.get_linestyle() == ":"
    np.testing.assert_allclose(np.asarray(line.get_xdata(), float), supervised.labels)
    np.testing.assert_allclose(np.asarray(line.get_ydata(), float), supervised.ours_mean)
    assert "Fully supervised" in series and "full protocol dotted" in fig.axes[0].get_title()
    without = plot_figure6(summarize(cpu))
    assert not any("full protocol" in c.get_label() for c in without.axes[0].containers)


def test_figure7_shows_the_mistakes_or_says_there_are_none():
    images = np.zeros((5, 32, 32, 3), np.uint8)
    data = SimpleNamespace(train_images=images, classes=["airplane", "automobile", "bird"])
    mistakes = [{"index": i, "pseudo_label": 1, "label": 0, "omega": 0.9 - i / 10} for i in range(3)]
    record = {"run_id": "r", "history": [{"stage": 1}, {"stage": 2}], "confident_mistakes": mistakes}
    fig = plot_figure7(record, data)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["auto(0.90)", "auto(0.80)", "auto(0.70)"]  # the paper's short class names
    assert [t.get_text() for t in fig.texts] == ["run r"]
    full = {**record, "preset": "paper", "split": 2, "data": "cifar10 from cifar10.tar.gz"}
    assert [t.get_text() for t in plot_figure7(full, data).texts] == [
        "paper preset, split 2, run r, cifar10 from cifar10.tar.gz"]  # the run the figure is drawn from
    empty = plot_figure7({**record, "confident_mistakes": []}, data)
    assert [t.get_text() for t in empty.axes[0].texts] == ["no wrong pseudo-label in the last epoch"]
    with pytest.raises(ValueError, match="has no stage 2"):
        plot_figure7({**record, "history": [{"stage": 1}]}, data)
