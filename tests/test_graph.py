"""k-NN search and affinity graph (lpnb.graph) against dense numpy computations."""
import numpy as np
import pytest
import torch

from lpnb import graph

needs_faiss = pytest.mark.skipif(graph.faiss is None, reason="faiss not installed")
BACKENDS = ["torch", pytest.param("faiss", marks=needs_faiss)]


def unit_points(n=300, d=16, seed=0):
    x = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def dense_knn(x, k, metric):
    """Brute force in float64 with numpy: (values, indices), self excluded, best first."""
    x = x.astype(np.float64)
    if metric == "dot":
        s = -(x @ x.T)
    else:
        s = ((x[:, None] - x[None]) ** 2).sum(-1)
    np.fill_diagonal(s, np.inf)
    idx = np.argsort(s, axis=1, kind="stable")[:, :k]
    vals = np.take_along_axis(s, idx, 1)
    return (-vals if metric == "dot" else vals), idx


def dense_affinity(x, k, gamma):
    """W = A + A^T of eq. (9), dense."""
    s, idx = dense_knn(x, k, "dot")
    A = np.zeros((len(x), len(x)))
    np.put_along_axis(A, idx, np.maximum(s, 0) ** gamma, 1)
    return A + A.T


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("metric", ["dot", "l2"])
def test_knn_matches_brute_force(backend, metric):
    x = unit_points() * (1 if metric == "dot" else 3)
    D, I = graph.knn(x, 10, backend=backend, metric=metric)
    D_ref, I_ref = dense_knn(x, 10, metric)
    assert I.shape == (300, 10) and D.dtype == torch.float32 and I.dtype == torch.int64
    np.testing.assert_array_equal(I.numpy(), I_ref)  # continuous random data: no ties
    np.testing.assert_allclose(D.numpy(), D_ref, atol=2e-5)


@needs_faiss
@pytest.mark.parametrize("metric", ["dot", "l2"])
def test_faiss_and_torch_give_the_same_graph(metric):
    x = unit_points(400, 8, seed=1)
    kind, sigma = ("dot", None) if metric == "dot" else ("gaussian", 0.5)
    W_f = graph.to_scipy(graph.affinity_graph(x, 12, kind=kind, sigma=sigma, backend="faiss"))
    W_t = graph.to_scipy(graph.affinity_graph(x, 12, kind=kind, sigma=sigma, backend="torch"))
    assert (W_f != 0).sum() == (W_t != 0).sum()
    np.testing.assert_allclose(W_f.toarray(), W_t.toarray(), atol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_duplicates_self_removed_by_index(backend):
    # every point three times: for row i the two other copies tie with i itself and may rank first
    base = unit_points(50, 6, seed=2)
    x = np.concatenate([base, base, base])
    D, I = graph.knn(x, 4, backend=backend)
    rows = np.arange(150)
    assert not (I.numpy() == rows[:, None]).any()
    copies = np.sort(I.numpy()[:, :2], axis=1)
    expected = np.sort(np.stack([(rows + 50) % 150, (rows + 100) % 150], 1), axis=1)
    np.testing.assert_array_equal(copies, expected)
    np.testing.assert_allclose(D.numpy()[:, :2], 1.0, atol=1e-5)
    D, I = graph.knn(3 * x, 4, backend=backend, metric="l2")  # |a|^2 - 2 a.b + |b|^2 rounds below 0 for copies
    assert (D >= 0).all() and (D.numpy()[:, :2] < 1e-3).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_all_identical_points(backend):
    # all 20 similarities tie: self may fall out of the k+1 results; still k others, never self
    x = np.ones((20, 4), np.float32) / 2
    D, I = graph.knn(x, 5, backend=backend)
    assert I.shape == (20, 5)
    assert not (I.numpy() == np.arange(20)[:, None]).any()
    assert all(len(set(row)) == 5 for row in I.numpy())
    W = graph.to_scipy(graph.normalize(graph.affinity_graph(x, 5, backend=backend)))
    assert np.isfinite(W.data).all()


def test_k_too_large_is_clamped_with_warning():
    x = unit_points(8, 3)
    with pytest.warns(UserWarning, match="k=20"):
        D, I = graph.knn(x, 20)
    assert I.shape == (8, 7)
    assert all(sorted(row) == sorted(set(range(8)) - {i}) for i, row in enumerate(I.tolist()))


def test_knn_queries():
    x, q = unit_points(100, 5, seed=3), unit_points(7, 5, seed=4)
    D, I = graph.knn(x, 3, queries=q)
    ref = np.argsort(-(q @ x.T), axis=1)[:, :3]
    np.testing.assert_array_equal(I.numpy(), ref)
    with pytest.raises(ValueError, match="dimensions"):
        graph.knn(x, 3, queries=q[:, :4])
    for backend in ["torch"] + ["faiss"] * (graph.faiss is not None):  # no queries: no neighbours
        D, I = graph.knn(x, 3, queries=q[:0], backend=backend)
        assert D.shape == I.shape == (0, 3) and D.dtype == torch.float32 and I.dtype == torch.int64


@needs_faiss
def test_approx_recall():
    # clustered data, as descriptors are: the IVF index must find nearly all exact neighbours
    rng = np.random.default_rng(5)
    centers = rng.normal(size=(20, 16))
    x = (centers[rng.integers(0, 20, 4000)] + 0.3 * rng.normal(size=(4000, 16))).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    _, I = graph.knn(x, 10, approx=True)
    _, I_ref = graph.knn(x, 10)
    recall = np.mean([len(np.intersect1d(a, b)) / 10 for a, b in zip(I.numpy(), I_ref.numpy())])
    assert recall > 0.9
    assert not (I.numpy() == np.arange(4000)[:, None]).any()


@needs_faiss
def test_approx_on_too_few_points_for_two_lists_is_exact_and_quiet(capfd):
    x = unit_points(30, 4)  # fewer than 2 x 39 points: one IVF list, which would scan them all anyway
    D, I = graph.knn(x, 5, approx=True)
    np.testing.assert_array_equal(I.numpy(), dense_knn(x, 5, "dot")[1])
    assert "WARNING" not in "".join(capfd.readouterr())  # faiss's "clustering 30 points to 1 centroids"


def test_approx_without_faiss_warns_and_is_exact(monkeypatch):
    monkeypatch.setattr(graph, "faiss", None)
    x = unit_points(60, 4)
    with pytest.warns(UserWarning, match="approx=True needs faiss"):
        D, I = graph.knn(x, 5, approx=True)
    np.testing.assert_array_equal(I.numpy(), dense_knn(x, 5, "dot")[1])
    with pytest.raises(ValueError, match="faiss is not installed"):
        graph.knn(x, 5, backend="faiss")


@needs_faiss
def test_approx_with_the_torch_search_asked_for_says_why_it_is_exact():
    x = unit_points(60, 4)
    with pytest.warns(UserWarning, match="approx=True needs backend 'faiss' or 'auto': using an exact torch search"):
        D, I = graph.knn(x, 5, approx=True, backend="torch")
    np.testing.assert_array_equal(I.numpy(), dense_knn(x, 5, "dot")[1])


@needs_faiss
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_approx_on_cuda_points_with_a_cpu_only_faiss_names_faiss_gpu(monkeypatch):
    monkeypatch.setattr(graph, "_faiss_gpu", lambda: False)
    with pytest.warns(UserWarning, match="approx=True on CUDA points needs a faiss with GPU support"):
        graph.knn(unit_points(60, 4).cuda(), 5, approx=True)


def test_affinity_graph_matches_dense():
    x = unit_points(200, 8, seed=6)
    x[:20] *= -1  # some negative similarities: [.]_+ must clip them
    W = graph.to_scipy(graph.affinity_graph(x, 15, gamma=3.0)).toarray()
    np.testing.assert_allclose(W, dense_affinity(x, 15, 3.0), atol=1e-6)
    assert np.allclose(W, W.T) and (np.diag(W) == 0).all() and (W >= 0).all()


def test_gaussian_graph_matches_dense():
    x = np.random.default_rng(7).normal(size=(150, 2)).astype(np.float32)
    d2, idx = dense_knn(x, 6, "l2")
    sigma = np.sqrt(d2).mean()
    A = np.zeros((150, 150))
    np.put_along_axis(A, idx, np.exp(-d2 / sigma**2), 1)
    W = graph.to_scipy(graph.affinity_graph(x, 6, kind="gaussian")).toarray()
    # float32 distances from |q|^2 - 2 q.x + |x|^2 round differently from one CPU to the next
    # (1.1e-5 off on a value of 1.6 on the device machine's CPU): a relative tolerance
    np.testing.assert_allclose(W, A + A.T, rtol=1e-4, atol=1e-5)
    W2 = graph.to_scipy(graph.affinity_graph(x, 6, kind="gaussian", sigma=2.0)).toarray()
    A2 = np.zeros((150, 150))
    np.put_along_axis(A2, idx, np.exp(-d2 / 4.0), 1)
    np.testing.assert_allclose(W2, A2 + A2.T, rtol=1e-4, atol=1e-5)


def test_normalize_matches_dense_with_isolated_point():
    x = unit_points(100, 5, seed=8)
    x[0] = -x[1:].mean(0) / np.linalg.norm(x[1:].mean(0))  # opposite to the others...
    x[1:] = 0.2 * x[1:] - x[0]  # ...which cluster around -x[0]: all its similarities are < 0
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    W = graph.affinity_graph(x, 5)
    Wd = graph.to_scipy(W).toarray()
    assert Wd[0].sum() == 0  # isolated: zero degree
    deg = Wd.sum(1)
    deg[deg == 0] = 1
    ref = Wd / np.sqrt(deg)[:, None] / np.sqrt(deg)[None, :]
    Wn = graph.to_scipy(graph.normalize(W)).toarray()
    np.testing.assert_allclose(Wn, ref, atol=1e-6)
    assert np.isfinite(Wn).all()


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_features_rejected(bad):
    x = unit_points(20, 3)
    x[4, 1] = bad
    with pytest.raises(ValueError, match="NaN or inf"):
        graph.knn(x, 3)


def test_bad_shapes_and_arguments():
    with pytest.raises(ValueError, match="2-D"):
        graph.knn(np.ones(10), 3)
    with pytest.raises(ValueError, match="need at least 2 samples to find a neighbour, got 1 sample$"):
        graph.knn(np.ones((1, 3)), 1)
    with pytest.raises(ValueError, match="need at least 2 samples to find a neighbour, got 0 samples$"):
        graph.knn(np.ones((0, 3)), 1)
    with pytest.raises(ValueError, match="need at least 1 sample to find a neighbour, got 0 samples$"):
        graph.knn(np.ones((0, 3)), 1, queries=np.ones((2, 3)))
    with pytest.raises(ValueError, match="k must be"):
        graph.knn(unit_points(10, 3), 0)
    with pytest.raises(ValueError, match="metric"):
        graph.knn(unit_points(10, 3), 2, metric="cosine")
    with pytest.raises(ValueError, match="kind"):
        graph.affinity_graph(unit_points(10, 3), 2, kind="rbf")
    with pytest.raises(ValueError, match="gamma"):
        graph.affinity_graph(unit_points(10, 3), 2, gamma=0)
    with pytest.raises(ValueError, match="sigma"):
        graph.affinity_graph(unit_points(10, 3), 2, kind="gaussian", sigma=0.0)


def test_torch_assembly_matches_scipy():
    # the assembly CUDA features get (W = A + A^T in torch), run here on the CPU against the scipy one
    x = torch.from_numpy(unit_points(300, 8, seed=4))
    S, I = graph.knn(x, 10, backend="torch")
    W = graph._symmetrize(I, S.clamp_min(0) ** 3.0)
    expected = graph.affinity_graph(x, 10, gamma=3.0, backend="torch")
    assert (graph.to_scipy(W) != graph.to_scipy(W).T).nnz == 0
    np.testing.assert_allclose(graph.to_scipy(W).toarray(), graph.to_scipy(expected).toarray(), rtol=1e-6)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_graph_matches_cpu():
    x = torch.from_numpy(unit_points(500, 16, seed=9))
    for backend in ["torch", "auto"]:
        W_gpu = graph.normalize(graph.affinity_graph(x.cuda(), 10, backend=backend))
        assert W_gpu.is_cuda
        W_cpu = graph.normalize(graph.affinity_graph(x, 10, backend="torch"))
        np.testing.assert_allclose(graph.to_scipy(W_gpu).toarray(), graph.to_scipy(W_cpu).toarray(), atol=1e-5)


def test_normalize_a_block_of_rows_at_a_time_gives_the_whole_result():
    W = graph.affinity_graph(unit_points(300, 6, seed=3), 7)
    whole = graph.normalize(W)
    blocks = graph.normalize(W, rows=16)  # blocks that end inside rows' runs of entries of various lengths
    np.testing.assert_array_equal(blocks.values().numpy(), whole.values().numpy())
    # new values only: the indices are W's own, not a copy
    assert blocks.col_indices().data_ptr() == W.col_indices().data_ptr()
    Wd = graph.to_scipy(W).toarray()
    d = 1 / np.sqrt(Wd.sum(1))
    np.testing.assert_allclose(graph.to_scipy(blocks).toarray(), d[:, None] * Wd * d[None, :], rtol=1e-5)


def test_normalize_explicit_zero_row():
    # a stored zero in an otherwise empty row: degree 0 must be treated as 1, not give 0 * inf
    W = graph._csr(torch.tensor([0, 1, 2, 3]), torch.tensor([1, 2, 1]), torch.tensor([0.0, 2.0, 2.0]), (3, 3))
    Wn = graph.to_scipy(graph.normalize(W)).toarray()
    np.testing.assert_allclose(Wn, [[0, 0, 0], [0, 0, 1], [0, 1, 0]])


# --- the graph does not depend on the overall scale of the features ---

SCALES = [(1e-30, np.float32), (1e-7, np.float32), (1e7, np.float32), (1e30, np.float32), (1e200, np.float64)]


@pytest.mark.parametrize("scale, dtype", SCALES)
@pytest.mark.parametrize("kind, sigma", [("dot", None), ("gaussian", None), ("gaussian", 0.7)])
def test_affinity_graph_does_not_depend_on_scale(kind, sigma, scale, dtype):
    # rows of different norms; their 8th and 9th neighbours are apart (relative gap > 1.5e-5, cosine
    # and Euclidean), so float32 rounding of the scaled copy cannot change which edges exist
    x = unit_points(200, 6, seed=10).astype(np.float64) * np.random.default_rng(11).uniform(0.5, 2.0, (200, 1))
    W = graph.to_scipy(graph.affinity_graph(x, 8, kind=kind, sigma=sigma)).toarray()
    scaled_sigma = None if sigma is None else sigma * scale
    scaled = graph.affinity_graph((x * scale).astype(dtype), 8, kind=kind, sigma=scaled_sigma)
    np.testing.assert_allclose(graph.to_scipy(scaled).toarray(), W, atol=1e-5)
    assert W.sum() > 100  # the reference is a real graph, not an empty one


def test_dot_graph_is_the_cosine_graph_and_a_zero_row_is_isolated():
    x = unit_points(100, 5, seed=12) * np.arange(1, 101, dtype=np.float32)[:, None]  # norms 1 to 100
    x[7] = 0
    W = graph.to_scipy(graph.affinity_graph(x, 6)).toarray()
    u = unit_points(100, 5, seed=12)
    u[7] = 0
    np.testing.assert_allclose(W, graph.to_scipy(graph.affinity_graph(u, 6)).toarray(), atol=1e-6)
    assert (W[7] == 0).all() and (W[:, 7] == 0).all()


@pytest.mark.parametrize("top", [1e-20, 1e20])
def test_knn_refuses_magnitudes_float32_cannot_hold(top):
    # inner products of 1e20 overflow float32 (faiss then returns index -1), of 1e-20 underflow
    with pytest.raises(ValueError, match="multiply them by a constant"):
        graph.knn(unit_points(20, 3) * np.float32(top), 3)


def test_float64_beyond_float32_range_is_named():
    with pytest.raises(ValueError, match="exceed float32's range"):
        graph.knn(unit_points(20, 3).astype(np.float64) * 1e200, 3)
    with pytest.raises(ValueError, match=r"^features underflow float32 \(largest \|value\| 9.68e-51\): multiply them"):
        graph.knn(unit_points(20, 3).astype(np.float64) * 1e-50, 3)  # all 0 in float32: not an all-zero input


def test_affinity_graph_refuses_a_sigma_the_dot_graph_has_not():
    with pytest.raises(ValueError, match="sigma is the bandwidth of kind='gaussian'; kind='dot' has none"):
        graph.affinity_graph(unit_points(10, 3), 2, sigma=0.5)


# --- degenerate settings are refused, naming the setting ---

BAD_COUNTS = [0, -1, 2.5, 3.0, True, "5", None]
BAD_POSITIVE = [0, -1.0, np.nan, np.inf, True, "1"]


@pytest.mark.parametrize("value", BAD_COUNTS)
def test_knn_refuses_bad_k(value):
    with pytest.raises(ValueError, match="^k must be a positive integer"):
        graph.knn(unit_points(10, 3), value)
    with pytest.raises(ValueError, match="^k must be a positive integer"):
        graph.affinity_graph(unit_points(10, 3), value)


@pytest.mark.parametrize("value", BAD_COUNTS[:-1])  # None: the default chunk size
def test_knn_refuses_bad_chunk_size(value):
    with pytest.raises(ValueError, match="^chunk_size must be a positive integer or None"):
        graph.knn(unit_points(10, 3), 2, backend="torch", chunk_size=value)


@pytest.mark.parametrize("name", ["gamma", "sigma"])
@pytest.mark.parametrize("value", BAD_POSITIVE)
def test_affinity_graph_refuses_bad_gamma_and_sigma(name, value):
    with pytest.raises(ValueError, match=f"^{name} must be a finite number > 0"):
        graph.affinity_graph(unit_points(10, 3), 2, kind="gaussian", **{name: value})


def test_numpy_integers_are_counts():
    x = unit_points(50, 4, seed=13)
    D, I = graph.knn(x, np.int64(5), backend="torch", chunk_size=np.int32(7))
    np.testing.assert_array_equal(I.numpy(), graph.knn(x, 5, backend="torch")[1].numpy())


def test_normalize_refuses_what_is_not_an_affinity_matrix():
    W = graph.affinity_graph(unit_points(20, 3), 3)
    with pytest.raises(ValueError, match="square torch sparse CSR"):
        graph.normalize(W.to_dense())
    with pytest.raises(ValueError, match="square torch sparse CSR"):
        graph.normalize(graph._csr(torch.tensor([0, 1, 2]), torch.tensor([1, 2]), torch.tensor([1.0, 1.0]), (2, 3)))
    for bad in [-1.0, np.nan]:
        V = graph._csr(W.crow_indices(), W.col_indices(), W.values().clone(), W.shape)
        V.values()[0] = bad
        with pytest.raises(ValueError, match="finite, non-negative"):
            graph.normalize(V)


@needs_faiss
def test_locality_order_puts_each_cluster_together():
    rng = np.random.default_rng(3)
    centers = rng.normal(size=(4, 16))
    truth = rng.integers(0, 4, 4000)
    x = torch.from_numpy((centers[truth] + 0.05 * rng.normal(size=(4000, 16))).astype(np.float32))
    order, cluster = graph.locality_order(x)
    assert sorted(order.tolist()) == list(range(4000))  # a permutation
    assert (cluster.diff() >= 0).all()  # the clusters of the points in that order, sorted
    runs = (np.diff(truth[order.numpy()]) != 0).sum()
    assert runs <= len(np.unique(cluster)) + 3  # each true blob is a few contiguous runs, not scattered


def test_csr_index_dtype_holds_the_row_pointer():
    # the row pointer ends at nnz = n k: int32 only while that fits, however small n is
    assert graph._index_dtype(2**31 - 1) == torch.int32
    assert graph._index_dtype(2**31) == torch.int64
    assert graph._index_dtype(43_000_000 * 50) == torch.int64  # n < 2^31 but n k is not


def test_graph_assembly_asks_for_the_index_dtype_of_n_k_entries(monkeypatch):
    x = unit_points(200, 8, seed=6)
    W32 = graph.to_scipy(graph.affinity_graph(x, 15)).toarray()
    asked = []
    monkeypatch.setattr(graph, "_index_dtype", lambda nnz: asked.append(nnz) or torch.int64)
    W = graph.affinity_graph(x, 15)
    assert asked == [200 * 15]  # the int64 path: the same graph (scipy may then store it in int32)
    np.testing.assert_array_equal(graph.to_scipy(W).toarray(), W32)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_features_are_normalised_in_float32(dtype):
    x = torch.from_numpy(unit_points(100, 8, seed=2) * 3).to(dtype)
    for kind in ["dot", "gaussian"]:
        W = graph.affinity_graph(x, 10, kind=kind)
        W32 = graph.affinity_graph(x.float(), 10, kind=kind)
        np.testing.assert_array_equal(graph.to_scipy(W).toarray(), graph.to_scipy(W32).toarray())


@pytest.mark.parametrize("backend", BACKENDS)
def test_knn_takes_what_np_asarray_takes(backend):
    x = unit_points(60, 4, seed=3)
    ref = graph.knn(x, 5, backend=backend)[1].numpy()
    ro = x.copy()
    ro.flags.writeable = False
    flipped = x[::-1].copy()[::-1]  # the same values, negative strides
    grad = torch.from_numpy(x).requires_grad_()
    for features in [ro, flipped, x.tolist(), grad]:
        np.testing.assert_array_equal(graph.knn(features, 5, backend=backend)[1].numpy(), ref)
    pd = pytest.importorskip("pandas")
    np.testing.assert_array_equal(graph.knn(pd.DataFrame(x), 5, backend=backend)[1].numpy(), ref)


def test_k_too_large_warning_points_at_the_callers_line():
    x = unit_points(6, 3)
    for call in [lambda: graph.knn(x, 10), lambda: graph.affinity_graph(x, 10)]:
        with pytest.warns(UserWarning, match="k=10") as caught:
            call()
        assert [w.filename for w in caught] == [__file__]
