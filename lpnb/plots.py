"""The paper's figures, drawn with matplotlib, and `save_figure` to write any figure.

Figure functions return a closed pyplot figure: it shows inline when it is a notebook
cell's value (not twice), and pyplot keeps no reference to it.
"""
import functools
import textwrap
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from lpnb.data import REPO, atomic_write, make_folder
from lpnb.graph import _check_param
from lpnb.tables import DATASET_NAMES, from_project_copy, pseudo_labeller, stage2_history, summarize
from lpnb.toy import unlabeled_accuracy

CLASS_COLORS = ["#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd",
                "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f"]
UNLABELED_COLOR = "#b0b0b0"
MAX_AREA = 60  # marker area (pt^2) of an unlabeled point with omega = 1
TRIANGLE_AREA = 90


def _class_colors(labels):
    labels = np.asarray(labels)
    if labels.max() >= len(CLASS_COLORS):
        raise ValueError(f"toy plots colour at most {len(CLASS_COLORS)} classes, got labels up to {labels.max()}")
    return np.array(CLASS_COLORS)[labels]


def _as_mask(labeled, n):
    labeled = np.asarray(labeled)
    if labeled.dtype == bool:
        return labeled
    mask = np.zeros(n, bool)
    mask[labeled] = True
    return mask


def _clean(ax, points):
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    pad = 0.05 * np.ptp(points, 0).max()
    ax.set_xlim(points[:, 0].min() - pad, points[:, 0].max() + pad)
    ax.set_ylim(points[:, 1].min() - pad, points[:, 1].max() + pad)


def _draw_labeled(ax, points, labels, mask):
    ax.scatter(*points[mask].T, s=TRIANGLE_AREA, marker="^", c=_class_colors(labels[mask]),
               edgecolors="black", linewidths=0.8, zorder=3)


def _draw_ground_truth(ax, points, labels, mask):
    """Labeled points as triangles in their class colour, unlabeled ones as gray circles."""
    ax.scatter(*points[~mask].T, s=MAX_AREA / 2, c=UNLABELED_COLOR, linewidths=0, zorder=1)
    _draw_labeled(ax, points, labels, mask)
    _clean(ax, points)


def _draw_pseudo_labels(ax, points, labels, mask, result):
    """Unlabeled points coloured by pseudo-label, marker area proportional to omega (to 3 decimals: float32 sums
    that differ in their last bits from one CPU to another draw the same figure, to the byte)."""
    area = MAX_AREA * np.round(np.asarray(result.weights, np.float64)[~mask], 3)
    ax.scatter(*points[~mask].T, s=area, c=_class_colors(result.pseudo_labels[~mask]),
               alpha=0.85, linewidths=0, zorder=2)
    _draw_labeled(ax, points, labels, mask)
    _clean(ax, points)


def _legend(fig, n_classes, unlabeled):
    """One legend under the panels: colour = class, triangle = labeled, circle = unlabeled."""
    handles = [Patch(color=CLASS_COLORS[j], label=f"class {j}") for j in range(n_classes)]
    handles += [Line2D([], [], ls="", marker="^", ms=8, mfc="white", mec="black", label="labeled"),
                Line2D([], [], ls="", marker="o", ms=7, mfc="white", mec="black", label=unlabeled)]
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=8, frameon=False,
               handlelength=1.0, handletextpad=0.4, columnspacing=1.0)


def plot_figure1(points, labels, labeled, result):
    """Paper Figure 1: label propagation on a toy example, two panels.

    Top: ground truth of the labeled points (triangles, class colours), unlabeled points
    in gray. Bottom: pseudo-labels by diffusion (circles, class colours, area proportional
    to the certainty omega of eq. 11), labeled points as triangles.
    points (n, 2), labels (n,) true labels, labeled (n,) bool mask or index array,
    result: the `PseudoLabels` returned by `lpnb.diffusion.propagate` on these points.
    """
    points, labels = np.asarray(points), np.asarray(labels)
    mask = _as_mask(labeled, len(points))
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(4.2, 8.0), layout="constrained")
    plt.close(fig)
    _draw_ground_truth(top, points, labels, mask)
    top.set_title("Ground truth: labeled (triangles), unlabeled (gray)", fontsize=9)
    _draw_pseudo_labels(bottom, points, labels, mask, result)
    bottom.set_title("Pseudo-labels by diffusion (circle area $\\propto \\omega_i$)", fontsize=9)
    _legend(fig, labels.max() + 1, "unlabeled")
    return fig


def plot_figure3(points, labels, labeled_masks, results):
    """Paper Figure 3: label propagation with different numbers of labeled points.

    One panel per (labeled mask, `PseudoLabels`) pair, drawn like Figure 1 (bottom):
    labeled points as triangles, unlabeled ones coloured by pseudo-label with area
    proportional to omega. Each title gives the number of labeled points per class and
    the accuracy of the pseudo-labels on the unlabeled points.
    """
    points, labels = np.asarray(points), np.asarray(labels)
    if len(labeled_masks) != len(results) or not results:
        raise ValueError(f"need one result per labeled mask, got {len(labeled_masks)} masks and {len(results)} results")
    fig, axes = plt.subplots(1, len(results), figsize=(3.0 * len(results), 3.6), layout="constrained", squeeze=False)
    plt.close(fig)
    for ax, labeled, result in zip(axes[0], labeled_masks, results):
        mask = _as_mask(labeled, len(points))
        _draw_pseudo_labels(ax, points, labels, mask, result)
        per_class = np.bincount(labels[mask])
        count = f"{per_class[0]}" if (per_class == per_class[0]).all() else "/".join(map(str, per_class))
        accuracy = unlabeled_accuracy(result, labels, mask)
        ax.set_title(f"{count} labeled per class\npseudo-label accuracy {100 * accuracy:.1f}%", fontsize=9)
    _legend(fig, labels.max() + 1, "unlabeled, coloured by pseudo-label, area $\\propto \\omega_i$")
    return fig


def _repo_figures_dir():
    if not (REPO / "pyproject.toml").exists():
        raise ValueError("figures_dir not given and lpnb is not imported from a source checkout; pass figures_dir")
    return REPO / "figures"


def save_figure(fig, name, figures_dir=None, dpi=200):
    """Write `fig` to <figures_dir>/<name>.pdf and .png atomically; return the two paths.

    figures_dir defaults to the repository's figures/ (found from lpnb's location), so the
    result does not depend on the current directory. Each file is written to a temporary
    file in the same directory and moved into place (`lpnb.data.atomic_write`).
    """
    if not name or Path(name).name != name or Path(name).suffix:
        raise ValueError(f"name must be a bare file name without extension, e.g. 'figure1', got {name!r}")
    figures_dir = Path(figures_dir) if figures_dir is not None else _repo_figures_dir()
    make_folder(figures_dir)
    paths = []
    # no dates or software versions in the files: the same figure gives the same bytes with any matplotlib
    pdf, png = {"CreationDate": None, "Creator": None, "Producer": None}, {"Software": None}
    for fmt, metadata in (("pdf", pdf), ("png", png)):
        path = figures_dir / f"{name}.{fmt}"
        atomic_write(path, functools.partial(fig.savefig, format=fmt, dpi=dpi, metadata=metadata))
        paths.append(path)
    return paths


# --- Figures 4-7: from run records (lpnb.experiment) ----------------------------------------
METHOD_STYLE = {"supervised": ("Fully supervised", "#7f7f7f"), "network": ("Network prediction + weights", "#ff7f0e"),
                "lp": ("Ours (diffusion + weights)", "#1f77b4"), "gtg": ("GTG + weights", "#8c564b"),
                "mt": ("Mean Teacher", "#2ca02c"), "mt+lp": ("Mean Teacher + ours", "#d62728")}


SHORT_NAMES = {"automobile": "auto", "airplane": "plane"}  # as Figure 7 of the paper writes them


def describe_runs(records):
    """What a figure is drawn from, in one line: the preset, splits, run id (of a single run), hardware and data
    of `records`."""
    def values(key):
        return sorted({r[key] for r in records if key in r})
    data = sorted({r["data"] + " (JPEG q95 copy)" * from_project_copy(r) for r in records if "data" in r})
    splits, devices = [str(s) for s in values("split")], values("device")
    parts = [f"{', '.join(values('preset'))} preset" if values("preset") else None, _reduced_protocol(records),
             f"split{'s' * (len(splits) > 1)} {', '.join(splits)}" if splits else None,
             f"run {records[0]['run_id']}" if len(records) == 1 else None,
             f"on {'; '.join(devices)}" if devices else None, *data]
    return ", ".join(p for p in parts if p)


def _reduced_protocol(records):
    """How the runs not at the paper preset differ from the paper's protocol, e.g. "not the paper's protocol:
    5000 unlabeled images, width 0.25, 60 + 15 epochs"; None when every run is at the paper preset."""
    configs = [r["config"] for r in records if r.get("preset") != "paper" and "config" in r]
    if not configs:
        return None

    def values(key):  # e.g. "5000", or "5000/all" for runs of several values
        return "/".join("all" if v is None else str(v) for v in sorted({c.get(key) for c in configs}, key=str))
    return (f"not the paper's protocol: {values('unlabeled_size')} unlabeled images, width {values('width')}, "
            f"{values('epochs_stage1')} + {values('epochs_stage2')} epochs")


def _caption(fig, *lines):
    """Lines under the figure (what it is drawn from), in small grey type, wrapped to the figure's width."""
    lines = [part for line in lines if line for part in textwrap.wrap(line, int(22 * fig.get_figwidth()))]
    fig.tight_layout(rect=(0, (0.06 + 0.12 * len(lines)) / fig.get_figheight(), 1, 1))  # 0.12 inch a line
    fig.text(0.01, 0.005, "\n".join(lines), fontsize=5.5, color="#555555", ha="left", va="bottom")


def plot_figure4(record):
    """Pseudo-label accuracy (%) on the unlabeled images per stage-2 epoch: diffusion (eq. 7) vs network (eq. 1)."""
    hist = stage2_history(record)
    if not hist:
        raise ValueError(f"run {record['run_id']} has no stage 2: Figure 4 needs a run of method 'lp'")
    epochs = [h["epoch"] for h in hist]
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    ax.plot(epochs, [h["pseudo_label_acc"] for h in hist], color="#1f77b4", label=pseudo_labeller(record))
    ax.plot(epochs, [h["network_acc"] for h in hist], color="#ff7f0e", label="Network (1)")
    ax.set(xlabel="epoch", ylabel="pseudo-label accuracy (%)",
           title=f"{DATASET_NAMES.get(record['dataset'], record['dataset'])}, {record['labels']} labels")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs: no 0.2 of one on a short run
    ax.grid(alpha=0.3)
    ax.legend()
    _caption(fig, describe_runs([record]))
    plt.close(fig)
    return fig


def plot_figure5(record):
    """Histograms of omega for unlabeled images at the recorded epochs: correct pseudo-labels (blue) with the
    incorrect ones (red) stacked on them, so that a bar's height is every image in its bin."""
    hists = record["omega_histograms"]
    if not hists:
        raise ValueError(f"run {record['run_id']} recorded no omega histograms: Figure 5 needs a run of method 'lp'")
    fig, axes = plt.subplots(1, len(hists), figsize=(4 * len(hists), 3.2), sharey=True, squeeze=False)
    for ax, h in zip(axes[0], hists):
        edges = np.asarray(h["edges"])
        width = np.diff(edges)
        ax.bar(edges[:-1], h["correct"], width, align="edge", color="#1f77b4", label="correct")
        ax.bar(edges[:-1], h["incorrect"], width, bottom=h["correct"], align="edge", color="#d62728", label="incorrect")
        last = record["config"]["epochs_stage2"] - 1
        ax.set(xlabel=r"$\omega_i$", title=f"stage-2 epoch {h['epoch']} (epochs 0-{last})", xlim=(0, 1))
    axes[0, 0].set_ylabel("number of unlabeled images")
    axes[0, 0].legend()
    _caption(fig, describe_runs([record]))
    plt.close(fig)
    return fig


def plot_figure6(records, paper=None, full_records=None, methods=None):
    """Error (%) vs number of labels per method: ours as solid lines with std bars, the paper's dashed.

    `records` are the runs of Table 2's cells; `paper` the DataFrame of results/paper/table2.csv;
    `full_records`, if given, the runs of cells at the paper's full protocol (preset `paper`) when
    `records` are a smaller preset's, drawn as squares on dotted lines; `methods`, the methods drawn
    (None: every one). The caption says what each set of lines is drawn from.
    """
    table, full = summarize(records), summarize(full_records) if full_records else None
    fig, ax = plt.subplots(figsize=(5, 3.6))
    for method, (name, color) in METHOD_STYLE.items():
        if methods is not None and method not in methods:
            continue
        ours = _top1(table, method)
        if len(ours):
            ax.errorbar(ours.labels, ours.ours_mean, yerr=ours.ours_std, color=color, marker="o", capsize=3, label=name)
        at_scale = _top1(full, method) if full is not None else []
        if len(at_scale):
            ax.errorbar(at_scale.labels, at_scale.ours_mean, yerr=at_scale.ours_std, color=color, marker="s", ls=":",
                        capsize=3, label=f"{name}, full protocol")
        if paper is not None:
            theirs = paper[(paper.method == method) & (paper.metric == "top1")].sort_values("labels")
            if len(theirs):
                ax.plot(theirs.labels, theirs.error, color=color, ls="--", marker="x", alpha=0.6,
                        label=None if len(ours) else f"{name} (paper)")
    ax.set_xscale("log")
    ticks = sorted(set(table.labels) | (set(paper.labels) if paper is not None else set()))
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.minorticks_off()
    styles = ", ".join([("ours solid" if records else "no run of ours recorded")]
                       + ["full protocol dotted"] * (full is not None) + ["paper dashed"] * (paper is not None))
    ax.set(xlabel="number of labeled images", ylabel="error (%)", title=f"CIFAR-10: {styles}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    _caption(fig, records and f"solid: {describe_runs(records)}",
             full is not None and f"dotted: {describe_runs(full_records)}")
    plt.close(fig)
    return fig


def _top1(table, method):
    """The rows of a summary for one method with both weights, top-1 error, sorted by label count."""
    rows = (table.method == method) & table.use_omega & table.use_zeta & (table.metric == "top1")
    return table[rows].sort_values("labels")


def plot_figure7(record, data, n_images=12):
    """The wrong pseudo-labels with the highest omega: image, predicted class and omega (Figure 7).

    `data` is the `lpnb.data.ImageData` the run used (for the images and class names), or another copy
    of the same images in the same order (the caption then names the copy shown). Data whose labels
    disagree with the record's raises ValueError.
    """
    if not stage2_history(record):
        raise ValueError(f"run {record['run_id']} has no stage 2: Figure 7 needs a run of method 'lp'")
    n_images = _check_param("n_images", n_images, "count")
    mistakes = record["confident_mistakes"][:n_images]
    other = [m["index"] for m in mistakes
             if m["index"] >= len(data.train_labels) or data.train_labels[m["index"]] != m["label"]]
    if other:
        raise ValueError(f"these are not the images of run {record['run_id']} ({record.get('data', 'its data')}): "
                         f"training images {other[:5]} have another class here, or none. Pass the dataset the run "
                         "was made from (lpnb.data.load_dataset with its data root; in the notebook: data_root, the "
                         "folder that holds that copy).")
    source = Path(data.source).name
    other_copy = source and source != record.get("data_source", source)
    recorded = len(record["confident_mistakes"])
    caption = ", ".join([describe_runs([record])] + [f"images from {source}"] * bool(other_copy)
                        + [f"the {recorded} most confident mistakes the run recorded"] * (0 < recorded < n_images))
    if not mistakes:  # every pseudo-label of the last epoch is right
        fig, ax = plt.subplots(figsize=(4.2, 1.2))
        ax.axis("off")
        ax.text(0.5, 0.5, "no wrong pseudo-label in the last epoch", ha="center", va="center")
        _caption(fig, caption)
        plt.close(fig)
        return fig
    cols = min(6, len(mistakes))
    rows = -(-len(mistakes) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(max(1.4 * cols, 4.2), 1.6 * rows + 0.2), squeeze=False)
    for ax in axes.flat[len(mistakes):]:
        ax.axis("off")
    for ax, m in zip(axes.flat, mistakes):
        img = data.train_images[m["index"]]
        ax.imshow(img.squeeze(-1) if img.shape[-1] == 1 else img, cmap="gray" if img.shape[-1] == 1 else None)
        name = SHORT_NAMES.get(data.classes[m["pseudo_label"]], data.classes[m["pseudo_label"]])
        ax.set(xticks=[], yticks=[])  # the axis kept for its label, below the image as in the paper
        ax.spines[:].set_visible(False)
        ax.set_xlabel(f"{name}({m['omega']:.2f})", fontsize=8)
    _caption(fig, caption)
    plt.close(fig)
    return fig
