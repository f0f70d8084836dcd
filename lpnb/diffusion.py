"""Label propagation by diffusion and pseudo-label weights, Iscen et al. (CVPR 2019), eqs. 5-11.

    propagate(features, labels, labeled)   graph (eq. 9) -> CG solve of eq. (10) -> pseudo-labels
                                           (eq. 7), certainty omega (eq. 11), class weights zeta
    network_pseudo_labels(probs, ...)      the same weights from a network's softmax (Table 1)
    gtg_pseudo_labels(features, ...)       graph transduction game, Erdem & Pelillo 2012 (Table 1)
    LabelPropagation                       scikit-learn style estimator around `propagate`

All three pseudo-labelers return a `PseudoLabels`, computed from their (n, c) scores by the
same rule (`_pseudo_labels`), as the official code does for diffusion.
"""
import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from lpnb.graph import _as_tensor, affinity_graph, default_sigma, knn as knn_search, normalize


@dataclass
class PseudoLabels:
    """Pseudo-labels of all n points and their weights in the loss of eq. (12).

    pseudo_labels (n,) int64: argmax of the scores (eq. 7); labeled points keep their label.
    weights (n,) float32: omega_i = 1 - H(z_i) / log c (eq. 11), divided by its maximum over
        all n points; labeled points get 1, points with an all-zero score row get 0.
    class_weights (c,) float32: zeta_j = (n / c) / n_j, n_j the number of points (labeled or
        pseudo-labeled) of class j; 0 for a class no point carries (it weighs no loss term).
    scores (n, c) float32: the scores clipped at 0, rows L1-normalised (all-zero rows stay 0).
    n_iter, residual: CG iterations and final relative residual (propagate); replicator
        iterations and final largest L1 change of a strategy (GTG); 0 for network scores.
    """
    pseudo_labels: np.ndarray
    weights: np.ndarray
    class_weights: np.ndarray
    scores: np.ndarray
    n_iter: int = 0
    residual: float = 0.0


def _divide(a, b):
    """a / b where b > 0, else 0 (zero rows, zero columns: no NaN)."""
    positive = b > 0
    return torch.where(positive, a / torch.where(positive, b, torch.ones_like(b)), torch.zeros_like(a))


def _check_labels(labels, labeled, n, n_classes, warn_missing=True):
    """Validated (labels as int64 numpy, sorted labeled indices, number of classes c)."""
    labels = torch.as_tensor(labels).cpu().numpy()
    if labels.shape != (n,):
        raise ValueError(f"labels must have shape ({n},), one per point, got {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integers, got dtype {labels.dtype}")
    labeled = torch.as_tensor(labeled).cpu().numpy()
    if labeled.dtype == bool:
        if labeled.shape != (n,):
            raise ValueError(f"labeled mask must have shape ({n},), got {labeled.shape}")
        idx = np.flatnonzero(labeled)
    elif np.issubdtype(labeled.dtype, np.integer) and labeled.ndim == 1:
        if len(labeled) and (labeled.min() < 0 or labeled.max() >= n):
            raise ValueError(f"labeled indices must lie in [0, {n}), got [{labeled.min()}, {labeled.max()}]")
        idx = np.unique(labeled)
    else:
        raise ValueError(f"labeled must be a boolean mask or a 1-D integer index array, got "
                         f"dtype {labeled.dtype} and shape {labeled.shape}")
    if len(idx) == 0:
        raise ValueError("no labeled example: propagation needs at least one labeled point")
    y = labels[idx].astype(np.int64)
    c = int(y.max()) + 1 if n_classes is None else int(n_classes)
    if y.min() < 0 or y.max() >= c:
        raise ValueError(f"labels of labeled points must lie in [0, {c}), got [{y.min()}, {y.max()}]")
    missing = np.setdiff1d(np.arange(c), y)
    if len(missing) and warn_missing:
        warnings.warn(f"classes {missing.tolist()} have no labeled example: they get no score")
    return labels.astype(np.int64), idx, c


def _pseudo_labels(scores, labels, idx, n_iter=0, residual=0.0):
    """Scores (n, c) -> PseudoLabels: clip at 0, L1-normalise rows, argmax (eq. 7), omega from
    the entropy (eq. 11) over its maximum, labeled rows forced, zeta from the class counts."""
    n, c = scores.shape
    Z = scores.float().clamp_min(0)
    mass = Z.sum(1, keepdim=True)
    P = _divide(Z, mass)
    omega = 1 - torch.special.entr(P).sum(1) / math.log(c) if c > 1 else torch.ones(n, device=P.device)
    omega = torch.where(mass[:, 0] > 0, omega.clamp_min(0), torch.zeros_like(omega))
    if omega.max() > 0:
        omega = omega / omega.max()
    pseudo = P.argmax(1).cpu().numpy()
    omega = omega.cpu().numpy()
    pseudo[idx], omega[idx] = labels[idx], 1.0
    counts = np.bincount(pseudo, minlength=c)
    zeta = np.where(counts > 0, (n / c) / np.maximum(counts, 1), 0.0)
    return PseudoLabels(pseudo.astype(np.int64), omega.astype(np.float32), zeta.astype(np.float32),
                        P.cpu().numpy().astype(np.float32), int(n_iter), float(residual))


def conjugate_gradient(matvec, B, *, max_iter=20, tol=1e-6):
    """Solve A X = B for a symmetric positive-definite A given by `matvec`, all c columns of
    B (n, c) at once: one matvec per iteration, per-column step sizes, x0 = 0. Stops when every
    column's relative residual ||b - A x|| / ||b|| is at most tol, or after max_iter
    iterations. Returns (X, iterations, final relative residual, max over columns)."""
    X = torch.zeros_like(B)
    R = B.clone()
    P = R.clone()
    rs = (R * R).sum(0)
    b_norm = B.norm(dim=0)
    b_norm = torch.where(b_norm > 0, b_norm, torch.ones_like(b_norm))  # b = 0: x = 0 solves it
    residual = (rs.sqrt() / b_norm).max().item()
    n_iter = 0
    while n_iter < max_iter and residual > tol:
        AP = matvec(P)
        pAp = (P * AP).sum(0)
        step = _divide(rs, pAp)
        X += step * P
        R -= step * AP
        rs_new = (R * R).sum(0)
        P = R + _divide(rs_new, rs) * P
        rs = rs_new
        residual = (rs.sqrt() / b_norm).max().item()
        n_iter += 1
    return X, n_iter, residual


def propagate(features, labels, labeled, *, n_classes=None, k=50, gamma=3.0, alpha=0.99,
              max_iter=20, knn="exact", graph="dot", sigma=None, device=None):
    """Label propagation by diffusion (sections 3-4), as the official code runs it.

    features (n, d) numpy array or torch tensor: l2-normalised descriptors for graph="dot"
      (eq. 9), or points for graph="gaussian" (Euclidean k-NN, weights exp(-d^2/sigma^2)).
    labels (n,) ints, read only where `labeled` (a boolean mask or an index array) says.
    n_classes: c, default labels[labeled].max() + 1.
    k, gamma: the k-NN graph of eq. (9); knn="exact" or "approx" (faiss IVF, see lpnb.graph).
    alpha, max_iter: (I - alpha Wn) Z = Y (eq. 10) is solved by conjugate gradient, at most
      max_iter iterations (tolerance 1e-6), with Y_ij = 1/|L_j| for labeled i of class j.
    device: where to run (default: the device of `features`; CPU for numpy input). Computation
      is in float32.
    Returns PseudoLabels (pseudo-labels eq. 7, weights eq. 11, class weights, scores).
    """
    x = _as_tensor(features)
    x = x.to(device) if device is not None else x
    n = len(x)
    labels, idx, c = _check_labels(labels, labeled, n, n_classes)
    if not 0 <= alpha < 1:
        raise ValueError(f"alpha must lie in [0, 1), got {alpha}")
    if knn not in ("exact", "approx"):
        raise ValueError(f"knn must be 'exact' or 'approx', got {knn!r}")
    Wn = normalize(affinity_graph(x, k, kind=graph, gamma=gamma, sigma=sigma, approx=knn == "approx"))
    y = torch.from_numpy(labels[idx]).to(x.device)
    counts = torch.bincount(y, minlength=c).float()
    Y = torch.zeros(n, c, device=x.device)
    Y[torch.from_numpy(idx).to(x.device), y] = 1 / counts[y]
    Z, n_iter, residual = conjugate_gradient(lambda V: V - alpha * (Wn @ V), Y, max_iter=max_iter)
    return _pseudo_labels(Z, labels, idx, n_iter, residual)


def network_pseudo_labels(probs, labels, labeled):
    """Pseudo-labels from the network's own predictions (eq. 1, Table 1): probs (n, c) are its
    softmax outputs; argmax, entropy weights and class weights as for diffusion."""
    P = _as_tensor(probs, "probs")
    if (P < 0).any():
        raise ValueError("probs must be non-negative (softmax probabilities), got negative entries")
    labels, idx, _ = _check_labels(labels, labeled, len(P), P.shape[1], warn_missing=False)
    return _pseudo_labels(P, labels, idx)


def gtg_pseudo_labels(features, labels, labeled, *, n_classes=None, k=50, gamma=3.0,
                      max_iter=100, tol=1e-6, knn="exact", device=None):
    """Graph transduction game (Erdem & Pelillo 2012), the GTG baseline of Table 1.

    Players are the points, strategies the classes, payoffs the unnormalised k-NN graph W of
    eq. (9). Labeled players play their class; unlabeled ones start uniform over the classes
    that have a labeled example and follow the replicator dynamics
        x_i(h) <- x_i(h) (W X)_ih / sum_h' x_i(h') (W X)_ih'
    (a player with zero payoff keeps its strategy; a pure strategy is a fixed point, so the
    labeled players stay fixed) for at most max_iter iterations, until no strategy changes by
    more than tol in L1. The final strategies are the scores.
    """
    x = _as_tensor(features)
    x = x.to(device) if device is not None else x
    n = len(x)
    labels, idx, c = _check_labels(labels, labeled, n, n_classes)
    if knn not in ("exact", "approx"):
        raise ValueError(f"knn must be 'exact' or 'approx', got {knn!r}")
    W = affinity_graph(x, k, gamma=gamma, approx=knn == "approx")
    onehot = F.one_hot(torch.from_numpy(labels[idx]), c).float().to(x.device)
    present = onehot.sum(0) > 0
    X = present.float().expand(n, c) / present.sum()
    X = X.index_put((torch.from_numpy(idx).to(x.device),), onehot)
    n_iter, change = 0, 0.0
    while n_iter < max_iter:
        payoff = W @ X
        fitness = (X * payoff).sum(1, keepdim=True)
        X_new = torch.where(fitness > 0, _divide(X * payoff, fitness), X)
        change = (X_new - X).abs().sum(1).max().item()
        X, n_iter = X_new, n_iter + 1
        if change <= tol:
            break
    return _pseudo_labels(X, labels, idx, n_iter, change)


class LabelPropagation:
    """Transductive label propagation with the scikit-learn semi-supervised API: a drop-in
    for sklearn.semi_supervised.LabelSpreading (fit(X, y) with y = -1 for unlabeled points,
    transduction_, label_distributions_, classes_, predict, predict_proba, score).

    Parameters are those of `propagate`. normalize=True l2-normalises X first: the affinity
    [v_i . v_j]_+^gamma of eq. (9) is a cosine similarity only for unit descriptors (use
    normalize=False for graph="gaussian" on raw coordinates).

    fit sets classes_ (sorted labels of the labeled points, any integers), transduction_
    (a label per training point, in the original label space), label_distributions_ (n, c
    scores, rows L1-normalised; all-zero for points the graph does not connect to any label),
    n_iter_ (CG iterations), sigma_ (Gaussian bandwidth) and X_ (the training points).

    predict / predict_proba classify new points by the affinity-weighted vote of the label
    distributions of their k nearest training points (the weights of eq. 9, or the Gaussian
    ones); with zero total weight the vote is unweighted, and an all-zero vote is uniform.
    """
    _params = ("k", "gamma", "alpha", "max_iter", "knn", "graph", "sigma", "normalize")

    def __init__(self, k=50, gamma=3.0, alpha=0.99, max_iter=20, knn="exact", graph="dot",
                 sigma=None, normalize=True):
        self.k, self.gamma, self.alpha, self.max_iter = k, gamma, alpha, max_iter
        self.knn, self.graph, self.sigma, self.normalize = knn, graph, sigma, normalize

    def get_params(self, deep=True):
        return {name: getattr(self, name) for name in self._params}

    def set_params(self, **params):
        for name, value in params.items():
            if name not in self._params:
                raise ValueError(f"invalid parameter {name!r} for LabelPropagation; valid: {self._params}")
            setattr(self, name, value)
        return self

    def _prepare(self, X):
        X = _as_tensor(X, "X")
        return F.normalize(X, dim=1) if self.normalize else X

    def fit(self, X, y):
        X = self._prepare(X)
        y = np.asarray(y)
        if y.shape != (len(X),):
            raise ValueError(f"y must have shape ({len(X)},), one label per row of X, got {y.shape}")
        labeled = y != -1
        if not labeled.any():
            raise ValueError("no labeled example: y is -1 (unlabeled) everywhere")
        self.classes_, codes = np.unique(y[labeled], return_inverse=True)
        labels = np.zeros(len(y), dtype=np.int64)
        labels[labeled] = codes
        self.sigma_ = self.sigma
        if self.graph == "gaussian" and self.sigma is None:
            self.sigma_ = default_sigma(knn_search(X, self.k, metric="l2")[0])
        res = propagate(X, labels, labeled, n_classes=len(self.classes_), k=self.k, gamma=self.gamma,
                        alpha=self.alpha, max_iter=self.max_iter, knn=self.knn, graph=self.graph,
                        sigma=self.sigma_)
        self.X_ = X
        self.label_distributions_ = res.scores
        self.transduction_ = self.classes_[res.pseudo_labels]
        self.n_iter_ = res.n_iter
        return self

    def predict_proba(self, X):
        X = self._prepare(X)
        if X.shape[1] != self.X_.shape[1]:
            raise ValueError(f"X has {X.shape[1]} features, the model was fit on {self.X_.shape[1]}")
        metric = "dot" if self.graph == "dot" else "l2"
        S, I = knn_search(self.X_, min(self.k, len(self.X_)), queries=X, metric=metric)
        w = S.clamp_min(0) ** self.gamma if metric == "dot" else torch.exp(-S / self.sigma_**2)
        w = torch.where(w.sum(1, keepdim=True) > 0, w, torch.ones_like(w))
        votes = (w[..., None] * torch.from_numpy(self.label_distributions_).to(I.device)[I]).sum(1)
        total = votes.sum(1, keepdim=True)
        return torch.where(total > 0, _divide(votes, total), 1.0 / votes.shape[1]).cpu().numpy()

    def predict(self, X):
        return self.classes_[self.predict_proba(X).argmax(1)]

    def score(self, X, y):
        """Mean accuracy of predict(X) against y."""
        return float(np.mean(self.predict(X) == np.asarray(y)))
