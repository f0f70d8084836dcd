"""Diffusion, pseudo-label weights, GTG and network pseudo-labels (lpnb.diffusion) against
dense solves and hand-made cases."""
import functools
import gc
import math
import warnings

import numpy as np
import pytest
import scipy.sparse
import scipy.sparse.linalg
import scipy.stats
import torch

from lpnb.diffusion import (
    _pseudo_labels,
    _size,
    available_memory,
    conjugate_gradient,
    diffuse,
    gtg_pseudo_labels,
    network_pseudo_labels,
    propagate,
)
from lpnb.graph import _csr, affinity_graph, normalize, to_scipy


def blobs(n=240, c=3, d=8, seed=0, spread=0.6):
    """l2-normalised Gaussian blobs: (features, class of each point)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % c
    x = rng.normal(size=(c, d))[y] + spread * rng.normal(size=(n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), y


def dense_reference(x, labels, idx, c, k, gamma, alpha):
    """Everything of eqs. 5-11 with dense numpy: graph, exact solve, weights."""
    n = len(x)
    s = x.astype(np.float64) @ x.T
    np.fill_diagonal(s, -np.inf)
    nn = np.argsort(-s, axis=1)[:, :k]
    A = np.zeros((n, n))
    np.put_along_axis(A, nn, np.maximum(np.take_along_axis(s, nn, 1), 0) ** gamma, 1)
    W = A + A.T
    deg = W.sum(1)
    deg[deg == 0] = 1
    Wn = W / np.sqrt(np.outer(deg, deg))
    Y = np.zeros((n, c))
    for j in range(c):
        members = idx[labels[idx] == j]
        Y[members, j] = 1 / len(members)
    Z = np.linalg.solve(np.eye(n) - alpha * Wn, Y)
    Z = np.maximum(Z, 0)
    P = Z / Z.sum(1, keepdims=True)
    omega = 1 - scipy.stats.entropy(P.T) / np.log(c)
    omega /= omega.max()
    pseudo = P.argmax(1)
    pseudo[idx], omega[idx] = labels[idx], 1
    zeta = (n / c) / np.bincount(pseudo, minlength=c)
    return P, pseudo, omega, zeta, np.eye(n) - alpha * Wn, Y


def test_conjugate_gradient_matches_dense_solve():
    rng = np.random.default_rng(1)
    M = rng.normal(size=(60, 60))
    A = torch.from_numpy(M @ M.T + 60 * np.eye(60))
    B = torch.from_numpy(rng.normal(size=(60, 4)))
    B[:, 2] = 0  # a zero right-hand side: x = 0, no division by zero
    X, n_iter, res = conjugate_gradient(lambda V: A @ V, B, max_iter=200, tol=1e-10)
    np.testing.assert_allclose(X.numpy(), np.linalg.solve(A.numpy(), B.numpy()), atol=1e-8)
    assert n_iter < 200 and res <= 1e-10
    cols = [0, 1, 3]
    true_res = np.linalg.norm((B - A @ X).numpy()[:, cols], axis=0) / np.linalg.norm(B.numpy()[:, cols], axis=0)
    assert true_res.max() < 1e-9 and (X[:, 2] == 0).all()


@pytest.mark.parametrize("n", [5, 50, 200])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_conjugate_gradient_with_tol_0_stops_at_the_dtypes_resolution(n, dtype):
    """Below it the rounded residual shrinks on into subnormals, where p^T A p underflows to 0."""
    generator = torch.Generator().manual_seed(0)
    M = torch.randn(n, n, generator=generator).to(dtype)
    A, B = M @ M.T / n + 0.05 * torch.eye(n, dtype=dtype), torch.randn(n, 3, generator=generator).to(dtype)
    X, n_iter, res = conjugate_gradient(lambda V: A @ V, B, max_iter=5000, tol=0)
    assert n_iter < 5000 and res <= torch.finfo(dtype).eps
    assert conjugate_gradient(lambda V: A @ V, B, max_iter=n_iter - 1, tol=0)[2] > torch.finfo(dtype).eps  # the first
    np.testing.assert_allclose(X.double().numpy(), np.linalg.solve(A.double().numpy(), B.double().numpy()),
                               rtol=1e-2 if dtype == torch.float32 else 1e-8)


def test_conjugate_gradient_leaves_a_column_alone_once_it_has_converged():
    generator = torch.Generator().manual_seed(0)
    M = torch.randn(60, 60, generator=generator, dtype=torch.float64)
    A = M @ M.T / 60 + 0.1 * torch.eye(60, dtype=torch.float64)
    B = torch.randn(60, 3, generator=generator, dtype=torch.float64)
    B[:, 0] = torch.linalg.eigh(A)[1][:, :3].sum(1)  # on 3 eigenvectors: solved in 3 iterations
    X, n_iter, _ = conjugate_gradient(lambda V: A @ V, B, max_iter=500, tol=1e-6)
    after3, *_ = conjugate_gradient(lambda V: A @ V, B, max_iter=3, tol=1e-6)
    assert n_iter > 10 and torch.equal(X[:, 0], after3[:, 0])  # not a rounding's worth of change after it stopped


def test_conjugate_gradient_stops_at_max_iter():
    A = torch.diag(torch.arange(1.0, 51.0, dtype=torch.float64))
    X, n_iter, res = conjugate_gradient(lambda V: A @ V, torch.ones(50, 2, dtype=torch.float64), max_iter=3)
    assert n_iter == 3 and res > 1e-3


@pytest.mark.parametrize("alpha, gamma", [(0.5, 3.0), (0.99, 3.0), (0.99, 1.0)])
def test_propagate_matches_dense_solve(alpha, gamma):
    x, y = blobs()
    idx = np.array([0, 1, 2, 3, 6, 9, 12, 30, 33])  # unbalanced: classes have 4, 2, 3 labels
    P, pseudo, omega, zeta, M, Y = dense_reference(x, y, idx, 3, k=10, gamma=gamma, alpha=alpha)
    res = propagate(x, y, idx, k=10, gamma=gamma, alpha=alpha, max_iter=1000)
    np.testing.assert_allclose(res.scores, P, atol=1e-3)
    np.testing.assert_array_equal(res.pseudo_labels, pseudo)
    np.testing.assert_allclose(res.weights, omega, atol=1e-3)
    np.testing.assert_allclose(res.class_weights, zeta, rtol=1e-6)
    assert res.residual < 1e-5 and res.n_iter < 1000
    assert res.pseudo_labels.dtype == np.int64 and res.weights.dtype == np.float32
    assert res.scores.dtype == np.float32 and res.class_weights.shape == (3,)
    again = propagate(x, y, idx, k=10, gamma=gamma, alpha=alpha, max_iter=1000)
    assert res != again  # results compare as objects (not elementwise: no ambiguous truth value)


def test_propagate_cg_residual_against_dense_system():
    x, y = blobs(seed=3)
    idx = np.arange(0, 240, 20)
    *_, M, Y = dense_reference(x, y, idx, 3, k=10, gamma=3.0, alpha=0.99)
    # the solution itself, before clipping: repeat propagate's linear solve through its pieces
    Wn = normalize(affinity_graph(x, 10))
    Z, n_iter, res = conjugate_gradient(lambda V: V - 0.99 * (Wn @ V), torch.from_numpy(Y).float(), max_iter=1000)
    true_res = np.linalg.norm(Y - M @ Z.double().numpy(), axis=0) / np.linalg.norm(Y, axis=0)
    assert res < 1e-5 and true_res.max() < 1e-4
    # 20 iterations (the paper's setting) leave a larger residual that CG reports honestly
    _, _, res20 = conjugate_gradient(lambda V: V - 0.99 * (Wn @ V), torch.from_numpy(Y).float(), max_iter=20)
    assert propagate(x, y, idx, k=10).residual == pytest.approx(res20, rel=1e-3)


def test_diffuse_solves_eq10_with_the_classes_at_once_or_in_blocks():
    x, y = blobs(n=240, c=4, seed=5)
    idx = np.arange(0, 240, 7)  # unequal classes: 1/|L_j| differs
    *_, M, Y = dense_reference(x, y, idx, 4, k=10, gamma=3.0, alpha=0.9)
    Wn = normalize(affinity_graph(x, 10))
    Z, n_iter, residual = diffuse(Wn, y, idx, 4, alpha=0.9, max_iter=200)
    np.testing.assert_allclose(Z.numpy(), np.linalg.solve(M, Y), atol=1e-5)
    assert residual < 1e-5 and n_iter < 200
    for block in (1, 3):  # the same scores, a block of classes at a time
        np.testing.assert_allclose(diffuse(Wn, y, idx, 4, alpha=0.9, max_iter=200, block=block)[0].numpy(),
                                   Z.numpy(), atol=1e-6)


def test_cg_from_zero_reaches_one_edge_less_than_its_iterations():
    """docs/method.md: a point `max_iter` or more edges from every label gets no score (Z starts at 0, and m
    iterations stay in the span of Y, AY, ..., A^(m-1) Y)."""
    n = 30
    path = scipy.sparse.diags([np.ones(n - 1)] * 2, [1, -1], format="csr", dtype=np.float32)  # i -- i+1
    Wn = normalize(_csr(torch.from_numpy(path.indptr).long(), torch.from_numpy(path.indices).long(),
                        torch.from_numpy(path.data), (n, n)))
    for max_iter in (1, 2, 5, 20):
        Z, n_iter, _ = diffuse(Wn, np.zeros(n, np.int64), np.array([0]), 1, max_iter=max_iter)
        assert n_iter == max_iter and np.flatnonzero(Z[:, 0].numpy()).max() == max_iter - 1


def test_mask_and_index_array_agree():
    x, y = blobs(seed=4)
    idx = np.arange(0, 240, 16)
    mask = np.zeros(240, bool)
    mask[idx] = True
    a, b = propagate(x, y, idx, k=8), propagate(x, y, mask, k=8)
    np.testing.assert_array_equal(a.scores, b.scores)
    np.testing.assert_array_equal(a.pseudo_labels, b.pseudo_labels)
    # labels of unlabeled points are never read
    y2 = y.copy()
    y2[~mask] = -7
    np.testing.assert_array_equal(propagate(x, y2, mask, k=8).scores, a.scores)


def test_labeled_rows_keep_label_and_weight_one():
    x, y = blobs(seed=5, spread=3.0)  # noisy: diffusion disagrees with some labels
    idx = np.arange(0, 240, 5)
    res = propagate(x, y, idx, k=10)
    np.testing.assert_array_equal(res.pseudo_labels[idx], y[idx])
    assert (res.weights[idx] == 1).all()
    assert 0 <= res.weights.min() and res.weights.max() == 1


def test_isolated_point_gets_zero_weight_not_nan():
    x, y = blobs(n=60, c=2, d=4, seed=6, spread=0.2)
    x = np.abs(x)
    x[0] = -0.5  # (-1/2, ..., -1/2): negative similarity to every other point
    with pytest.warns(UserWarning, match="1 of the 56 unlabeled points have no edge of positive weight"):
        res = propagate(x, y, np.array([1, 2, 3, 4]), k=5)
    assert np.isfinite(res.scores).all() and np.isfinite(res.weights).all()
    assert (res.scores[0] == 0).all() and res.weights[0] == 0 and res.pseudo_labels[0] == 0
    # zeta: the isolated point carries no class, so it is not counted in class 0
    np.testing.assert_allclose(res.class_weights, (60 / 2) / np.bincount(res.pseudo_labels[1:], minlength=2))


def test_points_no_labeled_point_reaches_are_named_in_a_warning():
    rng = np.random.default_rng(0)
    x = np.vstack([rng.normal(size=(100, 2)), rng.normal(size=(30, 2)) + 100])  # a far group: its own component
    y = np.r_[(x[:100, 0] > 0).astype(int), np.zeros(30, int)]
    idx = np.r_[np.flatnonzero(y[:100] == 0)[:3], np.flatnonzero(y[:100] == 1)[:3]]
    with pytest.warns(UserWarning, match="^30 of the 124 unlabeled points have edges but no pseudo-label: 30 in a "
                                         "part of the graph without labels. They get pseudo-label 0") as seen:
        res = propagate(x, y, idx, k=5, graph="gaussian", sigma=1.0)
    assert not any("no edge" in str(w.message) for w in seen)
    assert not res.scored[100:].any() and (res.weights[100:] == 0).all() and res.scored[:100].all()
    idx = np.r_[idx, 100]  # one label in the far group: every point is reached
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert propagate(x, y, idx, k=5, graph="gaussian", sigma=1.0).scored.all()
    with pytest.warns(UserWarning, match=r"123 of the 123 .*: alpha=0: the scores are the labels alone"):
        propagate(x, y, idx, k=5, graph="gaussian", sigma=1.0, alpha=0)


def test_points_beyond_the_solves_reach_or_tied_are_told_apart_from_parts_without_labels():
    """CG from Z = 0 reaches one more edge per iteration: on a chain labeled at both ends it can meet its
    tolerance, or max_iter, before the middle has a score. Points with equal scores for all classes are tied."""
    chain = np.c_[np.arange(400.0), np.zeros(400)]
    labels = np.zeros(400, int)
    labels[-1] = 1
    with pytest.warns(UserWarning, match=r"^198 of the 398 unlabeled points have edges but no pseudo-label: 198 "
                                         r"farther from every label than the solve's 100 iterations reach \(it met its "
                                         r"tolerance first: a larger k or more labels shorten the paths, a larger "
                                         r"alpha=0\.99 carries the labels farther\)\. They"):
        res = propagate(chain, labels, [0, 399], k=2, graph="gaussian", max_iter=1000)
    # 99 edges from each end: an end point's neighbours are the points 1 and 2 away, so 99 edges reach point 100
    assert res.n_iter == 100 and np.array_equal(np.flatnonzero(res.scored), np.r_[0:101, 299:400])
    with pytest.warns(UserWarning, match=r": 378 farther .* 10 iterations reach \(raise max_iter=10, a run's "
                                         r"cg_iters\)\. They"):
        propagate(chain, labels, [0, 399], k=2, graph="gaussian", max_iter=10)
    # a point as near one label as the other, in a graph the same seen from either (no order of a k-NN search's
    # ties or of a sum can favour one class)
    with pytest.warns(UserWarning, match=r"^1 of the 1 unlabeled points have edges but no pseudo-label: 1 with equal "
                                         r"scores for every class\. They"):
        res = propagate(np.array([[1.0, 0], [0, 1], [1, 1]]), np.r_[0, 1, -1], [0, 1], k=2)
    assert (res.scores[2] == 0.5).all() and not res.scored[2] and res.scored[:2].all()


def test_all_zero_or_uniform_probability_rows_are_not_counted_in_zeta():
    probs = np.array([[0.9, 0.1], [0.1, 0.9], [0, 0], [0.5, 0.5], [0, 0]])
    res = network_pseudo_labels(probs, np.array([0, 1, 0, 0, 0]), np.array([0, 1]))
    np.testing.assert_array_equal(res.weights, [1, 1, 0, 0, 0])
    np.testing.assert_array_equal(res.scored, [True, True, False, False, False])
    np.testing.assert_allclose(res.class_weights, [5 / 2, 5 / 2])  # one point per class, not 4 and 1


def test_a_point_cut_off_by_float32_underflow_is_named_in_a_warning():
    rng = np.random.default_rng(0)
    x = np.vstack([rng.normal(size=(300, 2)), [[8.0, 0.0]]])  # the last: its neighbours about 5 away
    y = np.r_[(x[:300, 0] > 0).astype(int), -1]
    idx = np.r_[np.flatnonzero(y == 0)[:5], np.flatnonzero(y == 1)[:5]]
    with pytest.warns(UserWarning, match="1 of the 291 unlabeled points have no edge of positive weight .* "
                                         "a larger sigma connects them"):
        res = propagate(x, y, idx, k=10, graph="gaussian")
    assert not res.scored[300] and res.weights[300] == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # connected at a larger sigma: no warning, and it takes its side's class
        res = propagate(x, y, idx, k=10, graph="gaussian", sigma=3.0)
    assert res.pseudo_labels[300] == 1 and res.weights[300] > 0
    x = np.abs(x)
    x[300] = -1  # graph="dot": a negative inner product with every other point
    with pytest.warns(UserWarning, match="1 of the 291 unlabeled points have no edge .*inner products"):
        propagate(x, y, idx, k=10)


def test_duplicate_heavy_set():
    x = np.repeat(np.eye(3, dtype=np.float32), 20, axis=0)  # 3 points, 20 copies each
    y = np.repeat(np.arange(3), 20)
    res = propagate(x, y, np.array([0, 20, 40]), k=25)
    assert np.isfinite(res.scores).all() and np.isfinite(res.weights).all()
    np.testing.assert_array_equal(res.pseudo_labels, y)
    res = propagate(np.ones((30, 2), np.float32), np.zeros(30, int), np.array([0]), k=5)
    assert np.isfinite(res.weights).all()


def test_gaussian_graph_on_two_moons_like_data():
    rng = np.random.default_rng(7)
    t = rng.uniform(0, np.pi, 200)
    y = np.arange(200) % 2
    x = np.stack([np.cos(t) + y, np.sin(t) * (1 - 2 * y) + 0.5 * y], 1) + 0.05 * rng.normal(size=(200, 2))
    res = propagate(x.astype(np.float32), y, np.array([0, 1]), k=10, graph="gaussian", max_iter=200)
    assert (res.pseudo_labels == y).mean() > 0.95


def test_class_without_labeled_example_warns_and_stays_zero():
    x, y = blobs(seed=8)
    idx = np.flatnonzero(y != 2)[:10]
    with pytest.warns(UserWarning, match=r"classes \[2\] have no labeled example"):
        res = propagate(x, y, idx, n_classes=3, k=10)
    assert (res.scores[:, 2] == 0).all()
    assert res.class_weights[2] == 0 and np.isfinite(res.class_weights).all()


def test_a_top_class_without_labeled_example_is_warned_about_when_n_classes_is_left_to_default():
    x, y = blobs(seed=8)
    idx = np.flatnonzero(y != 2)[:10]
    with pytest.warns(UserWarning, match=r"80 unlabeled points carry labels up to 2, beyond the labeled classes "
                                         r"0\.\.1: n_classes defaults to 2 .* pass n_classes"):
        assert propagate(x, y, idx, k=10).scores.shape == (240, 2)
    with warnings.catch_warnings():  # -1 for the unlabeled points, or n_classes given: nothing to say
        warnings.simplefilter("error")
        propagate(x, np.where(np.isin(np.arange(240), idx), y, -1), idx, k=10)
        with pytest.warns(UserWarning, match=r"classes \[2\] have no labeled example"):
            propagate(x, y, idx, n_classes=3, k=10)


def test_a_solve_stopped_far_from_convergence_is_warned_about():
    """alpha near 1 needs many more iterations than 20: the residual then says the scores are not eq. (10)'s."""
    x, y = blobs(n=1000, c=5, d=16, seed=7, spread=1.2)
    idx = np.flatnonzero(np.random.default_rng(7).random(1000) < 0.05)
    with pytest.warns(UserWarning, match=r"stopped at max_iter=20 with relative residual .* raise max_iter "
                                         r"\(alpha=0\.99999"):
        res = propagate(x, y, idx, k=10, alpha=0.99999)
    assert res.n_iter == 20 and res.residual > 0.5
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert propagate(x, y, idx, k=10, alpha=0.99999, max_iter=2000).residual <= 1e-6


def test_k_too_large_warns():
    x, y = blobs(n=12, c=2)
    with pytest.warns(UserWarning, match="k=50"):
        res = propagate(x, y, np.array([0, 1]))
    assert res.scores.shape == (12, 2)


# --- bad input: one test each ---

def test_nan_features():
    x, y = blobs()
    x[3, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        propagate(x, y, np.array([0, 1, 2]))


def test_inf_features():
    x, y = blobs()
    x[5, 2] = np.inf
    with pytest.raises(ValueError, match="NaN or inf"):
        propagate(x, y, np.array([0, 1, 2]))


def test_features_not_2d():
    with pytest.raises(ValueError, match="2-D"):
        propagate(np.ones(10), np.zeros(10, int), np.array([0]))


def test_labels_wrong_length():
    x, y = blobs()
    with pytest.raises(ValueError, match=r"labels must have shape \(240,\)"):
        propagate(x, y[:-1], np.array([0, 1, 2]))


def test_mask_wrong_length():
    x, y = blobs()
    with pytest.raises(ValueError, match=r"labeled mask must have shape \(240,\)"):
        propagate(x, y, np.ones(100, bool))
    mask = torch.zeros(241, dtype=torch.uint8)  # torch's old mask type, one too long: not read as indices 0 and 1
    mask[10:40] = 1
    with pytest.raises(ValueError, match=r"labeled mask must have shape \(240,\), got \(241,\)"):
        propagate(x, y, mask)
    with pytest.raises(ValueError, match=r"got \(2,\) \(a torch uint8 tensor of 0s and 1s is read as a mask"):
        propagate(x, y, torch.tensor([0, 1], dtype=torch.uint8))  # meant as indices 0 and 1


def test_labels_passed_as_the_index_array_are_refused():
    x, y = blobs()
    with pytest.raises(ValueError, match=r"labeled holds 237 repeated indices \(240 values, 3 distinct\).*pass a "
                                         r"boolean mask instead"):
        propagate(x, y, y, k=10)


def test_index_out_of_range():
    x, y = blobs()
    with pytest.raises(ValueError, match=r"labeled indices must lie in \[0, 240\)"):
        propagate(x, y, np.array([0, 240]))


def test_labeled_not_mask_or_index():
    x, y = blobs()
    with pytest.raises(ValueError, match="boolean mask or a 1-D integer"):
        propagate(x, y, np.array([0.0, 1.0]))


def test_labels_not_integer():
    x, y = blobs()
    with pytest.raises(ValueError, match="labels must be integers"):
        propagate(x, y.astype(float), np.array([0, 1, 2]))


def test_negative_label():
    x, y = blobs()
    y[0] = -1
    for n_classes in (3, None):  # None: every labeled point -1 would have made it "in [0, 0)"
        with pytest.raises(ValueError, match="must be classes >= 0, got -1; a point labeled -1 .* is unlabeled"):
            propagate(x, y, np.array([0]), n_classes=n_classes)
    with warnings.catch_warnings(), pytest.raises(ValueError, match="sigma is the bandwidth of graph='gaussian'"):
        warnings.simplefilter("error")  # the parameter is refused before the labels are looked at
        propagate(x, y, np.array([1, 2]), sigma=1.0)
    with pytest.raises(ValueError, match=r"renumber them with np.unique\(labels, return_inverse=True\)"):
        propagate(x, y.astype(str), np.array([1, 2]))


def test_label_not_below_n_classes():
    x, y = blobs()
    with pytest.raises(ValueError, match=r"must lie in \[0, 2\)"):
        propagate(x, y, np.array([0, 1, 2]), n_classes=2)


def test_no_labeled_example():
    x, y = blobs()
    with pytest.raises(ValueError, match="no labeled example"):
        propagate(x, y, np.zeros(240, bool))
    for empty in [np.array([], dtype=int), [], np.array([]), torch.tensor([])]:
        with pytest.raises(ValueError, match="no labeled example"):
            propagate(x, y, empty)


def test_bad_alpha_and_knn():
    x, y = blobs()
    with pytest.raises(ValueError, match="alpha"):
        propagate(x, y, np.array([0, 1, 2]), alpha=1.0)
    with pytest.raises(ValueError, match="knn"):
        propagate(x, y, np.array([0, 1, 2]), knn="hnsw")
    with pytest.raises(ValueError, match=r"alpha = 0.99999999 is 1.0 in float32"):  # passes alpha < 1 in float64
        propagate(x, y, np.array([0, 1, 2]), alpha=0.99999999)
    with pytest.raises(ValueError, match="device 'tpu' is not a torch device: use 'cpu', 'cuda' or 'cuda:N'"):
        propagate(x, y, np.array([0, 1, 2]), device="tpu")
    with pytest.raises(ValueError, match="features have no rows"):
        propagate(x[:0], y[:0], np.zeros(0, bool))


# --- network and GTG pseudo-labels on hand-made cases ---

def test_network_pseudo_labels_by_hand():
    probs = np.array([[0.1, 0.8, 0.1],      # labeled as class 0 although the network says 1
                      [1 / 3, 1 / 3, 1 / 3],  # uniform: entropy log 3, omega 0
                      [0.5, 0.5, 0.0],      # entropy log 2
                      [0.0, 0.0, 1.0]])     # certain: omega 1
    res = network_pseudo_labels(probs, np.array([0, 0, 0, 0]), np.array([True, False, False, False]))
    omega_2 = 1 - math.log(2) / math.log(3)
    # raw omegas (0.4..., 0, omega_2, 1): the max is 1, so no rescaling; labeled row forced to 1
    np.testing.assert_allclose(res.weights, [1, 0, omega_2, 1], atol=1e-6)
    np.testing.assert_array_equal(res.pseudo_labels, [0, 0, 0, 2])  # ties go to the first class
    np.testing.assert_allclose(res.class_weights, [(4 / 3) / 2, 0, 4 / 3])  # the uniform row carries no class
    np.testing.assert_allclose(res.scores, probs, atol=1e-7)


def test_network_weights_rescaled_by_max():
    probs = np.array([[0.5, 0.5], [0.9, 0.1], [0.2, 0.8]])
    res = network_pseudo_labels(probs, np.array([1, 0, 0]), np.array([0]))
    raw = 1 - scipy.stats.entropy(probs.T) / math.log(2)
    np.testing.assert_allclose(res.weights, [1, raw[1] / raw.max(), raw[2] / raw.max()], atol=1e-6)
    np.testing.assert_array_equal(res.pseudo_labels, [1, 0, 1])


def test_network_pseudo_labels_bad_input():
    with pytest.raises(ValueError, match="non-negative"):
        network_pseudo_labels(np.array([[1.5, -0.5], [0.5, 0.5]]), np.array([0, 0]), np.array([0]))
    with pytest.raises(ValueError, match=r"must lie in \[0, 2\)"):
        network_pseudo_labels(np.array([[0.5, 0.5], [0.5, 0.5]]), np.array([2, 0]), np.array([0]))


def three_points(theta_deg=30):
    """a = e1 (class 0), b = e2 (class 1), u at theta from a; k = 2: u is linked to a by
    w_ua = 2 cos(theta)^gamma and to b by w_ub = 2 sin(theta)^gamma."""
    t = math.radians(theta_deg)
    x = np.array([[1, 0], [0, 1], [math.cos(t), math.sin(t)]], np.float32)
    return x, np.array([0, 1, -1]), np.array([0, 1]), math.cos(t), math.sin(t)


@pytest.mark.parametrize("steps", [1, 2, 3])
def test_gtg_replicator_steps_by_hand(steps):
    # u starts at (1/2, 1/2); payoffs (w_ua, w_ub) are fixed since a and b are fixed, so after
    # t steps x_u is proportional to (w_ua^t, w_ub^t), i.e. (cos^t, sin^t) for gamma = 1
    x, y, idx, ca, sb = three_points()
    res = gtg_pseudo_labels(x, y, idx, k=2, gamma=1.0, max_iter=steps)
    expected = np.array([ca**steps, sb**steps]) / (ca**steps + sb**steps)
    np.testing.assert_allclose(res.scores[2], expected, atol=1e-6)
    np.testing.assert_allclose(res.scores[:2], np.eye(2))
    assert res.pseudo_labels[2] == 0 and res.n_iter == steps


def test_gtg_converges_to_the_stronger_class():
    x, y, idx, *_ = three_points(theta_deg=70)  # closer to b
    res = gtg_pseudo_labels(x, y, idx, k=2, gamma=3.0, max_iter=1000, tol=1e-9)
    np.testing.assert_allclose(res.scores[2], [0, 1], atol=1e-6)
    assert res.pseudo_labels[2] == 1 and res.weights[2] == pytest.approx(1, abs=1e-5)
    assert res.n_iter < 1000 and res.residual <= 1e-9


def test_gtg_isolated_player_and_missing_class():
    x, y = blobs(n=60, c=3, d=4, seed=9, spread=0.2)
    x = np.abs(x)
    x[0] = -0.5  # no payoff: keeps its uniform start
    idx = np.flatnonzero(y != 2)[1:6]
    with pytest.warns(UserWarning) as caught:
        res = gtg_pseudo_labels(x, y, idx, n_classes=3, k=5)
    assert [str(w.message)[:60] for w in caught] == ["classes [2] have no labeled example: they get no score",
                                                     "1 of the 55 unlabeled points have no edge of positive weight"]
    assert (res.scores[0] == 0).all() and res.weights[0] == 0 and not res.scored[0]  # no game, no pseudo-label
    assert (res.scores[:, 2] == 0).all() and np.isfinite(res.weights).all()
    counts = np.bincount(res.pseudo_labels[1:], minlength=3)
    np.testing.assert_allclose(res.class_weights, [20 / counts[0], 20 / counts[1], 0])  # class 2: no point carries it
    x2, y2 = x[:, :2], y % 2  # two classes: the player would keep a uniform start, counted in class 0 before
    with pytest.warns(UserWarning, match="1 of the 55 unlabeled points have no edge of positive weight"):
        res2 = gtg_pseudo_labels(x2, y2, idx, k=5)
    with pytest.warns(UserWarning, match="1 of the 55 unlabeled points have no edge of positive weight"):
        ref = propagate(x2, y2, idx, k=5)
    assert not res2.scored[0] and not ref.scored[0]
    np.testing.assert_allclose(res2.class_weights, (60 / 2) / np.bincount(res2.pseudo_labels[1:], minlength=2))


@pytest.mark.parametrize("n_classes", [2, 3])  # 3: a class without a labeled example
@pytest.mark.filterwarnings(r"ignore:classes \[2\] have no labeled example")  # n_classes 3: as it should
def test_gtg_gives_no_pseudo_label_in_a_part_of_the_graph_without_labels(n_classes):
    """Those players keep their start, uniform over the classes labeled: not all equal when a class has no label,
    yet no information either; `propagate` gives them none."""
    rng = np.random.default_rng(0)
    near, far = rng.normal([1, 0, 0], 0.05, (10, 3)), rng.normal([0, 0, 1], 0.05, (30, 3))
    x, y = np.vstack([near, far]).astype(np.float32), np.r_[np.arange(10) % 2, np.zeros(30, int)]
    for pseudo_labeler in (gtg_pseudo_labels, propagate):
        with pytest.warns(UserWarning, match="30 of the 30 unlabeled points have edges but no pseudo-label: 30 in "
                                             "a part of the graph without labels"):
            res = pseudo_labeler(x, y, np.arange(10), n_classes=n_classes, k=5)
        assert not res.scored[10:].any() and (res.weights[10:] == 0).all() and (res.scores[10:] == 0).all()
        np.testing.assert_allclose(res.class_weights[:2], 40 / n_classes / 5)  # 5 labeled of each, nothing more


def test_gtg_gives_no_pseudo_label_to_players_farther_than_its_iterations_reach():
    """On a chain each iteration carries the labeled strategies one edge farther: the players past max_iter edges
    keep their start, which with a class missing is no uniform row, and must not count as pseudo-labeled."""
    t = np.linspace(0, 1.2, 200)
    x, y = np.c_[np.cos(t), np.sin(t)].astype(np.float32), np.full(200, -1)
    y[:2] = [0, 2]  # class 1 has no labeled example
    with pytest.warns(UserWarning) as caught:
        res = gtg_pseudo_labels(x, y, np.array([0, 1]), n_classes=3, k=2, max_iter=10)
    assert ("have edges but no pseudo-label: 188 farther from every label than the 10 iterations reach (raise "
            "max_iter=10") in str(caught[-1].message)
    assert res.scored[:12].all() and not res.scored[12:].any() and (res.scores[12:] == 0).all()  # 10 edges on
    np.testing.assert_allclose(res.class_weights[[0, 2]], (200 / 3) / np.bincount(res.pseudo_labels[:12])[[0, 2]])


def test_gtg_on_blobs_agrees_with_labels():
    x, y = blobs(seed=10, spread=0.4)
    res = gtg_pseudo_labels(x, y, np.arange(0, 240, 25), k=10)
    assert (res.pseudo_labels == y).mean() > 0.95


def test_shared_scoring_rule():
    # all three pseudo-labelers use the same scores -> weights rule: feed diffusion's scores
    # to the network path and get the same result back
    x, y = blobs(seed=11)
    idx = np.arange(0, 240, 13)
    res = propagate(x, y, idx, k=10)
    again = network_pseudo_labels(res.scores, y, idx)
    np.testing.assert_array_equal(again.pseudo_labels, res.pseudo_labels)
    np.testing.assert_allclose(again.weights, res.weights, atol=1e-6)
    np.testing.assert_allclose(again.class_weights, res.class_weights)


# --- conjugate gradient: only the real method passes ---

def test_cg_needs_as_many_iterations_as_distinct_eigenvalues():
    # in exact arithmetic CG solves a system whose matrix has m distinct eigenvalues in m
    # iterations; steepest descent (or Jacobi) needs about a hundred for 1e-10 at condition 9
    rng = np.random.default_rng(12)
    Q, _ = np.linalg.qr(rng.normal(size=(80, 80)))
    eigenvalues = np.array([1.0, 2.0, 3.5, 5.0, 9.0])[np.arange(80) % 5]
    A = torch.from_numpy((Q * eigenvalues) @ Q.T)
    B = torch.from_numpy(rng.normal(size=(80, 3)))
    X, n_iter, res = conjugate_gradient(lambda V: A @ V, B, max_iter=50, tol=1e-10)
    assert n_iter <= 5 and res <= 1e-10
    np.testing.assert_allclose((A @ X).numpy(), B.numpy(), atol=1e-8)


def test_cg_as_good_as_scipy_on_propagates_system():
    # (I - alpha Wn) Z = Y for a real graph, 20 iterations from Z = 0: the residual of each
    # column is that of scipy's CG (float64, one column at a time), up to float32 rounding
    x, y = blobs(seed=13)
    idx = np.arange(0, 240, 20)
    *_, Y = dense_reference(x, y, idx, 3, k=10, gamma=3.0, alpha=0.99)
    Wn = normalize(affinity_graph(x, 10))
    M = scipy.sparse.identity(240) - 0.99 * to_scipy(Wn).astype(np.float64)
    Z, n_iter, res = conjugate_gradient(lambda V: V - 0.99 * (Wn @ V), torch.from_numpy(Y).float(), max_iter=20)
    ours = np.linalg.norm(Y - M @ Z.double().numpy(), axis=0) / np.linalg.norm(Y, axis=0)
    theirs = []
    for j in range(3):
        z, _ = scipy.sparse.linalg.cg(M, Y[:, j], rtol=1e-14, atol=0.0, maxiter=20)
        theirs.append(np.linalg.norm(Y[:, j] - M @ z) / np.linalg.norm(Y[:, j]))
    assert n_iter == 20 and min(theirs) > 1e-4  # not converged: the comparison means something
    assert (ours <= 1.05 * np.array(theirs) + 1e-5).all(), (ours, theirs)
    assert res == pytest.approx(ours.max(), rel=1e-2)


@pytest.mark.parametrize("bad_call", [0, 2])
def test_cg_raises_when_matvec_returns_nan(bad_call):
    A = torch.diag(torch.arange(1.0, 21.0, dtype=torch.float64))
    calls = []

    def matvec(V):
        calls.append(1)
        return A @ V * (np.nan if len(calls) > bad_call else 1.0)

    with pytest.raises(FloatingPointError, match="residual became NaN or inf"):
        conjugate_gradient(matvec, torch.ones(20, 2, dtype=torch.float64), max_iter=10)


def test_gtg_raises_when_a_strategy_becomes_nan(monkeypatch):
    # an infinite payoff (affinity_graph never builds one) makes x * inf / inf = NaN: the
    # replicator step must raise rather than turn it into scores
    import lpnb.diffusion

    def inf_graph(x, k, **kwargs):
        W = affinity_graph(x, k, **kwargs)
        return _csr(W.crow_indices(), W.col_indices(), torch.full_like(W.values(), np.inf), W.shape)

    monkeypatch.setattr(lpnb.diffusion, "affinity_graph", inf_graph)
    x, y = blobs(n=60)
    with pytest.raises(FloatingPointError, match="strategy became NaN or inf at iteration 1"):
        gtg_pseudo_labels(x, y, np.array([0, 1, 2]), k=5)


def test_cg_raises_on_a_matrix_that_is_not_positive_definite():
    for diagonal in ([1.0, -2.0], [1.0, 0.0]):  # indefinite, singular: the search direction has p^T A p <= 0
        with pytest.raises(FloatingPointError, match="not positive definite"):
            conjugate_gradient(functools.partial(torch.mul, torch.tensor(diagonal)[:, None]), torch.ones(2, 1))


def test_cg_refuses_non_finite_right_hand_side():
    with pytest.raises(ValueError, match="NaN or inf"):
        conjugate_gradient(lambda V: V, torch.tensor([[1.0], [np.inf]]))


# --- the shared scoring rule, by hand ---

def test_scores_clipped_at_zero_then_l1_normalised():
    scores = torch.tensor([[2.0, -1.0, 0.0],     # -> (1, 0, 0): certain
                           [-0.5, 1.0, 1.0],     # -> (0, 1/2, 1/2)
                           [-1.0, -2.0, -3.0],   # all negative -> an all-zero row: weight 0
                           [3.0, 1.0, -4.0],     # -> (3/4, 1/4, 0)
                           [1.0, 1.0, 1.0]])     # labeled, class 2
    res = _pseudo_labels(scores, np.array([0, 0, 0, 0, 2]), np.array([4]))
    P = np.array([[1, 0, 0], [0, 0.5, 0.5], [0, 0, 0], [0.75, 0.25, 0], [1 / 3, 1 / 3, 1 / 3]])
    np.testing.assert_allclose(res.scores, P, atol=1e-7)
    h = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    # raw omegas (1, ..., 0, ..., 0): the maximum is 1, no rescaling; the labeled row gets 1
    np.testing.assert_allclose(res.weights, [1, 1 - math.log(2) / math.log(3), 0, 1 - h / math.log(3), 1], atol=1e-6)
    np.testing.assert_array_equal(res.pseudo_labels, [0, 1, 0, 0, 2])  # ties: the first class
    # class 0: rows 0 and 3; the all-zero row 2 carries no class and is not counted
    np.testing.assert_allclose(res.class_weights, [(5 / 3) / 2, 5 / 3, 5 / 3], rtol=1e-6)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_scores_must_be_finite(bad):
    with pytest.raises(ValueError, match="scores contain NaN or inf"):
        _pseudo_labels(torch.tensor([[bad, 1.0], [0.5, 0.5]]), np.array([0, 0]), np.array([1]))


# --- the overall scale of the features does not matter ---

SCALES = [(1e-30, np.float32), (1e-7, np.float32), (1.0, np.float32), (1e7, np.float32), (1e30, np.float32),
          (1e200, np.float64)]


def raw_points(seed=29, k=10):
    """Blobs not normalised: rows of very different norms, away from the origin. A seed whose
    k-th and (k+1)-th neighbours are apart (cosine and Euclidean, relative gap > 1e-5): float32
    rounding of a scaled copy then cannot change the graph, only the scale handling can."""
    rng = np.random.default_rng(seed)
    y = np.arange(240) % 3
    x = rng.normal(size=(3, 8))[y] + 0.6 * rng.normal(size=(240, 8))
    x = x * rng.uniform(0.2, 5.0, (240, 1)) + 2.0
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    cos = -np.sort(-(u @ u.T - 3 * np.eye(240)), axis=1)
    dist = np.sort(np.linalg.norm(x[:, None] - x[None], axis=-1) + np.diag(np.full(240, np.inf)), axis=1)
    assert (cos[:, k - 1] - cos[:, k]).min() > 1e-5
    assert ((dist[:, k] - dist[:, k - 1]) / dist[:, :k].mean()).min() > 1e-5
    return x, y


def assert_same(res, ref, atol=1e-5):
    np.testing.assert_array_equal(res.pseudo_labels, ref.pseudo_labels)
    np.testing.assert_allclose(res.scores, ref.scores, atol=atol)
    np.testing.assert_allclose(res.weights, ref.weights, atol=atol)
    np.testing.assert_allclose(res.class_weights, ref.class_weights, rtol=1e-6)
    assert np.isfinite(res.residual)


@pytest.mark.parametrize("scale, dtype", SCALES)
@pytest.mark.parametrize("graph", ["dot", "gaussian"])
def test_propagate_does_not_depend_on_scale(graph, scale, dtype):
    x, y = raw_points()
    idx = np.arange(0, 240, 10)
    ref = propagate(x, y, idx, k=10, graph=graph)
    assert 0 < ref.residual < 0.1
    atol = 1e-5 if graph == "dot" else 5e-4  # Gaussian: float32 rounding of X alone moves them 2e-4
    assert_same(propagate((x * scale).astype(dtype), y, idx, k=10, graph=graph), ref, atol)


@pytest.mark.parametrize("scale, dtype", SCALES)
def test_gaussian_sigma_is_in_the_features_units(scale, dtype):
    x, y = raw_points(33)
    idx = np.arange(0, 240, 10)
    ref = propagate(x, y, idx, k=10, graph="gaussian", sigma=1.5)
    assert_same(propagate((x * scale).astype(dtype), y, idx, k=10, graph="gaussian", sigma=1.5 * scale), ref, 5e-4)


def test_gaussian_graph_does_not_depend_on_translation():
    x, y = raw_points(35)
    idx = np.arange(0, 240, 10)
    assert_same(propagate(x + 1e6, y, idx, k=10, graph="gaussian"), propagate(x, y, idx, k=10, graph="gaussian"), 5e-4)


def test_gaussian_graph_of_the_other_points_is_kept_beside_one_far_outlier():
    """The outlier is nobody's neighbour: the other points' labels are those found without it. Centred on the
    mean (moved 5e7 by the outlier at 1e10), float32 could no longer tell them apart."""
    x, y = raw_points(36)
    idx = np.arange(0, 240, 10)
    alone = propagate(x, y, idx, k=10, graph="gaussian", sigma=1.0)
    far = np.vstack([x, [1e10] + [0] * (x.shape[1] - 1)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the outlier's own warning
        res = propagate(far, np.r_[y, 0], idx, k=10, graph="gaussian", sigma=1.0)
        np.testing.assert_array_equal(res.pseudo_labels[:-1], alone.pseudo_labels)
        with pytest.raises(ValueError, match=r"most points lie within .* of their median, relative to the farthest "
                                             r"point: float32, .* cannot tell them apart"):
            propagate(np.vstack([x, [1e22] * x.shape[1]]), np.r_[y, 0], idx, k=10, graph="gaussian")
        many = np.vstack([x, np.zeros((300, x.shape[1])), [1e30] * x.shape[1]])  # most points at the median
        with pytest.raises(ValueError, match="cannot tell them apart"):
            propagate(many, np.r_[y, np.zeros(301, int)], idx, k=10, graph="gaussian")


def test_dot_graph_does_not_depend_on_row_norms():
    x, y = raw_points(39)
    idx = np.arange(0, 240, 10)
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    assert_same(propagate(x, y, idx, k=10), propagate(unit, y, idx, k=10))


@pytest.mark.parametrize("scale, dtype", SCALES)
def test_gtg_does_not_depend_on_scale(scale, dtype):
    x, y = raw_points(36)
    idx = np.arange(0, 240, 10)
    ref = gtg_pseudo_labels(x, y, idx, k=10, max_iter=20)
    assert_same(gtg_pseudo_labels((x * scale).astype(dtype), y, idx, k=10, max_iter=20), ref)


def test_zero_row_is_isolated_at_any_scale():
    x, y = raw_points(30)
    x[5] = 0
    for scale in [1.0, 1e30]:
        with pytest.warns(UserWarning, match="1 of the 216 unlabeled points have no edge of positive weight"):
            res = propagate((x * scale).astype(np.float32), y, np.arange(0, 240, 10), k=10)
        assert (res.scores[5] == 0).all() and res.weights[5] == 0 and np.isfinite(res.scores).all()


# --- degenerate settings are refused, naming the setting ---

BAD_COUNTS = [0, -1, 2.5, 3.0, True, "5", None]
BAD_POSITIVE = [0, -1.0, np.nan, np.inf, True, "1"]
BAD_ALPHA = [-0.1, 1, 1.5, np.nan, np.inf, True]
BAD_TOL = [-1e-9, np.nan, np.inf, True]


def bad_settings(**groups):
    return [(name, value) for name, values in groups.items() for value in values]


@pytest.mark.parametrize("name, value", bad_settings(k=BAD_COUNTS, max_iter=BAD_COUNTS, n_classes=BAD_COUNTS[:-1],
                                                     gamma=BAD_POSITIVE, sigma=BAD_POSITIVE, alpha=BAD_ALPHA))
def test_propagate_refuses_bad_setting(name, value):
    x, y = blobs(n=60)
    graph = "gaussian" if name == "sigma" else "dot"
    with pytest.raises(ValueError, match=f"^{name} must be"):
        propagate(x, y, np.array([0, 1, 2]), graph=graph, **{name: value})


@pytest.mark.parametrize("pseudo_labeler", [propagate, gtg_pseudo_labels])
def test_a_device_other_than_cpu_or_cuda_is_refused_by_name(pseudo_labeler):
    x, y = blobs()
    with pytest.raises(ValueError, match="features on device 'meta': propagation runs on 'cpu' or 'cuda'"):
        pseudo_labeler(x, y, [0, 1, 2], k=10, device="meta")


@pytest.mark.parametrize("pseudo_labeler", [propagate, gtg_pseudo_labels])
def test_a_cuda_device_torch_cannot_see_is_named(pseudo_labeler):
    x, y = blobs(n=60)
    device = f"cuda:{torch.cuda.device_count()}"  # one past the last
    with pytest.raises(ValueError, match=f"^device '{device}': torch sees {torch.cuda.device_count()} CUDA device.s. "
                                         r"here \(torch .*\); pass device=None .where the features are. or 'cpu'"):
        pseudo_labeler(x, y, np.array([0, 1, 2]), k=5, device=device)


def test_propagate_max_iter_zero_is_an_error_not_class_zero():
    x, y = blobs()
    with pytest.raises(ValueError, match="max_iter must be a positive integer, got 0"):
        propagate(x, y, np.arange(0, 240, 10), max_iter=0)


@pytest.mark.parametrize("name, value", bad_settings(k=BAD_COUNTS, max_iter=BAD_COUNTS, n_classes=BAD_COUNTS[:-1],
                                                     gamma=BAD_POSITIVE, tol=BAD_TOL))
def test_gtg_refuses_bad_setting(name, value):
    x, y = blobs(n=60)
    with pytest.raises(ValueError, match=f"^{name} must be"):
        gtg_pseudo_labels(x, y, np.array([0, 1, 2]), **{name: value})


@pytest.mark.parametrize("name, value", bad_settings(max_iter=BAD_COUNTS, tol=BAD_TOL))
def test_cg_refuses_bad_setting(name, value):
    with pytest.raises(ValueError, match=f"^{name} must be"):
        conjugate_gradient(lambda V: V, torch.ones(4, 1), **{name: value})


def test_graph_and_knn_choices_are_named():
    x, y = blobs(n=60)
    with pytest.raises(ValueError, match="graph must be 'dot' or 'gaussian'"):
        propagate(x, y, np.array([0, 1, 2]), graph="rbf")
    with pytest.raises(ValueError, match="knn must be"):
        gtg_pseudo_labels(x, y, np.array([0, 1, 2]), knn="hnsw")


def test_numpy_scalars_are_accepted():
    x, y = blobs(seed=20)
    idx = np.arange(0, 240, 10)
    ref = propagate(x, y, idx, k=10, max_iter=20, n_classes=3, gamma=3.0, alpha=0.9)
    res = propagate(x, y, idx, k=np.int64(10), max_iter=np.int32(20), n_classes=np.uint8(3), gamma=np.float32(3),
                    alpha=np.float64(0.9))
    np.testing.assert_array_equal(res.scores, ref.scores)
    _, n_iter, _ = conjugate_gradient(lambda V: 2 * V, torch.ones(3, 1), max_iter=np.int64(5), tol=np.float32(0))
    assert n_iter == 1


def test_classes_solved_in_blocks_give_the_one_block_result(monkeypatch):
    """When the scores and the whole solve do not fit in max_memory, the classes are solved in blocks: same result."""
    x, y = blobs(n=600, c=7, seed=11, spread=0.9)
    labeled = np.arange(600) < 70
    whole = propagate(x, y, labeled, k=10)
    graph_bytes = 24 * 600 * 10  # building the graph needs more, but not at this n x c: taken as 0 here
    monkeypatch.setattr("lpnb.diffusion._graph_memory", lambda *args: (0, graph_bytes))
    blocks = propagate(x, y, labeled, k=10, max_memory=graph_bytes + (4 * 600 * 7 + 3 * 4 * 600 * 2 + 1000) / 0.9)
    assert whole.class_blocks == 1 and blocks.class_blocks == 4  # 2 classes at a time: 2 + 2 + 2 + 1
    np.testing.assert_array_equal(blocks.pseudo_labels, whole.pseudo_labels)
    np.testing.assert_allclose(blocks.scores, whole.scores, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(blocks.weights, whole.weights, atol=1e-5)  # float32 sums of other widths
    assert blocks.n_iter == whole.n_iter and blocks.residual == pytest.approx(whole.residual, rel=1e-3)
    assert set(whole.timings) == {"order", "knn", "graph", "cg", "weights"}
    assert all(t >= 0 for t in whole.timings.values())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_propagate_on_a_gpu_gives_the_cpu_result():
    x, y = blobs(n=600, c=7, seed=11, spread=0.9)
    labeled = np.arange(600) < 70
    cpu = propagate(x, y, labeled, k=10)
    gpu = propagate(torch.from_numpy(x).cuda(), y, labeled, k=10)
    np.testing.assert_array_equal(gpu.pseudo_labels, cpu.pseudo_labels)
    np.testing.assert_allclose(gpu.scores, cpu.scores, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(gpu.weights, cpu.weights, atol=1e-4)


def test_the_memory_check_allows_for_the_knn_search_at_large_k():
    """At k = 200 the k-NN search peaks above the 40 n k of the graph's assembly (benchmarks/README.md)."""
    import lpnb.diffusion

    measured = {(200_000, 32, 50): 38.5, (20_000, 64, 200): 46.6}  # (n, d, k): whole-call peak in n k bytes
    for (n, d, k), peak in measured.items():
        build, _ = lpnb.diffusion._graph_memory(n, d, k, cuda=False, torch_search=False)
        assert peak * n * k <= build / 0.9 < 1.25 * peak * n * k  # covered (with the check's headroom), not far off


def test_a_solve_that_cannot_fit_is_refused_before_any_work(monkeypatch):
    x, y = blobs(n=200, c=3)
    monkeypatch.setattr("lpnb.diffusion.knn_search", lambda *a, **k: pytest.fail("searched the neighbours"))
    build = (40 * 200 * 10 + 4 * 200 * 8) / 0.9  # the graph is built (96 kB) before the solve (53.3 kB) is needed
    monkeypatch.setattr("lpnb.graph.faiss", None)  # a torch k-NN search: its block of similarities too
    with pytest.raises(MemoryError, match=r"^propagate needs about 274 kB: 5.33 kB for the scores of 200 points x 3 "
                       r"classes and a block of the solve and 48 kB for the graph \(274 kB while the graph is built\)"):
        propagate(x, y, np.arange(200) < 30, k=10, max_memory=build + 1000)
    monkeypatch.undo()
    monkeypatch.setattr("lpnb.diffusion.knn_search", lambda *a, **k: pytest.fail("searched the neighbours"))
    with pytest.raises(MemoryError, match=r"^propagate needs about 96 kB: 5.33 kB for the scores of 200 points x 3 "
                       r"classes and a block of the solve and 48 kB for the graph \(96 kB while the graph is built\), "
                       r"but max_memory is 95.9 kB: pass a larger max_memory"):
        propagate(x, y, np.arange(200) < 30, k=10, max_memory=build - 100)
    with pytest.raises(MemoryError, match="and 48 kB for the graph .*, but max_memory is 1 kB:"):
        propagate(x, y, np.arange(200) < 30, k=10, max_memory=1000)  # less than the graph alone: no negative size
    # the graph is built, but the scores and a block of the solve do not fit beside it
    with pytest.raises(MemoryError, match=r"^propagate needs about 1.83 MB: 1.78 MB for the scores of 200 points x "
                       r"2000 classes"), pytest.warns(UserWarning, match="have no labeled example"):
        propagate(x, np.where(np.arange(200) == 0, 1999, y), np.arange(200) < 30, k=10, max_memory=build + 1000)
    monkeypatch.setattr("lpnb.diffusion.available_memory", lambda device=None: 30_000)
    with pytest.raises(MemoryError, match=r"built\), but only 30 kB is available: free memory, pass max_memory"):
        propagate(x, y, np.arange(200) < 30, k=10)
    with pytest.raises(ValueError, match="max_memory must be"):
        propagate(x, y, np.arange(200) < 30, max_memory=-1)
    y[0] = 10**12  # a class id far beyond the others: the scores could not fit, said before any (n, c) array
    with pytest.raises(MemoryError, match="for the scores of 200 points x 1000000000001 classes"), \
            pytest.warns(UserWarning, match=r"classes \[3, 4, 5, 6, 7, 8, 9, 10, 11, 12\] and 999999999987 more"):
        propagate(x, y, np.arange(200) < 30, k=10)


def test_available_memory_is_a_positive_number_of_bytes():
    free = available_memory()
    assert isinstance(free, int) and 0 < free < 1 << 50


def test_available_memory_is_the_systems_memavailable_outside_a_container(monkeypatch, tmp_path):
    (tmp_path / "meminfo").write_text("MemTotal:       16000000 kB\nMemFree:          500000 kB\n"
                                      "MemAvailable:    3000000 kB\n")
    monkeypatch.setattr("lpnb.diffusion.MEMINFO", str(tmp_path / "meminfo"))
    monkeypatch.setattr("lpnb.diffusion.CGROUP", str(tmp_path / "no-cgroup"))
    assert available_memory() == 3_000_000 * 1024  # MemAvailable, not MemTotal or MemFree
    (tmp_path / "cgroup").mkdir()  # a container whose limit is "max": the system's figure
    (tmp_path / "cgroup" / "memory.max").write_text("max\n")
    monkeypatch.setattr("lpnb.diffusion.CGROUP", str(tmp_path / "cgroup"))
    assert available_memory() == 3_000_000 * 1024


@pytest.mark.skipif(__import__("lpnb.graph").graph.faiss is None, reason="the reordering uses faiss's k-means")
def test_reordering_the_points_for_locality_changes_nothing_but_the_speed(monkeypatch):
    """From REORDER_MIN points propagate works on the points sorted by k-means cluster, then puts everything back."""
    import lpnb.diffusion

    x, y = blobs(n=3000, c=20, d=16, seed=12, spread=0.8)
    x[-40:] = 0.01 * np.random.default_rng(0).normal(size=(40, 16))
    x[-40:, -1] = 1  # a group of unlabeled points about one direction: their neighbours are each other, no label
    x[:-40, -1] = 0  # reaches them
    labeled = np.arange(3000) < 200
    with pytest.warns(UserWarning, match="40 of the 2800 unlabeled points have edges but no pseudo-label: 40 in a"):
        plain = propagate(x, y, labeled, k=10)
    monkeypatch.setattr(lpnb.diffusion, "REORDER_MIN", 1000)
    orders = []
    def spy(points):
        orders.append(lpnb.graph.locality_order(points))
        return orders[-1]
    monkeypatch.setattr(lpnb.diffusion, "locality_order", spy)
    with pytest.warns(UserWarning, match="40 of the 2800 unlabeled points have edges but no pseudo-label: 40 in a"):
        reordered = propagate(x, y, labeled, k=10)
    assert len(orders) == 1 and (orders[0][0] != torch.arange(3000)).float().mean() > 0.9  # really shuffled
    np.testing.assert_array_equal(reordered.pseudo_labels, plain.pseudo_labels)
    np.testing.assert_allclose(reordered.scores, plain.scores, atol=1e-6)
    np.testing.assert_allclose(reordered.weights, plain.weights, atol=1e-5)
    np.testing.assert_array_equal(reordered.class_weights, plain.class_weights)
    np.testing.assert_array_equal(reordered.scored, np.arange(3000) < 2960)
    assert (reordered.pseudo_labels[labeled] == y[labeled]).all()


def test_sizes_in_messages_are_readable():
    assert [_size(b) for b in (-5, 950, 48_000, 12_345_678, 4.5e9)] == ["0 bytes", "950 bytes", "48 kB", "12.3 MB",
                                                                        "4.5 GB"]


def test_available_memory_counts_a_containers_file_cache_as_free(monkeypatch, tmp_path):
    (tmp_path / "memory.max").write_text(f"{2 << 30}\n")
    (tmp_path / "memory.current").write_text(f"{3 << 29}\n")  # 1.5 GiB used, of which 1 GiB inactive file cache
    (tmp_path / "memory.stat").write_text(f"anon {1 << 29}\nfile {1 << 30}\ninactive_file {1 << 30}\n")
    (tmp_path / "meminfo").write_text(f"MemAvailable: {8 << 20} kB\n")  # 8 GiB on the host: the container's is less
    monkeypatch.setattr("lpnb.diffusion.CGROUP", str(tmp_path))
    monkeypatch.setattr("lpnb.diffusion.MEMINFO", str(tmp_path / "meminfo"))
    assert available_memory() == (2 << 30) - (1 << 29)  # the limit less what cannot be reclaimed
    (tmp_path / "meminfo").write_text(f"MemAvailable: {1 << 20} kB\n")  # 1 GiB on the host: less than the container's
    assert available_memory() == 1 << 30


def test_available_memory_closes_its_files():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        available_memory()
        gc.collect()
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []


def test_available_memory_on_cuda_counts_what_pytorch_has_cached(monkeypatch):
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (1000, 8000))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: 500)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: 200)
    assert available_memory("cuda") == 1000 + 500 - 200


# --- labeled index arrays and masks of every kind ---

@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.uint16, np.int32, np.uint32,
                                   torch.uint8, torch.int8, torch.int16, torch.int32])
def test_index_arrays_of_any_integer_type(dtype):
    x, y = blobs()
    idx = np.arange(0, 120, 10)  # below 128: fits every type
    small = torch.from_numpy(idx).to(dtype) if isinstance(dtype, torch.dtype) else idx.astype(dtype)
    probs = np.random.default_rng(0).dirichlet(np.ones(3), 240)
    for f in [lambda m: propagate(x, y, m, k=10), lambda m: gtg_pseudo_labels(x, y, m, k=10),
              lambda m: network_pseudo_labels(probs, y, m)]:
        res, ref = f(small), f(idx)
        np.testing.assert_array_equal(res.scores, ref.scores)
        np.testing.assert_array_equal(res.weights, ref.weights)
        np.testing.assert_array_equal(res.pseudo_labels, ref.pseudo_labels)


def test_torch_uint8_and_bool_masks_are_masks():
    x, y = blobs()
    mask = np.arange(240) % 10 == 0
    ref = propagate(x, y, mask, k=10)
    for m in [torch.from_numpy(mask), torch.from_numpy(mask).to(torch.uint8)]:
        res = propagate(x, y, m, k=10)
        np.testing.assert_array_equal(res.scores, ref.scores)
        assert (res.weights == 1).sum() == mask.sum()


@pytest.mark.parametrize("dtype", [np.int64, np.uint8])
def test_integer_zero_one_array_is_refused_as_ambiguous(dtype):
    x, y = blobs()
    mask = (np.arange(240) % 10 == 0).astype(dtype)
    with pytest.raises(ValueError, match="looks like a 0/1 mask.*pass a boolean mask"):
        propagate(x, y, mask, k=10)
    with pytest.raises(ValueError, match="looks like a 0/1 mask"):
        network_pseudo_labels(np.full((240, 3), 1 / 3), y, mask)


# --- features, labels and labeled in the containers they come in ---

def negative_strides(a):
    """The same values as a, in a view with negative strides."""
    return a[::-1].copy()[::-1]


def read_only(a):
    a = a.copy()
    a.flags.writeable = False
    return a


def pandas(a):
    pd = pytest.importorskip("pandas")
    return pd.DataFrame(a) if a.ndim == 2 else pd.Series(a)


def tensor(a):
    """A torch tensor; floats require grad, as descriptors straight out of a network do."""
    t = torch.from_numpy(a.copy())
    return t.requires_grad_() if t.is_floating_point() else t


@pytest.mark.parametrize("wrap", [negative_strides, read_only, pandas, tensor])
def test_inputs_in_common_containers(wrap):
    x, y = blobs()
    idx = np.arange(0, 240, 10)
    mask = np.arange(240) % 10 == 0
    probs = np.random.default_rng(0).dirichlet(np.ones(3), 240)
    for f in [lambda x, y, m: propagate(x, y, m, k=10), lambda x, y, m: gtg_pseudo_labels(x, y, m, k=10)]:
        ref = f(x, y, idx)
        for labeled in [idx, mask]:
            np.testing.assert_array_equal(f(wrap(x), wrap(y), wrap(labeled)).scores, ref.scores)
    ref = network_pseudo_labels(probs, y, idx)
    np.testing.assert_array_equal(network_pseudo_labels(wrap(probs), wrap(y), wrap(idx)).scores, ref.scores)


def test_object_and_complex_inputs_are_refused_clearly():
    x, y = blobs(n=30)
    with pytest.raises(ValueError, match="features must be real numbers .* got dtype object"):
        propagate(x.astype(object), y, [0, 1, 2])
    with pytest.raises(ValueError, match="features must be real numbers .* got dtype complex"):
        propagate(x.astype(complex), y, [0, 1, 2])
    with pytest.raises(ValueError, match="labels must be integers, got dtype object"):
        propagate(x, [0, None] * 15, [0, 1, 2])


def test_pandas_nullable_columns_are_read_and_sparse_matrices_refused_clearly():
    pd = pytest.importorskip("pandas")
    x, y = blobs(n=30)
    ref = propagate(x.astype(np.float64), y, [0, 1, 2], k=5)
    frame = pd.DataFrame(x.astype(np.float64)).astype("Float64")  # np.asarray gives an object array
    np.testing.assert_array_equal(propagate(frame, y, [0, 1, 2], k=5).scores, ref.scores)
    frame.iloc[4, 1] = pd.NA
    with pytest.raises(ValueError, match="features contain NaN or inf"):
        propagate(frame, y, [0, 1, 2], k=5)
    text = pd.DataFrame(x.astype(str))  # numbers as text: refused, as in a numpy array
    with pytest.raises(ValueError, match="features must be real numbers .* got dtype object"):
        propagate(text, y, [0, 1, 2], k=5)
    with pytest.raises(ValueError, match=r"features is a scipy.sparse matrix: pass a dense array \(features.toarray"):
        propagate(scipy.sparse.csr_matrix(x), y, [0, 1, 2])
    for sparse in (torch.tensor(x).to_sparse(), torch.tensor(x).to_sparse_csr()):
        with pytest.raises(ValueError, match=r"features is a torch sparse tensor \(torch.sparse_\w+\): pass a dense "
                                             r"one \(features.to_dense\(\)\)"):
            propagate(sparse, y, [0, 1, 2])


def test_one_column_features_on_the_dot_graph_are_warned_about():
    """Unit descriptors of one column are +1 or -1: the dot graph cannot tell apart the points of one sign."""
    x = np.r_[np.linspace(1, 2, 10), np.linspace(5, 6, 10)][:, None]
    y, labeled = np.repeat([0, 1], 10), [0, 1, 10, 11]
    for fit in (lambda: propagate(x, y, labeled, k=5), lambda: affinity_graph(x, 5)):
        with pytest.warns(UserWarning, match="the features have one column: .* use graph='gaussian'"):
            fit()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert (propagate(x, y, labeled, k=5, graph="gaussian").pseudo_labels == y).all()
        propagate(np.c_[x, x ** 2], y, labeled, k=5)  # two columns


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int16, np.uint16, np.int32, np.int64, bool])
def test_integer_and_bool_features_are_converted(dtype):
    x, y = blobs()
    xi = np.round(np.abs(x) * 100) if dtype is not bool else x > 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # bool rows of all False are isolated points, in both calls alike
        res = propagate(xi.astype(dtype), y, np.arange(0, 240, 10), k=10)
        ref = propagate(xi.astype(np.float32), y, np.arange(0, 240, 10), k=10)
    np.testing.assert_allclose(res.scores, ref.scores, atol=1e-6)
    np.testing.assert_array_equal(res.pseudo_labels, ref.pseudo_labels)


def test_big_endian_and_long_double_features_give_the_native_result():
    x, y = blobs()
    ref = propagate(x, y, np.arange(0, 240, 10), k=10)
    for dtype in [">f4", ">f8", np.longdouble]:
        res = propagate(x.astype(dtype), y, np.arange(0, 240, 10), k=10)
        np.testing.assert_allclose(res.scores, ref.scores, atol=1e-6)
        np.testing.assert_array_equal(res.pseudo_labels, ref.pseudo_labels)


def test_float16_features_give_the_float32_result_of_the_same_values():
    x, y = blobs()
    h = x.astype(np.float16)
    res = propagate(h, y, np.arange(0, 240, 10), k=10)
    np.testing.assert_array_equal(res.scores, propagate(h.astype(np.float32), y, np.arange(0, 240, 10), k=10).scores)


def test_class_ids_not_0_to_c_minus_1_give_a_short_warning_with_the_fix():
    x, y = blobs(n=60)
    with pytest.warns(UserWarning) as caught:
        propagate(x, np.array([3, 7, 50])[y], np.arange(0, 60, 5), k=5)
    message = str(caught[0].message)  # the first 10 of the 48 empty classes, then a count
    assert message.startswith("classes [0, 1, 2, 4, 5, 6, 8, 9, 10, 11] and 38 more have no labeled example")
    assert len(message) < 300 and "np.unique(labels, return_inverse=True)" in message and "LabelPropagation" in message


def test_warnings_point_at_the_callers_line():
    x, y = blobs(n=12, c=2)
    for call in [lambda: propagate(x, y, [0, 2], n_classes=3, k=3), lambda: propagate(x, y, [0, 1]),
                 lambda: gtg_pseudo_labels(x, y, [0, 1])]:
        with pytest.warns(UserWarning) as caught:
            call()
        assert len(caught) == len({str(w.message) for w in caught}) >= 1  # each once
        assert {w.filename for w in caught} == {__file__}


def test_gtg_warns_when_it_stops_far_from_converged():
    x, y, idx, *_ = three_points(theta_deg=5)  # u moves from (1/2, 1/2) most of the way to a in one step
    with pytest.warns(UserWarning, match=r"graph transduction stopped at max_iter=1 with a strategy still changing by "
                                         r"0\.9\d* in L1 per iteration .* raise max_iter"):
        res = gtg_pseudo_labels(x, y, idx, k=2, gamma=3.0, max_iter=1)
    assert res.residual > 0.5
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert gtg_pseudo_labels(x, y, idx, k=2, gamma=3.0, max_iter=3).residual < 0.5


@pytest.mark.parametrize("n_classes", [None, 3])
def test_gtg_with_one_class_labeled_pseudo_labels_every_point_a_label_reaches(n_classes):
    """Every player starts at the one class labeled, a fixed point: the game stops at once, yet its strategy is that
    of every player a label reaches, as propagate gives."""
    x, _ = blobs(n=60, c=3, d=4, seed=3, spread=0.2)
    y = np.full(60, -1)
    y[:3] = 0
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "classes .1, 2. have no labeled example")
        res = gtg_pseudo_labels(x, y, y >= 0, n_classes=n_classes, k=3)
        ref = propagate(x, y, y >= 0, n_classes=n_classes, k=3)
    assert res.n_iter == 1 and ref.scored.sum() > 30
    np.testing.assert_array_equal(res.scored, ref.scored)
    assert (res.pseudo_labels == 0).all() and (res.weights[res.scored] == 1).all()


def test_gtg_stopped_by_tol_says_so():
    t = np.linspace(0, 1.2, 200)  # a chain, as above, with a tol that stops the game after one iteration
    x, y = np.c_[np.cos(t), np.sin(t)].astype(np.float32), np.full(200, -1)
    y[:2] = [0, 2]
    with pytest.warns(UserWarning) as caught:
        res = gtg_pseudo_labels(x, y, np.array([0, 1]), n_classes=3, k=2, max_iter=1000, tol=0.5)
    assert res.n_iter == 1 and not res.scored[3:].any()
    assert ("197 farther from every label than the 1 iterations reach (it stopped as no strategy changed by more "
            "than tol=0.5: lower tol;") in str(caught[-1].message)


@pytest.mark.parametrize("pseudo_labeler", [propagate, gtg_pseudo_labels])
def test_labeled_points_without_edges_are_warned_about(pseudo_labeler):
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], 40)
    x = rng.normal(size=(120, 5)) + 4 * np.eye(5)[y]
    labeled = np.array([0, 1, 40, 41, 80])
    x[[40, 41, 80]] = 0  # features that failed: no inner product is positive
    with pytest.warns(UserWarning) as caught:
        pseudo_labeler(x, np.where(np.isin(np.arange(120), labeled), y, -1), labeled, k=10)
    message = [str(w.message) for w in caught if "labeled points" in str(w.message)]
    assert len(message) == 1 and message[0].startswith("3 of the 5 labeled points (classes [1, 2]) have no edge of "
                                                        "positive weight")
    assert "their labels reach no other point; classes [1, 2] have no other labeled example, so no point gets them" \
        in message[0]
