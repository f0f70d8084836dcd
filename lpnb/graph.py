"""Nearest-neighbour affinity graph of Iscen et al. (CVPR 2019), section 4, eq. (9).

    knn(features, k)            k nearest neighbours of every point, self excluded
    affinity_graph(features, k) W = A + A^T with a_ij = [v_i . v_j]_+^gamma  (eq. 9)
    normalize(W)                D^-1/2 W D^-1/2, the matrix of eq. (10)

W is a torch sparse CSR tensor on the device of the features, so that the conjugate
gradient of `lpnb.diffusion` runs on CPU and GPU alike. The k-NN search uses faiss when it
is importable (a GPU index for CUDA tensors when faiss has GPU support), else chunked
matmul + top-k in torch. The search is in float32; `affinity_graph` first brings the points
to a unit scale in their own precision (`_rescale`), so that W does not depend on the
overall magnitude of the features.
"""
import functools
import math
import numbers
import os
import sys
import warnings

import numpy as np
import scipy.sparse
import torch
import torch.nn.functional as F

try:
    import faiss
except ImportError:  # faiss is optional: the torch backend covers every case but approx=True
    faiss = None


_RULES = {  # rule: (type, test, what the message asks for)
    "count": (numbers.Integral, lambda v: v >= 1, "a positive integer"),
    "seed": (numbers.Integral, lambda v: v >= 0, "an integer >= 0"),
    "positive": (numbers.Real, lambda v: math.isfinite(v) and v > 0, "a finite number > 0"),
    "nonnegative": (numbers.Real, lambda v: math.isfinite(v) and v >= 0, "a finite number >= 0"),
    "fraction": (numbers.Real, lambda v: math.isfinite(v) and 0 <= v < 1, "a finite number in [0, 1)"),
}


def visible_device(device, remedy):
    """torch.device(device), or a ValueError for a CUDA device that torch cannot see: it says what torch sees and
    `remedy` (what to pass instead)."""
    try:
        where = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device {device!r} is not a torch device: use 'cpu', 'cuda' or 'cuda:N'") from None
    if where.type == "cuda" and (where.index or 0) >= torch.cuda.device_count():
        raise ValueError(f"device {device!r}: torch sees {torch.cuda.device_count()} CUDA device(s) here "
                         f"(torch {torch.__version__}); {remedy}")
    return where


def _to_device(x, device):
    """The tensor x on `device` (None: where it is)."""
    return x if device is None else x.to(visible_device(device, "pass device=None (where the features are) or 'cpu'"))


def _check_param(name, value, rule, *, optional=False):
    """The setting `name` as an int ("count", "seed") or a float (the other rules of _RULES), or a
    ValueError that names it and says what it must be. bool is refused, numpy scalars are
    accepted; optional=True lets None through."""
    if optional and value is None:
        return None
    kind, test, what = _RULES[rule]
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, kind) or not test(value):
        raise ValueError(f"{name} must be {what}{' or None' if optional else ''}, got {value!r}")
    return int(value) if rule in ("count", "seed") else float(value)


_INTERNAL = tuple(os.path.join(os.path.dirname(__file__), f) for f in ("graph.py", "diffusion.py"))


def _warn(message):
    """warnings.warn(message) attributed to the line that called into this module or lpnb.diffusion (the
    caller of a public function), not to a line inside them, however deep the call."""
    frame, level = sys._getframe(1), 2
    while frame.f_back is not None and frame.f_code.co_filename in _INTERNAL:
        frame, level = frame.f_back, level + 1
    warnings.warn(message, stacklevel=level)


def _checked_matrix(x, name="features"):
    """x as a 2-D floating torch tensor in its own precision, with at least one column and
    finite values; else a ValueError. Anything np.asarray reads (lists, pandas DataFrames,
    views with negative strides, read-only arrays) is accepted, a tensor that requires grad
    is detached; integers and bools become float32 (up to 16 bits) or float64, exactly. pandas'
    nullable columns (Float64, Int64) are read as float64, a missing value as NaN (refused)."""
    if scipy.sparse.issparse(x):
        raise ValueError(f"{name} is a scipy.sparse matrix: pass a dense array ({name}.toarray()); the k-NN search "
                         "compares dense rows")
    if isinstance(x, torch.Tensor):
        if x.layout != torch.strided:
            raise ValueError(f"{name} is a torch sparse tensor ({x.layout}): pass a dense one ({name}.to_dense()); "
                             "the k-NN search compares dense rows")
        x = x.detach()
    else:
        given, x = x, np.asarray(x)
        if x.dtype == object and _nullable_numbers(given):  # pandas' Float64, Int64, boolean give object arrays
            x = given.to_numpy(dtype=np.float64, na_value=np.nan)
        if x.dtype.kind not in "biuf":  # object (mixed or missing values), complex, strings
            raise ValueError(f"{name} must be real numbers (floats, integers or bools), got dtype {x.dtype}")
        if x.dtype.kind == "f" and x.dtype.itemsize > 8:
            x = x.astype(np.float64)  # long double: torch has no such type
        elif not x.dtype.isnative:
            x = x.astype(x.dtype.newbyteorder("="))  # big-endian (a file's byte order): torch refuses it
        if not x.flags.writeable or any(s < 0 for s in x.strides):
            x = x.copy()  # torch refuses negative strides and warns on read-only arrays (memory maps)
        x = torch.from_numpy(x)
    if x.is_complex():
        raise ValueError(f"{name} must be real numbers (floats, integers or bools), got dtype {x.dtype}")
    if x.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array, one row per point, got shape {tuple(x.shape)}")
    if x.shape[1] == 0:
        raise ValueError(f"{name} must have at least one column, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        x = x.float() if x.element_size() <= 2 else x.double()
    if not torch.isfinite(x.sum()) and not torch.isfinite(x).all():  # fast check first
        raise ValueError(f"{name} contain NaN or inf: clean or impute them first")
    return x


def _nullable_numbers(frame):
    """Whether `frame` is a pandas DataFrame or Series whose columns all hold numbers or bools (text refused)."""
    dtypes = getattr(frame, "dtypes", None)
    if dtypes is None or not hasattr(frame, "to_numpy"):
        return False
    return all(getattr(d, "kind", "O") in "biuf" for d in (dtypes if hasattr(dtypes, "__iter__") else [dtypes]))


def _checked_matrix32(x, name="features"):
    """`_checked_matrix` in float32, or a ValueError if values lie beyond float32's range or all below it."""
    x = _checked_matrix(x, name)
    x32 = x.float()
    if x.dtype != torch.float32 and not torch.isfinite(x32).all():
        raise ValueError(f"{name} exceed float32's range (largest |value| {_max_abs(x):.3g}): "
                         "divide them by a constant first")
    if x.dtype != torch.float32 and not x32.any() and x.any():  # every value below float32's smallest: all 0
        raise ValueError(f"{name} underflow float32 (largest |value| {_max_abs(x):.3g}): multiply them by a "
                         "constant first")
    return x32


def _warn_one_column(x, kind):
    """Warn when points of one column meet the dot graph, which cannot tell them apart."""
    if kind == "dot" and x.shape[1] == 1:
        _warn("the features have one column: on unit descriptors (graph 'dot', cosine similarity) every nonzero "
              "point is +1 or -1, so the graph cannot tell apart the points of one sign; use graph='gaussian' "
              "for such points")


def _rescale(x, kind, frame=None):
    """Float32 points on which the graph of `kind` does not depend on the overall scale of x.

    Parameters
    ----------
    x : torch.Tensor (n, d)
        Validated points (`_checked_matrix`) in their own precision, float16 and bfloat16 in float32:
        the scaling is done there, so that features around 1e30 (or float64 1e200) neither
        overflow nor underflow float32.
    kind : {"dot", "gaussian"}
        "dot": each row divided by its largest |value|, then l2-normalised, so that inner
        products are cosine similarities (eq. 9); an all-zero row stays zero.
        "gaussian": x / s0 - c, then divided by s1, with s0 = max |x|, c the coordinate-wise
        median of x / s0 (of up to ~2^17 evenly spaced rows; not the mean, which one far outlier
        moves) and s1 the largest |value| that is left: centred, within [-1, 1]. Distances
        shrink by the factor s0 * s1 (divide a bandwidth sigma by it). Points that float32
        cannot tell apart there (most of those not at the median within 1e-15 of it: an outlier
        ~1e15 times farther out) raise a ValueError, as do queries whose squared distances it cannot hold.
    frame : tuple, optional
        (s0, c, s1) of an earlier call: maps other points (queries) like those of that call.

    Returns
    -------
    (float32 tensor (n, d), frame): frame is (s0, c, s1) for "gaussian", None for "dot".
    """
    if x.dtype in (torch.float16, torch.bfloat16):
        x = x.float()  # exact; normalised in half precision, unit rows would be off by up to 1e-3
    if kind == "dot":  # a block of rows at a time: no (n, d) temporaries beside the result
        out, rows = torch.empty(x.shape, dtype=torch.float32, device=x.device), 1 << 16
        for i in range(0, len(x), rows):
            block = x[i:i + rows]
            top = block.abs().amax(1, keepdim=True)
            out[i:i + rows] = F.normalize(block / torch.where(top > 0, top, torch.ones_like(top)), dim=1)
        return out, None
    if frame is None:
        s0 = _max_abs(x) or 1.0
        sample = x[::max(1, len(x) >> 16)] / s0  # up to ~2^17 evenly spaced rows: medians in milliseconds
        c = sample.median(0).values
        frame = (s0, c, _max_abs(x / s0 - c) or 1.0)
        off = (sample - c).abs().amax(1)
        off = off[off > 0]  # the points at the median (many identical ones) say nothing of the others' spread
        spread = off.median().item() / frame[2] if len(off) else 0.0  # of most points, against the farthest one
        if 0 < spread < 1e-15:
            raise ValueError(f"features: most points lie within {spread:.1e} of their median, relative to the "
                             "farthest point: float32, in which the Gaussian graph is built, cannot tell them apart; "
                             "remove or clip the outlying points")
    s0, c, s1 = frame
    out = ((x / s0 - c.to(x.device)) / s1).float()
    if _max_abs(out) >= 1e18:  # queries (frame given) so far out that float32 cannot hold their squared distances
        raise ValueError(f"queries lie beyond float32's range relative to the training points (largest |value| "
                         f"{_max_abs(x):.3g}, the training points' {s0:.3g}): their Gaussian weights cannot be "
                         "computed; remove or clip them")
    return out, frame


def _scaled_sigma(sigma, frame):
    """A bandwidth sigma in the units of the points `_rescale(x, "gaussian")` gave `frame` (s0, c, s1) for:
    their distances shrink by the factor s0 * s1."""
    return sigma / frame[0] / frame[2]


def _max_abs(x):
    """max |x| as a float, 0 for an empty tensor (no |x| copy of x)."""
    if x.numel() == 0:
        return 0.0
    lo, hi = torch.aminmax(x)
    return max(-lo.item(), hi.item())


def _gaussian(sq_dists, sigma):
    """exp(-d^2 / sigma^2), 1 for d = 0 whatever sigma (no 0 / 0 when sigma^2 underflows), in place of the
    squared distances (no second (n, k) array)."""
    zero = sq_dists == 0
    weights = sq_dists.div_(sigma).div_(sigma).neg_().exp_()
    weights[zero] = 1.0
    return weights


def _faiss_gpu():
    return faiss is not None and hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


def auto_backend(cuda):
    """The k-NN search backend="auto" picks for CPU (cuda=False) or CUDA points: faiss if it is importable and
    can search there, else torch."""
    return "faiss" if faiss is not None and (not cuda or _faiss_gpu()) else "torch"


@functools.lru_cache(maxsize=None)
def _gpu_resources():
    return faiss.StandardGpuResources()


def _ivf_params(n):
    """IVF-Flat settings for approx=True: (nlist, nprobe) = (sqrt(n) lists, 3 probed), so they grow
    with n: a query scans about 3 sqrt(n) points, and a search of all n points costs n^1.5 d (against
    n^2 d exact). Tuned on Fashion-MNIST (n = 60,000, benchmarks/propagate_speed.py): recall of the
    exact 50-NN 0.88, propagate's accuracy within 0.5 points of exact, the search 7.4x faster than exact
    on a 2-core CPU (benchmarks/README.md)."""
    nlist = max(1, min(int(math.sqrt(n)), n // 39))  # faiss wants 39+ training points per list
    return nlist, min(nlist, 3)


def locality_order(x, seed=0):
    """A permutation of the rows of x (n, d) that puts near points next to each other, by their spherical
    k-means cluster (sqrt(n) clusters, faiss), and the cluster of each point in that order. Searching the
    k-NN and multiplying by the graph in this order reuses the caches (at n = 1,000,000 on a 2-core CPU,
    1.7x and 3x faster on well-clustered points)."""
    if faiss is None:
        raise ValueError("locality_order needs faiss: pip install faiss-cpu")
    xb = np.ascontiguousarray(x.cpu().numpy(), dtype=np.float32)
    clusters, _ = _ivf_params(len(xb))
    kmeans = faiss.Kmeans(xb.shape[1], clusters, niter=10, max_points_per_centroid=64, seed=seed, spherical=True)
    kmeans.train(xb)
    _, cluster = kmeans.assign(xb)  # the nearest centroid by inner product (spherical)
    order = np.argsort(cluster, kind="stable")
    return torch.from_numpy(order).to(x.device), torch.from_numpy(cluster[order]).to(x.device)


def _faiss_search(x, q, k, metric, approx):
    d = x.shape[1]
    gpu = x.is_cuda and _faiss_gpu()
    xb = np.ascontiguousarray(x.cpu().numpy())
    xq = xb if q is x else np.ascontiguousarray(q.cpu().numpy())
    new_flat = faiss.IndexFlatIP if metric == "dot" else faiss.IndexFlatL2
    index = new_flat(d)
    nlist, nprobe = _ivf_params(len(xb))
    approx = approx and nlist > 1  # one list would scan every point: search exactly
    if approx:
        index = faiss.IndexIVFFlat(index, d, nlist, index.metric_type)
        index.cp.niter, index.cp.max_points_per_centroid = 10, 64  # a coarse quantizer: cheap k-means
    if gpu:
        index = faiss.index_cpu_to_gpu(_gpu_resources(), x.device.index or 0, index)
    if approx:
        index.train(xb)
        space = faiss.GpuParameterSpace() if gpu else faiss.ParameterSpace()
        space.set_index_parameter(index, "nprobe", nprobe)
    index.add(xb)
    D, I = index.search(xq, k)
    missing = (I < 0).any(1)  # IVF lists too small to hold k results: search those rows exactly
    if missing.any():
        exact = new_flat(d)
        exact.add(xb)
        D[missing], I[missing] = exact.search(xq[missing], k)
    return torch.from_numpy(D).to(x.device), torch.from_numpy(I).to(x.device)


def search_chunk(cuda):
    """Similarities computed at once by the torch k-NN search (its block of queries x points): 256M on a GPU,
    64M on a CPU."""
    return 2**28 if cuda else 2**26


def _torch_search(x, q, k, metric, chunk_size):
    rows = chunk_size or max(1, search_chunk(x.is_cuda) // len(x))
    sq = (x * x).sum(1)
    D, I = [], []
    for s in range(0, len(q), rows):
        sims = q[s:s + rows] @ x.T
        if metric == "l2":
            sims = (q[s:s + rows] ** 2).sum(1, keepdim=True) - 2 * sims + sq  # squared distances
        d, i = sims.topk(k, dim=1, largest=metric == "dot")
        D.append(d.clamp_min(0) if metric == "l2" else d)
        I.append(i)
    return torch.cat(D), torch.cat(I)


def knn(features, k, *, queries=None, backend="auto", approx=False, metric="dot", chunk_size=None):
    """k nearest neighbours of every row of `features` among the other rows.

    metric="dot": largest inner products (cosine similarity for unit descriptors, eq. 9);
    metric="l2": smallest squared Euclidean distances. Returns (values, indices), both
    (n, k) torch tensors on the device of `features`, each row sorted best first.

    queries: if given (m, d), search these points among `features` instead: (m, k), nothing
      excluded (used to predict new points).
    backend: "faiss", "torch" or "auto" (faiss if importable and usable on the tensor's
      device, i.e. CPU tensors, or CUDA tensors with a faiss GPU build; else torch).
      torch: exact, chunked matmul + top-k, `chunk_size` rows at a time (default: rows
      for 64M similarities, 256 MB; on a GPU 256M, 1 GB).
    approx: an IVF-Flat faiss index instead of an exhaustive search (see _ivf_params). It
      needs faiss: without it a warning is issued and the exact torch search is used.

    The point itself is removed by index, not by rank: with duplicates another point may
    come first, and if ties push the point out of the k+1 results the last one is dropped.
    k >= n is clamped to n - 1 with a warning (to n, the database's size, when `queries` are given).

    The search is in float32 and in the features' own units: features whose largest |value|
    would overflow or underflow float32 inner products (above about 3e18 / sqrt(d), below
    1e-15) are refused with a ValueError; multiply them by a constant first (the neighbours
    do not change; `affinity_graph` does this itself).
    """
    k = _check_param("k", k, "count")
    chunk_size = _check_param("chunk_size", chunk_size, "count", optional=True)
    x = _checked_matrix32(features)
    q = x if queries is None else _checked_matrix32(queries, "queries").to(x.device)
    if q.shape[1] != x.shape[1]:
        raise ValueError(f"queries have {q.shape[1]} dimensions, features {x.shape[1]}")
    if metric not in ("dot", "l2"):
        raise ValueError(f"metric must be 'dot' or 'l2', got {metric!r}")
    if backend not in ("auto", "faiss", "torch"):
        raise ValueError(f"backend must be 'auto', 'faiss' or 'torch', got {backend!r}")
    n = len(x)
    available = n - 1 if queries is None else n
    if available < 1:
        need = "2 samples" if queries is None else "1 sample"
        raise ValueError(f"need at least {need} to find a neighbour, got {n} sample{'s' * (n != 1)}")
    top = max(_max_abs(x), _max_abs(q))
    if top > 0 and not 1e-15 <= top <= math.sqrt(1e37 / x.shape[1]):
        raise ValueError(f"features up to |value| {top:.3g} {'over' if top > 1 else 'under'}flow float32 inner "
                         "products and distances: multiply them by a constant first (the neighbours do not "
                         "change; affinity_graph, propagate and LabelPropagation rescale by themselves)")
    if k > available:
        _warn(f"k={k} but only {available} {'other points' if queries is None else 'points'}: using k={available}")
        k = available
    if backend == "faiss" and faiss is None:
        raise ValueError("backend='faiss' but faiss is not installed: pip install faiss-cpu")
    if backend == "auto":
        backend = auto_backend(x.is_cuda)
    if approx and backend == "torch":
        if faiss is None:
            why = "needs faiss (pip install faiss-cpu)"
        elif x.is_cuda:
            why = "on CUDA points needs a faiss with GPU support (conda's faiss-gpu), not this one"
        else:
            why = "needs backend 'faiss' or 'auto'"
        _warn(f"approx=True {why}: using an exact torch search")
        approx = False
    if len(q) == 0:  # no queries: no neighbours (the torch search has no block to concatenate)
        return x.new_empty(0, k), torch.empty(0, k, dtype=torch.int64, device=x.device)
    kq = k + (queries is None)
    if backend == "faiss":
        D, I = _faiss_search(x, q, kq, metric, approx)
    else:
        D, I = _torch_search(x, q, kq, metric, chunk_size)
    if queries is None:  # drop one column per row: the point itself, else the last one (a block at a time)
        D_all, I_all = D, I
        D, I = D_all.new_empty(n, k), I_all.new_empty(n, k)
        for i in range(0, n, 1 << 16):
            d_i, i_i = D_all[i:i + (1 << 16)], I_all[i:i + (1 << 16)]
            drop = i_i == torch.arange(i, i + len(i_i), device=I.device)[:, None]
            drop[~drop.any(1), -1] = True  # the point itself not among its kq nearest (duplicates of it are)
            D[i:i + len(i_i)], I[i:i + len(i_i)] = d_i[~drop].view(-1, k), i_i[~drop].view(-1, k)
    return D, I


def default_sigma(sq_dists):
    """Default bandwidth of the Gaussian graph: the mean k-NN Euclidean distance (over the
    non-zero ones, so that duplicates do not shrink it to 0; 1 if all are 0)."""
    sq_dists = torch.as_tensor(sq_dists)
    d = sq_dists[sq_dists > 0].sqrt_()
    return d.mean().item() if len(d) else 1.0


def affinity_graph(features, k=50, *, kind="dot", gamma=3.0, sigma=None, approx=False, backend="auto"):
    """Symmetric k-NN affinity matrix W = A + A^T as a torch sparse CSR tensor (n, n).

    kind="dot" (the paper's graph, eq. 9): a_ij = [v_i . v_j]_+^gamma for the k nearest
      neighbours j of i by inner product, on unit descriptors: the rows are l2-normalised
      here (cosine similarity; each row is first divided by its largest |value|, in the
      features' own precision, so that no magnitude overflows float32). An all-zero row
      stays zero: an isolated point.
    kind="gaussian": a_ij = exp(-||v_i - v_j||^2 / sigma^2) for the k nearest neighbours by
      Euclidean distance (2-D toy data etc.); sigma defaults to `default_sigma`. The points
      are centred and divided by one global factor first (sigma by the same factor), so W
      depends on neither their overall scale nor a translation.
    W has zero diagonal and non-negative entries; a pair that are each other's neighbours
    gets a_ij + a_ji. W is assembled where the features are: in scipy.sparse for CPU
    features, in torch on the GPU for CUDA features (no round trip through the host).
    """
    if kind not in ("dot", "gaussian"):
        raise ValueError(f"kind must be 'dot' or 'gaussian', got {kind!r}")
    gamma = _check_param("gamma", gamma, "positive")
    sigma = _check_param("sigma", sigma, "positive", optional=True)
    if sigma is not None and kind == "dot":
        raise ValueError("sigma is the bandwidth of kind='gaussian'; kind='dot' has none: leave sigma None, or pass "
                         "kind='gaussian'")
    x, frame = _rescale(_checked_matrix(features), kind)
    _warn_one_column(x, kind)
    S, I = knn(x, k, backend=backend, approx=approx, metric="dot" if kind == "dot" else "l2")
    del x  # the rescaled copy: the graph needs only the neighbours
    # sigma in the units of the rescaled points
    scaled_sigma = None if sigma is None or frame is None else _scaled_sigma(sigma, frame)
    return graph_from_neighbours(S, I, kind=kind, gamma=gamma, sigma=scaled_sigma)


def graph_from_neighbours(S, I, *, kind="dot", gamma=3.0, sigma=None):
    """W = A + A^T (eq. 9) from the k-NN of every point (`knn`'s output (n, k): inner products or squared
    distances S, indices I), which it overwrites. For CPU tensors, a block of rows at a time and in scipy
    (int32 indices while n k < 2^31); for CUDA tensors, in torch on the GPU."""
    if kind == "dot":
        A = S.clamp_(min=0).pow_(gamma)
    else:
        A = _gaussian(S, default_sigma(S) if sigma is None else sigma)
    n, k = I.shape
    if I.is_cuda:
        return _symmetrize(I, A)
    I = I.to(_index_dtype(n * k))  # int32 when the row pointer fits: half the memory
    for i in range(0, n, 1 << 16):  # sorted rows: scipy's A + A^T then comes out sorted, faster
        rows, order = I[i:i + (1 << 16)].sort(1)
        I[i:i + len(rows)] = rows
        A[i:i + len(rows)] = A[i:i + len(rows)].gather(1, order)
    A = scipy.sparse.csr_matrix((A.numpy().ravel(), I.numpy().ravel(),
                                 np.arange(0, n * k + 1, k, dtype=I.numpy().dtype)), shape=(n, n))
    del I
    W = (A + A.T).tocsr()
    W.sort_indices()
    return _csr(torch.from_numpy(W.indptr), torch.from_numpy(W.indices), torch.from_numpy(W.data), W.shape)


def _index_dtype(nnz):
    """torch.int32 for the column indices and row pointer of a CSR matrix with nnz >= n entries (the row
    pointer ends at nnz) when nnz < 2^31, else torch.int64."""
    return torch.int32 if nnz < 2**31 else torch.int64


def _symmetrize(I, A):
    """W = A + A^T as a CSR tensor from the k-NN indices and affinities (n, k), in torch on
    their device (duplicates summed by coalesce)."""
    n, k = I.shape
    rows = torch.arange(n, device=I.device).repeat_interleave(k)
    pairs = torch.stack([torch.cat([rows, I.ravel()]), torch.cat([I.ravel(), rows])])
    W = torch.sparse_coo_tensor(pairs, torch.cat([A.ravel(), A.ravel()]), (n, n), check_invariants=False).coalesce()
    row, col = W.indices()
    crow = torch.cat([row.new_zeros(1), row.bincount(minlength=n).cumsum(0)])
    return _csr(crow, col, W.values(), (n, n))


def graph_degrees(W):
    """The degrees W 1 (n,) of a sparse CSR graph W (section 3)."""
    return spmm(W, torch.ones(W.shape[1], 1, dtype=W.dtype, device=W.device))[:, 0]


def normalize(W, rows=1 << 15, degrees=None):
    """D^-1/2 W D^-1/2 with D = diag(W 1) (section 3); a zero degree is treated as 1, so an
    isolated point keeps a zero row instead of producing NaN. W must be a square torch sparse
    CSR tensor with finite, non-negative entries, as `affinity_graph` returns; `degrees`, W 1
    (n,) when the caller has it already. The result shares W's indices: it takes new memory
    only for its values."""
    if not (isinstance(W, torch.Tensor) and W.layout == torch.sparse_csr and W.ndim == 2
            and W.shape[0] == W.shape[1]):
        raise ValueError("W must be a square torch sparse CSR tensor (n, n), as affinity_graph returns; got "
                         f"{type(W).__name__} {getattr(W, 'layout', '')} of shape {tuple(getattr(W, 'shape', ()))}")
    if not (torch.isfinite(W.values()).all() and (W.values() >= 0).all()):
        raise ValueError("W must have finite, non-negative entries (affinities): check how it was built")
    crow, col, val = W.crow_indices(), W.col_indices(), W.values()
    deg = graph_degrees(W) if degrees is None else degrees
    dinv = torch.where(deg > 0, deg, torch.ones_like(deg)).rsqrt()
    scaled = torch.empty_like(val)  # a block of rows at a time: no temporary as large as the graph
    for i in range(0, W.shape[0], rows):
        j = min(i + rows, W.shape[0])
        a, b = int(crow[i]), int(crow[j])
        row_dinv = dinv[i:j].repeat_interleave(crow[i:j + 1].diff(), output_size=b - a)  # d_i^-1/2 of each entry
        torch.mul(row_dinv, val[a:b], out=scaled[a:b]).mul_(dinv[col[a:b]])
    return _csr(crow, col, scaled, W.shape)


def spmm(W, V, rows=1 << 17):
    """W @ V for a sparse CSR W (n, m) and a dense V (m, c). On a CPU a block of rows at a time: torch's
    product of the whole takes workspace beyond its result, as large again at n = 1,000,000."""
    if W.is_cuda:
        return W @ V
    crow, col, val = W.crow_indices(), W.col_indices(), W.values()
    out = torch.empty(W.shape[0], V.shape[1], dtype=V.dtype)
    for i in range(0, W.shape[0], rows):
        j = min(i + rows, W.shape[0])
        a, b = int(crow[i]), int(crow[j])
        out[i:j] = _csr(crow[i:j + 1] - a, col[a:b], val[a:b], (j - i, W.shape[1])) @ V
    return out


def _csr(crow, col, val, shape):
    with warnings.catch_warnings():  # silence torch's "sparse CSR tensor support is in beta"
        warnings.filterwarnings("ignore", "Sparse CSR tensor support", UserWarning)
        return torch.sparse_csr_tensor(crow, col, val, shape, check_invariants=False)


def to_scipy(W):
    """A torch sparse CSR tensor as a scipy.sparse.csr_matrix (on the CPU)."""
    W = W.cpu()
    return scipy.sparse.csr_matrix((W.values().numpy(), W.col_indices().numpy(),
                                    W.crow_indices().numpy()), shape=W.shape)
