"""Figure 6 (lpnb.plots) drawn from the run records committed in results/runs."""
import numpy as np
import pandas as pd

from lpnb.experiment import REPO, recorded, summarize
from lpnb.plots import plot_figure6


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
