"""The toy data of Figures 1 and 3 (lpnb.toy) and the toy figures (lpnb.plots)."""
import re
from types import SimpleNamespace

import numpy as np
import pytest
from matplotlib.colors import to_rgba
from scipy.spatial import cKDTree

from lpnb.diffusion import propagate
from lpnb.plots import CLASS_COLORS, MAX_AREA, plot_figure1, plot_figure3, save_figure
from lpnb.toy import make_toy, pick_labeled, unlabeled_accuracy, where_least_certain


def test_make_toy_shapes_and_balance():
    points, labels = make_toy(300, 3, seed=0)
    assert points.shape == (300, 2) and points.dtype == np.float32
    assert labels.shape == (300,) and labels.dtype == np.int64
    assert np.bincount(labels).tolist() == [100, 100, 100]
    assert np.isfinite(points).all()
    counts = np.bincount(make_toy(301, 4, seed=0)[1])
    assert len(counts) == 4 and counts.max() - counts.min() <= 1 and counts.sum() == 301


def test_make_toy_seeded():
    a, b, c = make_toy(seed=3), make_toy(seed=3), make_toy(seed=4)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.allclose(a[0], c[0])


def test_make_toy_without_noise_lies_on_the_spiral_arms():
    turns, n_classes = 0.75, 3
    points, labels = make_toy(300, n_classes, noise=0.0, turns=turns, seed=0)
    r = np.hypot(points[:, 0], points[:, 1])
    expected = 2 * np.pi * (turns * r + labels / n_classes)
    diff = np.angle(np.exp(1j * (np.arctan2(points[:, 1], points[:, 0]) - expected)))
    assert np.abs(diff).max() < 1e-4
    assert r.min() >= 0.15 - 1e-6 and r.max() <= 1 + 1e-6


def test_make_toy_rejects_bad_sizes():
    with pytest.raises(ValueError, match="n_classes"):
        make_toy(300, 1)
    with pytest.raises(ValueError, match="n_points"):
        make_toy(2, 3)
    with pytest.raises(ValueError, match="n_points must be a positive integer, got '300'"):  # `papermill -p` text
        make_toy("300", 3)
    for bad in (-1, float("nan"), float("inf"), "0.1", True):
        with pytest.raises(ValueError, match=re.escape(f"noise must be a finite number >= 0, got {bad!r}")):
            make_toy(noise=bad)
    with pytest.raises(ValueError, match="turns must be a finite number >= 0, got nan"):
        make_toy(turns=float("nan"))
    for bad in ("abc", 1.5, None, True, -1):  # None would be a fresh random seed: a figure that cannot be redrawn
        with pytest.raises(ValueError, match=re.escape(f"seed must be an integer >= 0, got {bad!r}")):
            make_toy(seed=bad)
    assert make_toy(seed=np.int64(3))[0].tolist() == make_toy(seed=3)[0].tolist()

def test_pick_labeled_per_class_nested_and_seeded():
    _, labels = make_toy(seed=0)
    masks = [pick_labeled(labels, m, seed=5) for m in (1, 3, 10)]
    for m, mask in zip((1, 3, 10), masks):
        assert mask.dtype == bool and np.bincount(labels[mask], minlength=3).tolist() == [m] * 3
    assert not (masks[0] & ~masks[1]).any() and not (masks[1] & ~masks[2]).any()
    assert np.array_equal(pick_labeled(labels, 3, seed=5), masks[1])
    assert not np.array_equal(pick_labeled(labels, 3, seed=6), masks[1])


@pytest.mark.parametrize("m", [0, 100, 101, "1", "1,2", 2.5, True])  # "1,2": `papermill -p n_labeled 1,2`
def test_pick_labeled_rejects_bad_counts(m):
    _, labels = make_toy(seed=0)  # 100 points a class: 100 labeled would leave none to propagate to
    with pytest.raises(ValueError, match=r"n_labeled, the labeled points per class, must be an integer in \[1, 99\]"):
        pick_labeled(labels, m)


def test_propagation_follows_the_manifolds():
    """3 labels per class: diffusion labels the unlabeled points almost perfectly, far
    better than giving each point the label of its nearest labeled point (Euclidean).
    Measured over seeds 0-29: accuracy mean 0.98, min 0.88; gain over nearest >= 0.15."""
    accuracies = []
    for seed in range(10):
        points, labels = make_toy(seed=seed)
        labeled = pick_labeled(labels, 3, seed=seed)
        result = propagate(points, labels, labeled, graph="gaussian", k=10, alpha=0.99)
        accuracy = (result.pseudo_labels[~labeled] == labels[~labeled]).mean()
        nearest = labels[labeled][cKDTree(points[labeled]).query(points[~labeled])[1]]
        assert accuracy > 0.85 and accuracy > (nearest == labels[~labeled]).mean() + 0.1, seed
        accuracies.append(accuracy)
    assert np.mean(accuracies) > 0.95


def test_toy_figures_and_save_figure(tmp_path):
    points, labels = make_toy(seed=0)
    masks = [pick_labeled(labels, m) for m in (1, 3)]
    results = [propagate(points, labels, mask, graph="gaussian", k=10) for mask in masks]
    top, bottom = plot_figure1(points, labels, masks[1], results[1]).axes
    assert top.get_title().startswith("Ground truth") and bottom.get_title().startswith("Pseudo-labels by diffusion")
    unlabeled, triangles = top.collections  # ground truth: the unlabeled points in gray, the labeled as triangles
    np.testing.assert_array_equal(unlabeled.get_offsets(), points[~masks[1]])
    np.testing.assert_array_equal(triangles.get_offsets(), points[masks[1]])
    fig = plot_figure3(points, labels, masks, results)
    assert len(fig.axes) == 2
    for ax, m, mask, result in zip(fig.axes, (1, 3), masks, results):  # the count and the unlabeled points' accuracy
        by_hand = (result.pseudo_labels[~mask] == labels[~mask]).mean()
        assert ax.get_title() == f"{m} labeled per class\npseudo-label accuracy {100 * by_hand:.1f}%"
    paths = save_figure(fig, "toy", tmp_path / "new")
    assert [p.name for p in paths] == ["toy.pdf", "toy.png"]
    assert sorted(p.name for p in (tmp_path / "new").iterdir()) == ["toy.pdf", "toy.png"]
    assert paths[1].read_bytes().startswith(b"\x89PNG")
    for path in paths:  # no software version or date: the same figure is the same bytes with any matplotlib
        assert b"Matplotlib" not in path.read_bytes() and b"CreationDate" not in path.read_bytes()
    for bad in ("toy.png", "sub/toy", ""):
        with pytest.raises(ValueError, match="name"):
            save_figure(fig, bad, tmp_path)
    with pytest.raises(ValueError, match="one result per labeled mask"):
        plot_figure3(points, labels, masks, results[:1])


def test_a_toy_figure_is_the_same_bytes_for_weights_that_differ_in_their_last_bits(tmp_path):
    """omega comes from float32 sums whose last bits differ from one CPU to another: the figure must not."""
    points, labels = make_toy(seed=0)
    mask = pick_labeled(labels, 3)
    result = propagate(points, labels, mask, graph="gaussian", k=10)
    other = SimpleNamespace(**vars(result))
    other.weights = np.nextafter(result.weights, np.float32(0))  # one float32 step down, all of them
    moved = SimpleNamespace(**{**vars(result), "weights": result.weights * 0.98})  # a change the eye could see
    files = [save_figure(plot_figure1(points, labels, mask, r), "toy", tmp_path / name)[0].read_bytes()
             for r, name in ((result, "a"), (other, "b"), (moved, "c"))]
    assert files[0] == files[1] != files[2]


def test_the_toy_figures_draw_each_unlabeled_point_in_its_pseudo_labels_colour_and_area_omega():
    points, labels = make_toy(seed=0)
    mask = pick_labeled(labels, 2)
    result = propagate(points, labels, mask, graph="gaussian", k=10)
    result.pseudo_labels[np.flatnonzero(~mask)[:20]] = 2  # some pseudo-labels that are not the true labels
    for fig in (plot_figure1(points, labels, mask, result), plot_figure3(points, labels, [mask], [result])):
        circles = fig.axes[-1].collections[0]  # the panel of pseudo-labels: the unlabeled points, then triangles
        np.testing.assert_array_equal(circles.get_offsets(), points[~mask])
        np.testing.assert_allclose(circles.get_sizes(), MAX_AREA * np.round(result.weights[~mask], 3))
        np.testing.assert_allclose(circles.get_facecolors(), [to_rgba(CLASS_COLORS[c], 0.85)
                                                              for c in result.pseudo_labels[~mask]])


def test_the_toy_findings_count_the_unlabeled_points_by_hand():
    labels = np.array([0, 0, 1, 1, 1])
    labeled = np.array([True, False, False, True, False])
    result = SimpleNamespace(pseudo_labels=np.array([0, 1, 1, 1, 1]), weights=np.array([1.0, 0.2, 0.9, 1.0, 0.5]))
    assert unlabeled_accuracy(result, labels, labeled) == 2 / 3  # points 1, 2, 4: the first is wrong
    points = np.array([[9, 9], [0.3, 0.4], [3, 4], [9, 9], [0, 2]])  # radii of the unlabeled: 0.5, 5, 2
    near, far, text = where_least_certain(points, labeled, result, share=0.3)  # the smallest omega: point 1
    assert (near, far) == (0.5, 3.5) and text.endswith("the least certain lie nearer the centre")
    assert where_least_certain(points[[0, 2, 1, 3, 4]], labeled, result, share=0.3)[2].endswith("farther out")
    tied = SimpleNamespace(pseudo_labels=result.pseudo_labels, weights=np.array([1.0, 0.2, 0.2, 1.0, 0.9]))
    near, far, _ = where_least_certain(points, labeled, tied, share=0.3)  # one point, by rank: not both of the 0.2s
    assert (near, far) == (0.5, 3.5)
    same = SimpleNamespace(pseudo_labels=result.pseudo_labels, weights=np.full(5, 0.5))
    assert where_least_certain(points, labeled, same)[2] == ("the 3 unlabeled points have the same omega: none is "
                                                            "less certain")
