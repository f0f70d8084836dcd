"""The 2-D toy data of the paper's Figures 1 and 3: a few classes on curved manifolds.

Each class is one arm of a spiral, a noisy curved 1-D manifold in the plane; the arms
interleave, so nearby points of different classes are common in Euclidean distance but
rare along the manifolds, which is what label propagation exploits.
"""
import math

import numpy as np

from lpnb.graph import _check_param


def make_toy(n_points=300, n_classes=3, noise=0.05, turns=0.75, seed=0):
    """Points on `n_classes` interleaved spiral arms, as balanced as `n_points` allows.

    Arm j is r (cos(t + 2 pi j / c), sin(t + 2 pi j / c)) with r uniform in [0.15, 1]
    and t = 2 pi turns r, plus isotropic Gaussian noise of std `noise`.
    Returns points (n, 2) float32 and labels (n,) int64; class sizes differ by at most 1.
    """
    n_points, n_classes = _check_param("n_points", n_points, "count"), _check_param("n_classes", n_classes, "count")
    if n_classes < 2 or n_points < n_classes:
        raise ValueError(f"need n_classes >= 2 and n_points >= n_classes, got {n_points} points, {n_classes} classes")
    noise, turns = _check_param("noise", noise, "nonnegative"), _check_param("turns", turns, "nonnegative")
    seed = _check_param("seed", seed, "seed")
    rng = np.random.default_rng(seed)
    labels = np.arange(n_points) % n_classes
    r = rng.uniform(0.15, 1.0, n_points)
    angle = 2 * np.pi * (turns * r + labels / n_classes)
    points = r[:, None] * np.stack([np.cos(angle), np.sin(angle)], 1)
    points += noise * rng.standard_normal((n_points, 2))
    return points.astype(np.float32), labels.astype(np.int64)


def pick_labeled(labels, n_per_class, seed=0):
    """Bool mask choosing `n_per_class` random points of every class (seeded).

    For a fixed seed the choices are nested: the points picked for m per class are among
    those picked for any larger m, so panels with more labels only add labels.
    """
    labels = np.asarray(labels)
    classes, counts = np.unique(labels, return_counts=True)
    if (isinstance(n_per_class, bool) or not isinstance(n_per_class, (int, np.integer)) or n_per_class < 1
            or n_per_class >= counts.min()):
        raise ValueError(f"n_labeled, the labeled points per class, must be an integer in [1, {counts.min() - 1}] "
                         f"(the smallest class's size less one: a point of each class left to propagate to), "
                         f"got {n_per_class!r}")
    rng = np.random.default_rng(seed)
    mask = np.zeros(len(labels), bool)
    for c in classes:
        mask[rng.permutation(np.flatnonzero(labels == c))[:n_per_class]] = True
    return mask


def unlabeled_accuracy(result, labels, labeled):
    """The share of the unlabeled points whose pseudo-label (eq. 7) is their class."""
    unlabeled = ~np.asarray(labeled)
    return float((np.asarray(result.pseudo_labels)[unlabeled] == np.asarray(labels)[unlabeled]).mean())


def where_least_certain(points, labeled, result, share=0.1):
    """Where the least certain pseudo-labels lie: the mean distance from the centre of the `share` of the
    unlabeled points with the smallest omega (eq. 11) and of the others, and a sentence saying which is nearer."""
    unlabeled = ~np.asarray(labeled)
    omega, radius = result.weights[unlabeled], np.linalg.norm(np.asarray(points)[unlabeled], axis=1)
    if len(omega) < 2 or omega.min() == omega.max():
        return math.nan, math.nan, f"the {len(omega)} unlabeled points have the same omega: none is less certain"
    least = np.zeros(len(omega), bool)  # by rank, so that ties do not change how many are taken
    least[np.argsort(omega, kind="stable")[:min(len(omega) - 1, max(1, math.ceil(share * len(omega))))]] = True
    near, far = radius[least].mean(), radius[~least].mean()
    return near, far, (f"the {least.sum()} least certain unlabeled points lie {near:.2f} from the centre on average, "
                       f"the other {(~least).sum()} {far:.2f}: the least certain lie "
                       f"{'nearer the centre' if near < far else 'farther out'}")
