"""Label propagation by diffusion and pseudo-label weights, Iscen et al. (CVPR 2019), eqs. 5-11.

    propagate(features, labels, labeled)   graph (eq. 9) -> CG solve of eq. (10) -> pseudo-labels
                                           (eq. 7), certainty omega (eq. 11), class weights zeta
    network_pseudo_labels(probs, ...)      the same weights from a network's softmax (Table 1)
    gtg_pseudo_labels(features, ...)       graph transduction game, Erdem & Pelillo 2012 (Table 1)
    LabelPropagation                       scikit-learn estimator around `propagate`

All three pseudo-labelers return a `PseudoLabels`, computed from their (n, c) scores by the
same rule (`_pseudo_labels`), as the official code does for diffusion. None of them depends
on the overall scale of the features (see `lpnb.graph._rescale`); a setting out of its range
is refused with a ValueError that names it, and a NaN or inf that appears in a computation
is never passed on as a score: it raises.
"""
import json
import math
import os
import re
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse.csgraph
import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from lpnb.graph import (
    _check_param,
    _checked_matrix,
    _checked_matrix32,
    _gaussian,
    _index_dtype,
    _rescale,
    _scaled_sigma,
    _to_device,
    _warn,
    _warn_one_column,
    affinity_graph,
    auto_backend,
    default_sigma,
    faiss,
    graph_degrees,
    graph_from_neighbours,
    locality_order,
    normalize,
    search_chunk,
    spmm,
    to_scipy,
)
from lpnb.graph import knn as knn_search

# propagate warns above this final relative residual of CG (cpu-preset refreshes: 0.044 at most), GTG above this
# final L1 change of a strategy (cpu-preset refreshes at max_iter=100: 0.42 at most)
FAR_FROM_CONVERGED = 0.5
REORDER_MIN = 100_000  # points from which propagate reorders them by k-means cluster (graph="dot", CPU)
CGROUP = "/sys/fs/cgroup"  # a container's memory limit and use (cgroup v2)
MEMINFO = "/proc/meminfo"  # the system's available memory (MemAvailable)


@dataclass(eq=False)  # compared as objects: two results differ at least in their timings (compare their arrays)
class PseudoLabels:
    """Pseudo-labels of all n points and their weights in the loss of eq. (12).

    pseudo_labels (n,) int64: argmax of the scores (eq. 7); labeled points keep their label.
    weights (n,) float32: omega_i = 1 - H(z_i) / log c (eq. 11), divided by its maximum over
        all n points; labeled points get 1, points whose scores are all equal get 0.
    class_weights (c,) float32: zeta_j = (n / c) / n_j, n_j the number of points labeled j or
        pseudo-labeled j from scores that are not all equal (a point with an all-zero or uniform
        row, pseudo-label 0 and weight 0, is not counted: e.g. a point no label reaches, or GTG's
        isolated player); 0 for a class no point carries (it weighs no loss term).
    scores (n, c) float32: the scores clipped at 0, rows L1-normalised (all-zero rows stay 0).
    scored (n,) bool: the points that carry a pseudo-label: the labeled ones, and those whose
        scores are not all equal (all zero or uniform rows have none: pseudo-label 0, weight 0).
        By name only; default (a PseudoLabels built by hand) the points of positive weight.
    n_iter, residual: CG iterations and final relative residual (propagate); replicator
        iterations and final largest L1 change of a strategy (GTG); 0 for network scores.
    timings: seconds of each phase (propagate: "order", "knn", "graph", "cg", "weights").
    class_blocks: the blocks of classes the solve was split into to fit in memory (propagate).
    sigma: the bandwidth of propagate's Gaussian graph in the units of the features, the one
        given or the default found (None for graph="dot" and the other pseudo-labelers).
    """
    pseudo_labels: np.ndarray
    weights: np.ndarray
    class_weights: np.ndarray
    scores: np.ndarray
    scored: np.ndarray | None = field(default=None, kw_only=True)  # by name: the fields after it keep their places
    n_iter: int = 0
    residual: float = 0.0
    timings: dict = field(default_factory=dict)
    class_blocks: int = 1
    sigma: float | None = None

    def __post_init__(self):
        if self.scored is None:
            self.scored = np.asarray(self.weights) > 0


def _unscored_message(Wn, scores, unscored, idx, alpha, n_iter, max_iter):
    """propagate's warning for the unlabeled points with edges but no pseudo-label (`unscored`, (n,) bool), and
    why: no labeled point in their part of the graph, labels farther than the solve reached (CG from Z = 0
    reaches one more edge per iteration), or equal scores for every class."""
    if alpha == 0:
        why = ["alpha=0: the scores are the labels alone, nothing spreads"]
    else:
        tied = unscored & scores.any(1)
        no_label = unscored & ~tied & _in_parts_without_labels(Wn, idx)
        reach = (f"raise max_iter={max_iter}, a run's cg_iters" if n_iter >= max_iter else
                 f"it met its tolerance first: a larger k or more labels shorten the paths, a larger alpha={alpha:g} "
                 "carries the labels farther")
        why = [f"{int(points.sum())} {text}" for points, text in [
            (no_label, "in a part of the graph without labels"),
            (unscored & ~tied & ~no_label, f"farther from every label than the solve's {n_iter} iterations reach "
                                           f"({reach})"),
            (tied, "with equal scores for every class")] if points.any()]
    return (f"{int(unscored.sum())} of the {len(unscored) - len(idx)} unlabeled points have edges but no "
            f"pseudo-label: {'; '.join(why)}. They get pseudo-label 0 and weight 0")


def _in_parts_without_labels(W, idx):
    """(n,) bool: the points in a part of the graph W (its edges of positive weight) with no labeled point (idx)."""
    _, component = scipy.sparse.csgraph.connected_components(to_scipy(W) > 0, directed=False)
    return ~np.isin(component, component[idx])


def _informative(scores):
    """(n,) bool: rows of a score matrix (n, c) that prefer some class: not all equal (with c = 1, not zero)."""
    return scores.any(1) if scores.shape[1] == 1 else (scores != scores[:, :1]).any(1)


def _without_edges(degrees, idx, labels, graph, gamma, sigma=None):
    """(n,) bool tensor: the unlabeled points (not in idx) with no edge of positive weight, which get no score (a
    labeled point keeps its label and weight 1). Warns about them, and about the labeled points without one,
    whose labels reach no other point: a class whose every labeled example is one of them gets no point."""
    isolated = degrees == 0
    on_idx = torch.from_numpy(idx).to(isolated.device)
    labeled_alone = idx[isolated[on_idx].cpu().numpy()]
    isolated[on_idx] = False
    why = (f"all k nearest neighbours so far that exp(-d^2 / sigma^2) is 0 in float32 at sigma={sigma:.3g}; a "
           "larger sigma connects them" if graph == "gaussian" else
           f"inner products with all k nearest neighbours <= 0, or so small that their power gamma={gamma} "
           "is 0 in float32")
    if count := int(isolated.sum()):
        _warn(f"{count} of the {len(degrees) - len(idx)} unlabeled points have no edge of positive weight ({why}): "
              "they get no score, pseudo-label 0 and weight 0")
    if len(labeled_alone):
        classes = np.unique(labels[labeled_alone])
        lost = classes[~np.isin(classes, labels[np.setdiff1d(idx, labeled_alone)])]
        _warn(f"{len(labeled_alone)} of the {len(idx)} labeled points (classes {classes.tolist()}) have no edge of "
              f"positive weight ({why}): their labels reach no other point"
              + (f"; classes {lost.tolist()} have no other labeled example, so no point gets them" if len(lost) else
                 "") + ". Check those points' features")
    return isolated


def _divide(a, b):
    """a / b where b > 0, else 0 (zero rows, zero columns: no NaN)."""
    positive = b > 0
    return torch.where(positive, a / torch.where(positive, b, torch.ones_like(b)), torch.zeros_like(a))


def _tensor_as_numpy(a):
    """A torch tensor as a numpy array (detached, on the CPU, half precision as float32); anything else as it is
    (a pandas frame keeps its column names for scikit-learn)."""
    if not isinstance(a, torch.Tensor):
        return a
    a = a.detach().cpu()
    return (a.float() if a.dtype in (torch.float16, torch.bfloat16) else a).numpy()


def _as_numpy(a):
    """a as a numpy array, as np.asarray reads it (lists, pandas); a tensor detached, on the CPU."""
    return np.asarray(_tensor_as_numpy(a))


def _points(features, device):
    """The features as a checked tensor (`_checked_matrix`) on `device` (None: where they are), at least one row."""
    x = _to_device(_checked_matrix(features), device)
    if x.device.type not in ("cpu", "cuda"):
        raise ValueError(f"features on device {str(x.device)!r}: propagation runs on 'cpu' or 'cuda'; pass one as "
                         "device")
    if len(x) == 0:
        raise ValueError("features have no rows: pass one row per point")
    return x


def _check_labels(labels, labeled, n, n_classes, warn_missing=True):
    """Validated (labels as int64 numpy, sorted int64 labeled indices, number of classes c).

    labeled: a boolean mask (n,) (a torch uint8 tensor (n,) of 0s and 1s too, torch's old mask
    type) or an index array of any integer type; an integer array (n,) of 0s and 1s is refused
    as ambiguous (n > 2)."""
    labels = _as_numpy(labels)
    if labels.shape != (n,):
        raise ValueError(f"labels must have shape ({n},), one per point, got {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integers, got dtype {labels.dtype} (unlabeled points may carry any "
                         "integer, e.g. -1, not None or NaN; other class names: renumber them with "
                         "np.unique(labels, return_inverse=True), or use LabelPropagation, which does)")
    idx = _labeled_index(labeled, n)
    y = labels[idx].astype(np.int64)
    c = int(y.max()) + 1 if n_classes is None else _check_param("n_classes", n_classes, "count")
    if y.min() < 0:
        raise ValueError(f"labels of labeled points must be classes >= 0, got {y.min()}; a point labeled -1 (or "
                         "another negative number) is unlabeled: leave it out of `labeled`")
    if y.max() >= c:
        raise ValueError(f"labels of labeled points must lie in [0, {c}), got [{y.min()}, {y.max()}]")
    beyond = labels[labels >= c] if n_classes is None and warn_missing else labels[:0]
    if len(beyond):  # the true labels given for the unlabeled points too, a top class without a labeled point
        _warn(f"{len(beyond)} unlabeled points carry labels up to {beyond.max()}, beyond the labeled classes "
              f"0..{c - 1}: n_classes defaults to {c} (the largest label of a labeled point plus one), so no point is "
              "scored for those classes; pass n_classes to count them (or, if they mark unlabeled points, use -1)")
    present = np.unique(y)
    if len(present) < c and warn_missing:  # the first ten missing lie below len(present) + 10: no arange(c)
        missing = np.setdiff1d(np.arange(min(c, len(present) + 10)), present)[:10]
        more = f" and {c - len(present) - 10} more" if c - len(present) > 10 else ""
        hint = ("; if the class ids are not 0..c-1, renumber them (np.unique(labels, return_inverse=True)) or use "
                "LabelPropagation, which does" if n_classes is None else "")
        _warn(f"classes {missing.tolist()}{more} have no labeled example: they get no score{hint}")
    return labels.astype(np.int64), idx, c


def _labeled_index(labeled, n):
    """Sorted int64 indices of the labeled points from `labeled`: a boolean mask (n,) (a torch uint8 tensor
    (n,) of 0s and 1s too, torch's old mask type) or an index array of any integer type; an integer array (n,)
    of 0s and 1s is refused as ambiguous (n > 2)."""
    torch_mask = isinstance(labeled, torch.Tensor) and labeled.dtype == torch.uint8
    labeled = _as_numpy(labeled)
    if labeled.size == 0:
        raise ValueError("no labeled example: propagation needs at least one labeled point, labeled is empty")
    if torch_mask and labeled.max() <= 1:  # a mask, of the right shape or not (the bool branch says)
        labeled = labeled.astype(bool)
    if labeled.dtype == bool:
        if labeled.shape != (n,):
            uint8 = (" (a torch uint8 tensor of 0s and 1s is read as a mask, torch's old mask type; pass indices "
                     "as int64)" if torch_mask else "")
            raise ValueError(f"labeled mask must have shape ({n},), got {labeled.shape}{uint8}")
        idx = np.flatnonzero(labeled)
    elif np.issubdtype(labeled.dtype, np.integer) and labeled.ndim == 1:
        if n > 2 and len(labeled) == n and labeled.min() >= 0 and labeled.max() <= 1:
            raise ValueError(f"labeled is an integer array of {n} zeros and ones: it looks like a 0/1 mask, but an "
                             "integer array is read as indices; pass a boolean mask (labeled.astype(bool)) or the "
                             "indices of the labeled points")
        if labeled.min() < 0 or labeled.max() >= n:
            raise ValueError(f"labeled indices must lie in [0, {n}), got [{labeled.min()}, {labeled.max()}]")
        idx = np.unique(labeled).astype(np.int64)
        if len(idx) < len(labeled):  # e.g. the labels themselves passed as `labeled`
            raise ValueError(f"labeled holds {len(labeled) - len(idx)} repeated indices ({len(labeled)} values, "
                             f"{len(idx)} distinct): an index array lists each labeled point once; if it holds "
                             "labels, pass a boolean mask instead (e.g. labels >= 0)")
    else:
        raise ValueError(f"labeled must be a boolean mask or a 1-D integer index array, got "
                         f"dtype {labeled.dtype} and shape {labeled.shape}")
    if len(idx) == 0:
        raise ValueError("no labeled example: propagation needs at least one labeled point")
    return idx


def _pseudo_labels(scores, labels, idx, n_iter=0, residual=0.0, *, inplace=False, rows=1 << 16):
    """Scores (n, c) -> PseudoLabels: clip at 0, L1-normalise rows, argmax (eq. 7), omega from
    the entropy (eq. 11) over its maximum, labeled rows forced, zeta from the class counts (of
    the labeled rows and the rows whose scores are not all equal).
    A block of rows at a time; inplace=True normalises a float32 `scores` in place and returns
    it as the scores (no (n, c) copy: propagate's own Z)."""
    n, c = scores.shape
    Z = scores if inplace and scores.dtype == torch.float32 else scores.to(torch.float32, copy=True)
    omega = torch.zeros(n, device=Z.device)
    pseudo = torch.zeros(n, dtype=torch.int64, device=Z.device)
    scored = torch.zeros(n, dtype=torch.bool, device=Z.device)  # rows preferring a class: they carry a pseudo-label
    for i in range(0, n, rows):
        z = Z[i:i + rows]
        if not torch.isfinite(z).all():
            raise ValueError("scores contain NaN or inf: they cannot give pseudo-labels; check what produced them")
        z.clamp_(min=0)
        mass = z.sum(1, keepdim=True)
        z.div_(torch.where(mass > 0, mass, torch.ones_like(mass)))  # an all-zero row stays zero
        certainty = 1 - torch.special.entr(z).sum(1) / math.log(c) if c > 1 else torch.ones(len(z), device=z.device)
        scored[i:i + rows] = informative = _informative(z)
        omega[i:i + rows] = torch.where(informative, certainty.clamp_min(0), torch.zeros_like(certainty))
        pseudo[i:i + rows] = z.argmax(1)
    if omega.max() > 0:
        omega = omega / omega.max()
    pseudo, omega, scored = pseudo.cpu().numpy(), omega.cpu().numpy(), scored.cpu().numpy()
    pseudo[idx], omega[idx], scored[idx] = labels[idx], 1.0, True
    counts = np.bincount(pseudo[scored], minlength=c)  # the argmax, 0, of equal scores is no class: not counted
    zeta = np.where(counts > 0, (n / c) / np.maximum(counts, 1), 0.0)
    return PseudoLabels(pseudo.astype(np.int64), omega.astype(np.float32), zeta.astype(np.float32),
                        Z.cpu().numpy(), int(n_iter), float(residual), scored=scored)


def _column_dots(A, B, rows=1 << 16):
    """(A * B).sum(0) for two (n, c) tensors, a block of rows at a time (no (n, c) temporary)."""
    return sum((A[i:i + rows] * B[i:i + rows]).sum(0) for i in range(0, len(A), rows))


def conjugate_gradient(matvec, B, *, max_iter=20, tol=1e-6, out=None, overwrite_b=False):
    """Solve A X = B for a symmetric positive-definite A given by `matvec` (eq. 10).

    All c columns of B (n, c) at once: one matvec per iteration, per-column step sizes,
    x0 = 0. A column stops once its relative residual ||b - A x|| / ||b|| is at most tol, so
    its solution does not depend on the other columns (solving the classes in blocks gives
    the same result); the iteration stops when every column has, or after max_iter (a
    positive integer) iterations; tol is a finite number >= 0, and one below the resolution of B's
    dtype (its eps: 1.2e-7 in float32) is taken as that eps, where the residual, rounded, no longer
    tells the solution's progress (and p^T A p may underflow to 0). Returns (X, iterations, the
    final relative residual: its largest over the columns).

    Memory: X, the residual, the search direction and matvec's output, four (n, c) tensors.
    `out` (n, c), possibly a view of a larger tensor, receives X; overwrite_b=True lets the
    residual take B's memory (B is then destroyed).

    Raises ValueError if B holds NaN or inf, and FloatingPointError if a search direction p
    has p^T A p <= 0 (A is not positive definite) or the residual becomes NaN or inf (matvec
    returned non-finite values): the solution is never returned with a NaN hidden in it.
    """
    max_iter = _check_param("max_iter", max_iter, "count")
    tol = _check_param("tol", tol, "nonnegative")
    if not torch.isfinite(B).all():
        raise ValueError("B (the right-hand side) contains NaN or inf")
    X = out.zero_() if out is not None else torch.zeros_like(B)
    b_norm = torch.linalg.vector_norm(B, dim=0)
    b_norm = torch.where(b_norm > 0, b_norm, torch.ones_like(b_norm))  # b = 0: x = 0 solves it
    R = B if overwrite_b else B.clone()
    P = R.clone()
    rs = _column_dots(R, R)
    tol = max(tol, torch.finfo(B.dtype).eps)
    active = rs.sqrt() / b_norm > tol
    n_iter = 0
    while n_iter < max_iter and active.any():
        AP = matvec(P)
        curvature = _column_dots(P, AP)
        if (active & (curvature <= 0)).any():  # 0 or below for p != 0: A is not positive definite
            raise FloatingPointError(
                f"conjugate gradient: p^T A p <= 0 at iteration {n_iter + 1}: the matrix is not positive definite")
        step = torch.where(active, _divide(rs, curvature), torch.zeros_like(rs))
        X.addcmul_(P, step)
        R.addcmul_(AP, step, value=-1)
        del AP
        rs_new = _column_dots(R, R)
        n_iter += 1
        if not torch.isfinite(rs_new).all():
            raise FloatingPointError(
                f"conjugate gradient: the residual became NaN or inf at iteration {n_iter}: matvec returned NaN "
                "or inf, or the matrix is not positive definite; check the features and the graph")
        P.mul_(torch.where(active, _divide(rs_new, rs), torch.zeros_like(rs))).add_(R)
        rs = rs_new  # unchanged where the column had stopped
        active = rs.sqrt() / b_norm > tol
    return X, n_iter, (rs.sqrt() / b_norm).max().item()


def propagate(features, labels, labeled, *, n_classes=None, k=50, gamma=3.0, alpha=0.99,
              max_iter=20, knn="exact", graph="dot", sigma=None, device=None, max_memory=None):
    """Label propagation by diffusion (sections 3-4), as the official code runs it (docs/method.md lists where not).

    Builds the k-NN graph W of eq. (9), solves (I - alpha Wn) Z = Y (eq. 10) with
    Wn = D^-1/2 W D^-1/2 by conjugate gradient from Z = 0, with Y_ij = 1/|L_j| for labeled
    i of class j, and turns Z into pseudo-labels (eq. 7) and weights (eq. 11).

    Parameters
    ----------
    features : array-like or torch.Tensor of shape (n, d)
        Descriptors (graph="dot") or points (graph="gaussian"), finite. The result does not
        depend on their overall scale: "dot" l2-normalises every row itself (cosine
        similarity; an all-zero row is an isolated point: all-zero scores, weight 0),
        "gaussian" centres and rescales the points by one global factor (sigma likewise).
        Anything np.asarray reads (a pandas DataFrame, a view); integers and bools are
        converted to floats, a tensor that requires grad is detached.
    labels : array-like of shape (n,)
        Integer classes in [0, n_classes) where `labeled` says; any integer elsewhere (e.g. -1).
    labeled : array-like
        A boolean mask (n,) or an index array of any integer type of the labeled points (at
        least one; repeated indices are refused: labels passed here by mistake). An integer
        array (n,) of 0s and 1s is refused as ambiguous for n > 2 (pass it as bool; for n <= 2
        it is read as indices); a torch uint8 tensor (n,) of 0s and 1s is read as a mask, as
        torch does.
    n_classes : int, optional
        c, a positive integer; default labels[labeled].max() + 1 (with a warning when unlabeled
        points carry larger labels).
    k : int, default=50
        Neighbours per point in the graph of eq. (9).
    gamma : float, default=3.0
        Exponent of the weights a_ij = [v_i . v_j]_+^gamma of eq. (9) (graph="dot").
    alpha : float in [0, 1), default=0.99
        The alpha of eq. (10).
    max_iter : int, default=20
        Conjugate-gradient iterations at most (tolerance 1e-6); a positive integer. A solve that
        ends with a relative residual above FAR_FROM_CONVERGED (0.5) is warned about.
    knn : {"exact", "approx"}, default="exact"
        Exact k-NN search, or an approximate faiss IVF index for large n (see `lpnb.graph.knn`;
        its settings grow with n: sqrt(n) lists, a few probed).
    graph : {"dot", "gaussian"}, default="dot"
        "dot": the paper's graph (eq. 9). "gaussian": Euclidean k-NN with weights
        exp(-d^2 / sigma^2), for points that are not descriptors (2-D toy data).
    sigma : float, optional
        Bandwidth of the Gaussian graph, in the units of `features`; default the mean k-NN
        distance (`lpnb.graph.default_sigma`).
    device : str or torch.device, optional
        Where to run (default: the device of `features`; CPU for numpy input). The graph and
        the solve are in float32.
    max_memory : float, optional
        Bytes the graph and the solve may take (beyond the features); default: the memory
        available on the device when the call starts (`available_memory`). Building the graph
        takes at most about max(40, 24 + k / 10) n k + 4 n d bytes on a CPU (measured; faiss's
        buffers add a few tens of MB for small n) and 180 n k + 4 n d with CUDA tensors,
        the graph then 24 n k (40 n k), the scores 4 n c, and the conjugate gradient 12 n per class
        solved at once: when all c classes do not fit, they are solved in blocks of classes (the
        same result), and when the graph or one class does not, a MemoryError says so before any
        work is done.

    Returns
    -------
    PseudoLabels
        pseudo_labels (eq. 7), weights omega (eq. 11), class weights zeta, the scores Z
        (clipped at 0, rows L1-normalised), the sigma used (graph="gaussian"; else None),
        CG iterations and final relative residual, the seconds of each phase ("order", "knn",
        "graph", "cg", "weights") and the number of class blocks.

    Notes
    -----
    Large n. With graph="dot" on a CPU, from REORDER_MIN (100,000) points on and with faiss,
    the points are first sorted by k-means cluster (`lpnb.graph.locality_order`), so that the
    k-NN search and the products with Wn in the conjugate gradient reuse the caches; the
    results are put back in the order of `features`. knn="approx" uses sqrt(n) IVF lists and
    probes 3, so a point's search scans about 3 sqrt(n) others. Measured on a 2-core CPU at
    n = 1,000,000, d = 128, k = 50, c = 100: under two minutes and 4 GB (benchmarks/README.md).

    Raises
    ------
    ValueError
        For a setting out of its range (k, max_iter, n_classes not positive integers; gamma,
        sigma, max_memory not finite and positive; alpha not in [0, 1)) or invalid features or labels.
    FloatingPointError
        If the conjugate gradient meets NaN or inf.
    MemoryError
        If the graph, or the scores and one class's solve, do not fit in `max_memory`.

    Examples
    --------
    Two groups of three points in the plane, one labeled point in each:

    >>> import numpy as np
    >>> from lpnb.diffusion import propagate
    >>> X = np.array([[1.0, 0.1], [1.0, 0.2], [0.9, 0.3], [0.1, 1.0], [0.2, 0.9], [0.3, 1.0]])
    >>> labels = np.array([0, -1, -1, 1, -1, -1])
    >>> res = propagate(X, labels, labels >= 0, k=2)
    >>> res.pseudo_labels
    array([0, 0, 0, 1, 1, 1])
    >>> res.scores.shape, res.weights.shape, res.class_weights.tolist()
    ((6, 2), (6,), [1.0, 1.0])

    The overall scale of the features does not matter:

    >>> propagate(1e30 * X, labels, labels >= 0, k=2).pseudo_labels
    array([0, 0, 0, 1, 1, 1])
    """
    alpha = _check_param("alpha", alpha, "fraction")
    if np.float32(alpha) == 1:
        raise ValueError(f"alpha = {alpha!r} is 1.0 in float32, in which the diffusion is solved, and I - alpha W "
                         "is then singular: use alpha <= 0.9999999")
    max_iter = _check_param("max_iter", max_iter, "count")
    if knn not in ("exact", "approx"):
        raise ValueError(f"knn must be 'exact' or 'approx', got {knn!r}")
    if graph not in ("dot", "gaussian"):
        raise ValueError(f"graph must be 'dot' or 'gaussian', got {graph!r}")
    k = _check_param("k", k, "count")
    max_memory = _check_param("max_memory", max_memory, "positive", optional=True)
    gamma = _check_param("gamma", gamma, "positive")
    sigma = _check_param("sigma", sigma, "positive", optional=True)
    if sigma is not None and graph == "dot":
        raise ValueError("sigma is the bandwidth of graph='gaussian'; graph='dot' has none: leave sigma None, or "
                         "pass graph='gaussian'")
    x = _points(features, device)
    n = len(x)
    labels, idx, c = _check_labels(labels, labeled, n, n_classes)  # after the parameters: no warning before an error
    on = x.device

    def clock():  # the phases' seconds: on a GPU, once the work queued so far is done
        if on.type == "cuda":
            torch.cuda.synchronize(on)
        return time.perf_counter()
    budget = max_memory if max_memory is not None else available_memory(x.device)
    reorder = graph == "dot" and not x.is_cuda and n >= REORDER_MIN and faiss is not None
    torch_search = auto_backend(x.is_cuda) == "torch"
    build_bytes, graph_bytes = _graph_memory(n, x.shape[1], k, x.is_cuda, torch_search)
    block = _check_memory(n, c, budget, graph_bytes, max_memory is not None, build_bytes)  # before any work
    t = clock()
    x, frame = _rescale(x, graph)
    _warn_one_column(x, graph)
    if reorder:  # near points next to each other: the k-NN search and the products with W reuse the caches
        order, cluster = locality_order(x)
        x = x[order]
    timings = {"order": clock() - t}
    t = clock()
    S, I = knn_search(x, k, approx=knn == "approx", metric="dot" if graph == "dot" else "l2")
    del x
    if not I.is_cuda:  # int32 where it fits: half the memory of the reordering and the graph's assembly in scipy
        I = I.to(_index_dtype(I.numel()))
    timings["knn"] = clock() - t
    if reorder:
        t = clock()
        S, I, order = _follow_neighbours(S, I, order, cluster)
        inverse = torch.empty_like(order)
        inverse[order] = torch.arange(n)
        labels, idx = labels[order.numpy()], np.sort(inverse[torch.from_numpy(idx)].numpy())
        timings["order"] += clock() - t
    t = clock()
    scaled_sigma = None  # sigma in the units of the rescaled points (graph="gaussian")
    if graph == "gaussian":
        scaled_sigma = default_sigma(S) if sigma is None else _scaled_sigma(sigma, frame)
        sigma = sigma if sigma is not None else scaled_sigma * frame[0] * frame[2]  # the default, in x's units
    W = graph_from_neighbours(S, I, kind=graph, gamma=gamma, sigma=scaled_sigma)
    del S, I  # before normalize: the k-NN lists and both W's values never coexist
    degrees = graph_degrees(W)
    without_edges = _without_edges(degrees, idx, labels, graph, gamma, sigma).cpu().numpy()
    Wn = normalize(W, degrees=degrees)
    del W, degrees
    timings["graph"] = clock() - t
    t = clock()
    if max_memory is None:  # the memory available now, the graph built (with max_memory it counts against it)
        block = _check_memory(n, c, available_memory(Wn.device))
    Z, n_iter, residual = diffuse(Wn, labels, idx, c, alpha=alpha, max_iter=max_iter, block=block)
    timings["cg"] = clock() - t
    if residual > FAR_FROM_CONVERGED:
        _warn(f"the conjugate gradient stopped at max_iter={max_iter} with relative residual {residual:.3g}, far "
              f"from the solution of eq. (10) (above {FAR_FROM_CONVERGED}): the scores and the weights omega are "
              f"unreliable; raise max_iter (alpha={alpha:g}: the closer to 1, the more iterations it needs)")
    t = clock()
    result = _pseudo_labels(Z, labels, idx, n_iter, residual, inplace=True)
    del Z
    unscored = ~result.scored & ~without_edges  # labeled points are scored
    if unscored.any():
        _warn(_unscored_message(Wn, result.scores, unscored, idx, alpha, n_iter, max_iter))
    if reorder:  # back to the order of the features
        inverse = inverse.numpy()
        result.pseudo_labels, result.weights, result.scored = (result.pseudo_labels[inverse],
                                                               result.weights[inverse], result.scored[inverse])
        step = max(16, (1 << 27) // n)  # the scores in place, a block of columns at a time (no second (n, c))
        for j in range(0, c, step):
            result.scores[:, j:j + step] = result.scores[inverse, j:j + step]
    timings["weights"] = clock() - t
    result.timings, result.class_blocks, result.sigma = timings, -(-c // block), sigma  # None for graph="dot"
    return result


def diffuse(Wn, labels, idx, n_classes, *, alpha=0.99, max_iter=20, block=None):
    """Solve (I - alpha Wn) Z = Y (eq. 10) by conjugate gradient from Z = 0: the scores Z (n, c) float32.

    Y_ij = 1/|L_j| for the labeled points i (`idx`) of class j = labels[i], as in the authors' code.
    Wn is the normalised graph (`lpnb.graph.normalize`), a torch sparse CSR tensor. The classes are
    solved `block` at a time (default: all at once), the same result in less memory. Returns
    (Z, the most CG iterations a block took, the largest final relative residual)."""
    n, c = Wn.shape[0], n_classes
    block = block or c

    def matvec(V):  # (I - alpha Wn) V
        return spmm(Wn, V).mul_(-alpha).add_(V)

    device = Wn.device
    y = torch.from_numpy(labels[idx]).to(device)
    weight = 1 / torch.bincount(y, minlength=c).float()  # Y_ij = 1 / |L_j| for labeled i of class j
    Z = torch.empty(n, c, device=device)
    n_iter, residual = 0, 0.0
    for first in range(0, c, block):
        last = min(first + block, c)
        Y = torch.zeros(n, last - first, device=device)
        mine = (y >= first) & (y < last)
        Y[torch.from_numpy(idx).to(device)[mine], y[mine] - first] = weight[y[mine]]
        _, it, res = conjugate_gradient(matvec, Y, max_iter=max_iter, out=Z[:, first:last], overwrite_b=True)
        n_iter, residual = max(n_iter, it), max(residual, res)
        del Y
    return Z, n_iter, residual


def _follow_neighbours(S, I, order, cluster, rounds=2):
    """Refine a k-means order with the k-NN graph: `rounds` times, each point takes the cluster most of its
    neighbours are in and the points are sorted again (a noisy k-means assignment otherwise scatters
    neighbours far apart). S, I (n, k) are the k-NN of the points in `order`, cluster their clusters;
    returns S, I and `order` for the new order."""
    n = len(order)
    for _ in range(rounds):
        cluster = torch.mode(cluster[I], dim=1).values
        again = torch.from_numpy(np.argsort(cluster.numpy(), kind="stable"))
        inverse = torch.empty_like(again)
        inverse[again] = torch.arange(n)
        S, I, cluster, order = S[again], inverse.to(I.dtype)[I[again]], cluster[again], order[again]
    return S, I, order


def available_memory(device=None):
    """Bytes that can be allocated now on `device`: on a GPU the free memory plus what PyTorch has cached
    but not allocated, on a CPU the smaller of the system's available memory (/proc/meminfo) and what a
    container's memory limit (cgroup) leaves, its inactive file cache (reclaimable) counted as free."""
    device = torch.device(device or "cpu")
    if device.type == "cuda":  # free, plus what PyTorch's caching allocator holds but does not use
        cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return torch.cuda.mem_get_info(device)[0] + cached
    found = []
    try:
        with open(MEMINFO) as f:
            meminfo = dict(line.split(":", 1) for line in f)
        found.append(int(meminfo["MemAvailable"].split()[0]) * 1024)
    except (OSError, KeyError, ValueError):
        found.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    try:
        with open(f"{CGROUP}/memory.max") as f:
            limit = f.read().strip()
        if limit != "max":
            with open(f"{CGROUP}/memory.current") as f:
                used = int(f.read())
            with open(f"{CGROUP}/memory.stat") as f:
                used -= int(dict(line.split() for line in f).get("inactive_file", 0))
            found.append(int(limit) - used)
    except (OSError, ValueError):
        pass
    return min(found)


def _size(nbytes):
    """A number of bytes as it reads best: '950 bytes', '48 kB', '12.3 MB', '4.5 GB'."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if nbytes >= scale:
            return f"{nbytes / scale:.3g} {unit}"
    return f"{max(nbytes, 0):.0f} bytes"


def _graph_memory(n, d, k, cuda, torch_search):
    """Bytes beyond the features that the graph takes in propagate: (peak while it is built, the normalised
    graph kept during the solve). Measured at n = 100,000-400,000, k = 50, d = 32 (benchmarks/README.md): on a
    CPU the rescaled copy of the features (4 n d), the k-NN lists and W = A + A^T assembled in scipy peak at
    38-40 n k, and W keeps at most 2 n k values and indices; at large k the k-NN search peaks higher, at
    about (24 + k / 10) n k (its lists with and without each point, and faiss's own buffers: measured 43.9-46.6
    n k at k = 200, n = 20,000-50,000, d = 32-64, either graph); with CUDA tensors the assembly in torch (COO,
    coalesce) peaks at 148 n k with the same code on a CPU, 180 n k allowed for the GPU sort's buffers, and W
    keeps its int64 COO indices. A torch k-NN search (`torch_search`) adds its block of similarities."""
    k = min(k, n - 1)
    chunk = 4 * min(n * n, max(n, search_chunk(cuda))) if torch_search else 0
    if cuda:
        return 180 * n * k + 4 * n * d + chunk, 40 * n * k
    return int(max(40, 24 + k / 10) * n * k) + 4 * n * d + chunk, 24 * n * k


def _check_memory(n, c, budget, graph_bytes=0, given=False, build_bytes=0):
    """Classes per block of the solve within `budget` bytes (max_memory if `given`, else the memory available),
    of which the graph takes `graph_bytes`, and `build_bytes` while it is built: the scores (n, c) float32 are
    kept whole, and the conjugate gradient of a block takes three (n, block) float32 tensors more. A
    MemoryError that says what is needed when the graph or even one class does not fit."""
    scores, per_class = 4 * n * c, 3 * 4 * n
    usable = 0.9 * (budget - graph_bytes)  # headroom for the small temporaries
    if usable < scores + per_class or 0.9 * budget < build_bytes:
        solve = (scores + per_class) / 0.9
        graph = f" and {_size(graph_bytes)} for the graph" if graph_bytes else ""
        build = f" ({_size(build_bytes / 0.9)} while the graph is built)" if build_bytes else ""
        have = f"max_memory is {_size(budget)}" if given else f"only {_size(budget)} is available"
        what = "pass a larger max_memory" if given else "free memory, pass max_memory (bytes) if more may be used"
        raise MemoryError(
            f"propagate needs about {_size(max(solve + graph_bytes, build_bytes / 0.9))}: {_size(solve)} for the "
            f"scores of {n} points x {c} classes and a block of the solve{graph}{build}, but {have}: {what}, or "
            "propagate fewer points or classes at a time")
    return int(min(c, (usable - scores) // per_class))


def network_pseudo_labels(probs, labels, labeled):
    """Pseudo-labels from the network's own predictions (eq. 1, Table 1).

    The same rule as for diffusion: argmax (eq. 7), entropy weights (eq. 11) and class
    weights, with the labeled points keeping their label and weight 1.

    Parameters
    ----------
    probs : array-like of shape (n, c)
        The network's softmax outputs: finite and non-negative.
    labels : array-like of shape (n,)
        Integer classes in [0, c), read only where `labeled` says.
    labeled : array-like
        A boolean mask (n,) or an index array of the labeled points, as for `propagate`.

    Returns
    -------
    PseudoLabels
        With n_iter = 0 and residual = 0.

    Examples
    --------
    >>> import numpy as np
    >>> from lpnb.diffusion import network_pseudo_labels
    >>> probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]])
    >>> res = network_pseudo_labels(probs, np.array([1, 0, 0]), np.array([True, False, False]))
    >>> res.pseudo_labels  # the labeled point keeps its label
    array([1, 1, 0])
    >>> res.weights[[0, 2]].tolist()  # labeled: 1; a uniform prediction: 0
    [1.0, 0.0]
    """
    P = _checked_matrix32(probs, "probs")
    if (P < 0).any():
        raise ValueError("probs must be non-negative (softmax probabilities), got negative entries")
    labels, idx, _ = _check_labels(labels, labeled, len(P), P.shape[1], warn_missing=False)
    return _pseudo_labels(P, labels, idx)


def gtg_pseudo_labels(features, labels, labeled, *, n_classes=None, k=50, gamma=3.0,
                      max_iter=100, tol=1e-6, knn="exact", device=None):
    """Graph transduction game (Erdem & Pelillo 2012), the GTG baseline of Table 1.

    Players are the points, strategies the classes, payoffs the unnormalised k-NN graph W of
    eq. (9) (rows of `features` l2-normalised, as in `propagate`). Labeled players play their
    class; unlabeled ones start uniform over the classes that have a labeled example and
    follow the replicator dynamics

        x_i(h) <- x_i(h) (W X)_ih / sum_h' x_i(h') (W X)_ih'

    (a player with zero payoff keeps its strategy; a pure strategy is a fixed point, so the
    labeled players stay fixed) for at most max_iter iterations, until no strategy changes
    by more than tol in L1. The final strategies are the scores, except that an unlabeled
    player no labeled one reached (one iteration carries their strategies one edge farther) keeps
    its start and gets zero scores instead (no pseudo-label, weight 0), as `propagate` gives a
    point no label reaches: one in a part of the graph without labeled players (or without an
    edge of positive weight), or farther from them than the iterations went. With one class labeled, the
    start is that class, and only players in a part without labeled ones get none.

    Parameters
    ----------
    features, labels, labeled, n_classes, k, gamma, knn, device
        As for `propagate` (graph="dot").
    max_iter : int, default=100
        Replicator iterations at most; a positive integer. Stopping there with a strategy still
        changing by more than FAR_FROM_CONVERGED (0.5) in L1 is warned about.
    tol : float, default=1e-6
        Stop when no strategy changes by more than tol in L1; finite and >= 0.

    Returns
    -------
    PseudoLabels
        With n_iter the replicator iterations and residual the last largest L1 change.

    Raises
    ------
    ValueError
        For a setting out of its range or invalid features or labels.
    FloatingPointError
        If a strategy becomes NaN or inf.

    Examples
    --------
    >>> import numpy as np
    >>> from lpnb.diffusion import gtg_pseudo_labels
    >>> X = np.array([[1.0, 0.1], [1.0, 0.2], [0.9, 0.3], [0.1, 1.0], [0.2, 0.9], [0.3, 1.0]])
    >>> labels = np.array([0, -1, -1, 1, -1, -1])
    >>> gtg_pseudo_labels(X, labels, labels >= 0, k=2).pseudo_labels
    array([0, 0, 0, 1, 1, 1])
    """
    max_iter = _check_param("max_iter", max_iter, "count")
    tol = _check_param("tol", tol, "nonnegative")
    if knn not in ("exact", "approx"):
        raise ValueError(f"knn must be 'exact' or 'approx', got {knn!r}")
    x = _points(features, device)
    n = len(x)
    labels, idx, c = _check_labels(labels, labeled, n, n_classes)
    W = affinity_graph(x, k, gamma=gamma, approx=knn == "approx")
    onehot = F.one_hot(torch.from_numpy(labels[idx]), c).float().to(x.device)
    present = onehot.sum(0) > 0
    X = present.float().expand(n, c) / present.sum()
    X = X.index_put((torch.from_numpy(idx).to(x.device),), onehot)
    n_iter, change = 0, 0.0
    reached = torch.zeros(n, 1, device=x.device).index_fill_(0, torch.from_numpy(idx).to(x.device), 1)
    while n_iter < max_iter:
        reached = ((W @ reached) > 0).float().maximum(reached)  # the players a labeled one's strategy got to
        payoff = W @ X
        fitness = (X * payoff).sum(1, keepdim=True)
        X_new = torch.where(fitness > 0, _divide(X * payoff, fitness), X)
        change = (X_new - X).abs().sum(1).max().item()
        X, n_iter = X_new, n_iter + 1
        if not math.isfinite(change):
            raise FloatingPointError(f"graph transduction: a strategy became NaN or inf at iteration {n_iter}; "
                                     "check the features and the graph")
        if change <= tol:
            break
    if change > max(tol, FAR_FROM_CONVERGED):  # above tol: it stopped at max_iter
        _warn(f"graph transduction stopped at max_iter={max_iter} with a strategy still changing by {change:.3g} "
              f"in L1 per iteration (above {FAR_FROM_CONVERGED}): the pseudo-labels and weights are unreliable; "
              "raise max_iter")
    without_edges = _without_edges(graph_degrees(W), idx, labels, "dot", gamma)
    unreached = (reached[:, 0] == 0) & ~without_edges  # with edges, yet they never left their start
    if unreached.any():
        apart = torch.from_numpy(_in_parts_without_labels(W, idx)).to(x.device) & unreached
        if int(present.sum()) == 1:  # their start, the one class labeled, is where a label reaching them takes them
            unreached = apart
    if count := int(unreached.sum()):  # as propagate says it
        reach = (f"raise max_iter={max_iter}" if n_iter >= max_iter else
                 f"it stopped as no strategy changed by more than tol={tol:g}: lower tol")
        why = [f"{int(points.sum())} {text}" for points, text in [
            (apart, "in a part of the graph without labels"),
            (unreached & ~apart, f"farther from every label than the {n_iter} iterations reach ({reach}; a larger k "
                                 "shortens the paths)")]
               if points.any()]
        _warn(f"{count} of the {n - len(idx)} unlabeled points have edges but no pseudo-label: {'; '.join(why)}. "
              "They get pseudo-label 0 and weight 0")
    X[unreached | without_edges] = 0
    return _pseudo_labels(X, labels, idx, n_iter, change)


UNLABELED_LOOKALIKES = {"", "-1", "-1.0", "nan", "none", "null", "na", "n/a", "?", "unknown", "unlabeled", "unlabelled"}


def _missing(value):
    """Whether a value of an object array is a missing label: None, NaN or pandas' NA."""
    try:
        return value is None or bool(value != value)
    except TypeError:  # pandas.NA: a comparison with it is NA, which has no truth value
        return True


def _in_estimator_terms(message, classes):
    """A warning of `propagate` as LabelPropagation's user reads it: the classes by their labels in `classes`
    instead of their codes, and the pseudo-label and weight of a point without score as `transduction_` and
    `certainty_`."""
    message = message.replace("pseudo-label 0 and weight 0",
                              f"transduction_ {classes.tolist()[0]!r} (classes_[0]) and certainty_ 0")
    message = message.replace(", a run's cg_iters", "")  # lpnb run's name of max_iter
    return re.sub(r"classes (\[[\d, ]*\])", lambda m: f"classes {classes[json.loads(m[1])].tolist()}", message)


class LabelPropagation(ClassifierMixin, BaseEstimator):
    """Label propagation of Iscen et al. (CVPR 2019, eqs. 9-11) as a scikit-learn estimator.

    Transductive, with the API and fitted attributes of
    `sklearn.semi_supervised.LabelSpreading`: ``fit(X, y)`` with y = -1 for the unlabeled
    points, then `transduction_` and `label_distributions_` for all training points, and
    predict / predict_proba / score for new ones. It differs from LabelSpreading where the
    paper (or, for Y, the authors' code) does:

    - the graph of eq. (9): weights [v_i . v_j]_+^gamma of cosine similarities on a k-NN
      graph (LabelSpreading: a binary k-NN graph or a dense RBF kernel), made symmetric
      (W = A + A^T) and normalised symmetrically, D^-1/2 W D^-1/2;
    - the linear system (I - alpha Wn) Z = Y of eq. (10) is solved by conjugate gradient
      (at most `max_iter` iterations) instead of iterating Z <- alpha Wn Z + (1 - alpha) Y,
      and Y weighs every class equally (1/|L_j| per labeled point of class j, as the authors'
      code does; the paper's eq. (5) is one-hot);
    - the per-point certainty omega of eq. (11), `certainty_`, with which the paper weighs
      each pseudo-label in the loss.

    Parameters
    ----------
    k : int, default=50
        Neighbours per point in the graph, and in the vote of predict.
    gamma : float, default=3.0
        Exponent of the weights of eq. (9) (graph="dot").
    alpha : float in [0, 1), default=0.99
        The alpha of eq. (10).
    max_iter : int, default=20
        Conjugate-gradient iterations at most.
    knn : {"exact", "approx"}, default="exact"
        Exact k-NN search or an approximate faiss IVF index (large n), in fit and predict.
    graph : {"dot", "gaussian"}, default="dot"
        "dot": eq. (9) on the rows of X l2-normalised here (cosine similarity; the result
        does not depend on the scale of a row; an all-zero row is an isolated point).
        "gaussian": Euclidean k-NN with weights exp(-d^2 / sigma^2); the result depends on
        neither the overall scale of X nor a translation. For the Gaussian graph on unit
        rows put ``sklearn.preprocessing.Normalizer()`` before the estimator in a Pipeline.
    sigma : float, optional
        Bandwidth of the Gaussian graph in the units of X; default the mean k-NN distance.

    Attributes
    ----------
    classes_ : ndarray of shape (c,)
        The sorted labels of the labeled points (any labels but -1).
    transduction_ : ndarray of shape (n,)
        A label per training point (its own for the labeled ones), from `classes_`; a point
        the graph does not connect to any label gets ``classes_[0]`` with certainty 0.
    label_distributions_ : ndarray of shape (n, c)
        The scores Z of eq. (10) clipped at 0, rows L1-normalised; all-zero for a point
        the graph does not connect to any label.
    certainty_ : ndarray of shape (n,)
        omega_i = 1 - H(z_i) / log c (eq. 11) over its maximum; 1 for labeled points.
    n_iter_ : int
        Conjugate-gradient iterations run.
    sigma_ : float or None
        The Gaussian bandwidth used, in the units of X (None for graph="dot").
    X_ : ndarray of shape (n, n_features_in_)
        The training points, for predict.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of the features, when X has string column names.

    Notes
    -----
    predict / predict_proba classify new points by the affinity-weighted vote of the
    label distributions of their k nearest training points (the weights of eq. 9, or the
    Gaussian ones). With zero total weight the Gaussian vote is unweighted (the nearest points
    by distance); the dot vote is uniform (no neighbour with a positive inner product: fit
    leaves such a point without scores too), as is an all-zero vote. So predict(X) on the
    training points need not give transduction_ (a point's own row is one of its k votes).
    predict uses the current k and gamma, and refuses a graph other than the fitted one. X may
    be a torch tensor (on any device; half precision is read as float32), but fit and predict
    run on the CPU: on a GPU, call `propagate` with CUDA tensors. Labels in bytes (as h5py
    reads strings) are decoded as UTF-8. score counts points with y = -1 as errors: score on
    labeled points only.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.datasets import load_digits
    >>> from lpnb.diffusion import LabelPropagation
    >>> X, y = load_digits(return_X_y=True)
    >>> y_train = np.where(np.arange(len(y)) % 10 == 0, y, -1)  # 10% labeled, -1: unlabeled
    >>> model = LabelPropagation(k=10).fit(X, y_train)
    >>> model.classes_
    array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    >>> model.label_distributions_.shape, model.certainty_.shape
    ((1797, 10), (1797,))
    >>> unlabeled = y_train == -1
    >>> bool((model.transduction_[unlabeled] == y[unlabeled]).mean() > 0.9)
    True
    >>> model.predict(X[:5])
    array([0, 1, 2, 3, 4])
    """

    def __init__(self, k=50, gamma=3.0, alpha=0.99, max_iter=20, knn="exact", graph="dot", sigma=None):
        self.k = k
        self.gamma = gamma
        self.alpha = alpha
        self.max_iter = max_iter
        self.knn = knn
        self.graph = graph
        self.sigma = sigma

    def fit(self, X, y):
        """Propagate the labels of y (-1: unlabeled; "-1" in an array of strings) to every row of X; returns self.
        As in scikit-learn, another negative number is a class (with a warning, as it is easily meant as unlabeled;
        `propagate` refuses it). A fit that raises leaves the estimator as it was."""
        before = dict(vars(self))
        try:
            return self._fit(X, y)
        except BaseException:
            vars(self).clear()
            vars(self).update(before)
            raise

    def _fit(self, X, y):
        X, y = _tensor_as_numpy(X), _tensor_as_numpy(y)
        given = np.asarray(y) if y is not None else np.zeros(0)  # None: validate_data says y is required
        if (given.dtype.kind == "f" and np.isnan(given).any()) or (
                given.dtype == object and any(map(_missing, given.ravel()))):
            raise ValueError("y holds NaN or None: mark the unlabeled points with -1")
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32], ensure_min_samples=2)
        if y.dtype.kind == "S":  # bytes, as h5py reads strings (scikit-learn refuses them): as UTF-8 strings
            y = np.char.decode(y, "utf-8")
        labeled = np.asarray(y != -1)  # elementwise for any labels: strings with -1 (object dtype) too
        if y.dtype.kind in "UO":  # np.array(["cat", -1]) holds the string "-1", as do pandas' strings (objects)
            labeled &= np.asarray(y != "-1", dtype=bool)
        if not labeled.any():
            raise ValueError("no labeled example: y is -1 (unlabeled) everywhere")
        try:
            check_classification_targets(y[labeled])
            classes, codes = np.unique(y[labeled], return_inverse=True)
        except TypeError as error:  # both sort the labels: "cat" < 1 has no answer
            kinds = sorted({type(v).__name__ for v in y[labeled]})
            if len(kinds) == 1:  # bytes among objects: scikit-learn's own message says so
                raise ValueError(str(error)) from None
            raise ValueError(f"y mixes labels of types {kinds}: give every label the same type (all strings, or "
                             "all numbers)") from None
        if classes.dtype.kind in "iuf" and (classes < 0).any():  # e.g. -2, meant as unlabeled?
            _warn(f"y holds {classes[classes < 0].tolist()}: only -1 marks an unlabeled point (scikit-learn's "
                  "convention), so these are taken as classes")
        lookalikes = [c for c in classes if isinstance(c, str) and c.strip().lower() in UNLABELED_LOOKALIKES]
        if lookalikes:  # e.g. "" or "unlabeled": a class of its own, most likely the points meant to be unlabeled
            _warn(f"y holds the class(es) {lookalikes}: only -1 (or the string \"-1\") marks an unlabeled point "
                  "(scikit-learn's convention), so these are taken as classes; mark unlabeled points -1")
        labels = np.zeros(len(y), dtype=np.int64)
        labels[labeled] = codes
        with warnings.catch_warnings(record=True) as caught:  # said again below, in this estimator's terms
            warnings.simplefilter("always")
            res = propagate(X, labels, labeled, n_classes=len(classes), k=self.k, gamma=self.gamma,
                            alpha=self.alpha, max_iter=self.max_iter, knn=self.knn, graph=self.graph, sigma=self.sigma)
        for w in caught:
            warnings.warn_explicit(_in_estimator_terms(str(w.message), classes), w.category, w.filename, w.lineno)
        self.classes_, self.sigma_, self.X_ = classes, res.sigma, X
        self.transduction_ = classes[res.pseudo_labels]
        self.label_distributions_ = res.scores
        self.certainty_ = res.weights
        self.n_iter_ = res.n_iter
        return self

    def predict_proba(self, X):
        """Class probabilities (n, c) of new points: the weighted vote of their k nearest
        training points' label distributions."""
        check_is_fitted(self)
        fitted = "dot" if self.sigma_ is None else "gaussian"
        if self.graph != fitted:
            raise ValueError(f"graph is {self.graph!r}, but the model was fitted with graph={fitted!r}: fit it again")
        X = validate_data(self, _tensor_as_numpy(X), reset=False, dtype=[np.float64, np.float32])
        train, frame = _rescale(_checked_matrix(self.X_, "X_"), self.graph)
        queries, _ = _rescale(_checked_matrix(X, "X"), self.graph, frame)
        metric, gamma = "dot" if self.graph == "dot" else "l2", _check_param("gamma", self.gamma, "positive")
        S, I = knn_search(train, min(self.k, len(train)), queries=queries, metric=metric, approx=self.knn == "approx")
        w = S.clamp_min(0) ** gamma if metric == "dot" else _gaussian(S, _scaled_sigma(self.sigma_, frame))
        if metric == "l2":  # every weight underflowed: the nearest points by distance vote alike
            w = torch.where(w.sum(1, keepdim=True) > 0, w, torch.ones_like(w))
        w = w.double()
        m, k = I.shape  # the vote as a sparse (m, n_train) matrix times the distributions: no (m, k, c) array
        weights = torch.sparse_csr_tensor(torch.arange(0, m * k + 1, k, device=I.device), I.reshape(-1).long(),
                                          w.reshape(-1), size=(m, len(train)), check_invariants=False)
        votes = weights @ torch.from_numpy(self.label_distributions_).to(I.device, torch.float64)
        total = votes.sum(1, keepdim=True)
        return torch.where(total > 0, _divide(votes, total), 1.0 / votes.shape[1]).cpu().numpy()

    def predict(self, X):
        """The most probable class of each new point (from classes_)."""
        proba = self.predict_proba(X)  # first: raises NotFittedError before fit
        return self.classes_[proba.argmax(1)]
