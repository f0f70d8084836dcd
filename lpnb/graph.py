"""Nearest-neighbour affinity graph of Iscen et al. (CVPR 2019), section 4, eq. (9).

    knn(features, k)            k nearest neighbours of every point, self excluded
    affinity_graph(features, k) W = A + A^T with a_ij = [v_i . v_j]_+^gamma  (eq. 9)
    normalize(W)                D^-1/2 W D^-1/2, the matrix of eq. (10)

W is a torch sparse CSR tensor on the device of the features, so that the conjugate
gradient of `lpnb.diffusion` runs on CPU and GPU alike. The k-NN search uses faiss when it
is importable (a GPU index for CUDA tensors when faiss has GPU support), else chunked
matmul + top-k in torch.
"""
import functools
import math
import warnings

import numpy as np
import scipy.sparse
import torch

try:
    import faiss
except ImportError:  # faiss is optional: the torch backend covers every case but approx=True
    faiss = None


def _as_tensor(x, name="features"):
    x = torch.as_tensor(x)
    if x.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (n, d), got shape {tuple(x.shape)}")
    if not (x.is_floating_point() or x.dtype in (torch.int32, torch.int64, torch.uint8)):
        raise ValueError(f"{name} must be numeric, got dtype {x.dtype}")
    x = x.float()
    if not torch.isfinite(x.sum()) and not torch.isfinite(x).all():  # fast check first
        raise ValueError(f"{name} contain NaN or inf: clean or impute them before building the graph")
    return x


def _faiss_gpu():
    return faiss is not None and hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


@functools.lru_cache(maxsize=None)
def _gpu_resources():
    return faiss.StandardGpuResources()


def _ivf_params(n):
    """IVF-Flat settings for approx=True: (nlist, nprobe) = (sqrt(n) lists, 3 probed). Tuned
    on Fashion-MNIST (n = 60,000, benchmarks/propagate_speed.py): recall of the 50-NN about
    0.88, propagate's accuracy within 0.5 points of exact, 4x faster than exact search."""
    nlist = max(1, min(int(math.sqrt(n)), n // 39))  # faiss wants 39+ training points per list
    return nlist, min(nlist, 3)


def _faiss_search(x, q, k, metric, approx):
    d = x.shape[1]
    gpu = x.is_cuda and _faiss_gpu()
    xb = np.ascontiguousarray(x.cpu().numpy())
    xq = xb if q is x else np.ascontiguousarray(q.cpu().numpy())
    new_flat = faiss.IndexFlatIP if metric == "dot" else faiss.IndexFlatL2
    index = new_flat(d)
    if approx:
        nlist, nprobe = _ivf_params(len(xb))
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


def _torch_search(x, q, k, metric, chunk_size):
    rows = chunk_size or max(1, 2**26 // len(x))  # 64M similarities (256 MB) per chunk
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
      for 64M similarities, 256 MB).
    approx: an IVF-Flat faiss index instead of an exhaustive search (see _ivf_params). It
      needs faiss: without it a warning is issued and the exact torch search is used.

    The point itself is removed by index, not by rank: with duplicates another point may
    come first, and if ties push the point out of the k+1 results the last one is dropped.
    k >= n is clamped to n - 1 with a warning.
    """
    x = _as_tensor(features)
    q = x if queries is None else _as_tensor(queries, "queries").to(x.device)
    if q.shape[1] != x.shape[1]:
        raise ValueError(f"queries have {q.shape[1]} dimensions, features {x.shape[1]}")
    if metric not in ("dot", "l2"):
        raise ValueError(f"metric must be 'dot' or 'l2', got {metric!r}")
    if backend not in ("auto", "faiss", "torch"):
        raise ValueError(f"backend must be 'auto', 'faiss' or 'torch', got {backend!r}")
    n = len(x)
    available = n - 1 if queries is None else n
    if available < 1:
        raise ValueError(f"need at least {n + 1} points to find a neighbour, got {n}")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if k > available:
        warnings.warn(f"k={k} but only {available} other points: using k={available}")
        k = available
    if backend == "faiss" and faiss is None:
        raise ValueError("backend='faiss' but faiss is not installed: pip install faiss-cpu")
    if backend == "auto":
        backend = "faiss" if faiss is not None and (not x.is_cuda or _faiss_gpu()) else "torch"
    if approx and backend == "torch":
        warnings.warn("approx=True needs faiss (pip install faiss-cpu): using an exact torch search")
        approx = False
    kq = k + (queries is None)
    if backend == "faiss":
        D, I = _faiss_search(x, q, kq, metric, approx)
    else:
        D, I = _torch_search(x, q, kq, metric, chunk_size)
    if queries is None:  # drop column `pos`: where the point itself is, else the last one
        is_self = I == torch.arange(n, device=I.device)[:, None]
        pos = torch.where(is_self.any(1), is_self.byte().argmax(1), k)
        cols = torch.arange(k, device=I.device)
        cols = cols + (cols >= pos[:, None])
        D, I = D.gather(1, cols), I.gather(1, cols)
    return D, I


def default_sigma(sq_dists):
    """Default bandwidth of the Gaussian graph: the mean k-NN Euclidean distance (over the
    non-zero ones, so that duplicates do not shrink it to 0; 1 if all are 0)."""
    d = torch.as_tensor(sq_dists).sqrt()
    d = d[d > 0]
    return d.mean().item() if len(d) else 1.0


def affinity_graph(features, k=50, *, kind="dot", gamma=3.0, sigma=None, approx=False, backend="auto"):
    """Symmetric k-NN affinity matrix W = A + A^T as a torch sparse CSR tensor (n, n).

    kind="dot" (the paper's graph, eq. 9): a_ij = [v_i . v_j]_+^gamma for the k nearest
      neighbours j of i by inner product; features should be l2-normalised descriptors.
    kind="gaussian": a_ij = exp(-||v_i - v_j||^2 / sigma^2) for the k nearest neighbours by
      Euclidean distance (2-D toy data etc.); sigma defaults to `default_sigma`.
    W has zero diagonal and non-negative entries; a pair that are each other's neighbours
    gets a_ij + a_ji. W is assembled where the features are: in scipy.sparse for CPU
    features, in torch on the GPU for CUDA features (no round trip through the host).
    """
    if kind not in ("dot", "gaussian"):
        raise ValueError(f"kind must be 'dot' or 'gaussian', got {kind!r}")
    if not gamma > 0:
        raise ValueError(f"gamma must be positive, got {gamma}")
    x = _as_tensor(features)
    S, I = knn(x, k, backend=backend, approx=approx, metric="dot" if kind == "dot" else "l2")
    if kind == "dot":
        A = S.clamp_min(0) ** gamma
    else:
        sigma = default_sigma(S) if sigma is None else float(sigma)
        if not sigma > 0:
            raise ValueError(f"sigma must be positive, got {sigma}")
        A = torch.exp(-S / sigma**2)
    n, k = I.shape
    if x.is_cuda:
        return _symmetrize(I, A)
    I, order = I.cpu().sort(1)  # sorted rows: scipy's A + A^T then comes out sorted, faster
    A = scipy.sparse.csr_matrix((A.cpu().gather(1, order).numpy().ravel(), I.numpy().ravel(),
                                 np.arange(0, n * k + 1, k)), shape=(n, n))
    return _to_torch((A + A.T).tocsr(), x.device)


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


def normalize(W):
    """D^-1/2 W D^-1/2 with D = diag(W 1) (section 3); a zero degree is treated as 1, so an
    isolated point keeps a zero row instead of producing NaN."""
    crow, col, val = W.crow_indices(), W.col_indices(), W.values()
    row = torch.repeat_interleave(torch.arange(W.shape[0], device=val.device), crow.diff())
    deg = torch.zeros(W.shape[0], dtype=val.dtype, device=val.device).index_add_(0, row, val)
    dinv = torch.where(deg > 0, deg, torch.ones_like(deg)).rsqrt()
    return _csr(crow, col, val * dinv[row] * dinv[col], W.shape)


def _csr(crow, col, val, shape):
    with warnings.catch_warnings():  # silence torch's "sparse CSR tensor support is in beta"
        warnings.filterwarnings("ignore", "Sparse CSR tensor support", UserWarning)
        return torch.sparse_csr_tensor(crow, col, val, shape, check_invariants=False)


def _to_torch(M, device):
    M.sort_indices()
    return _csr(torch.from_numpy(M.indptr), torch.from_numpy(M.indices),
                torch.from_numpy(M.data), M.shape).to(device)


def to_scipy(W):
    """A torch sparse CSR tensor as a scipy.sparse.csr_matrix (on the CPU)."""
    W = W.cpu()
    return scipy.sparse.csr_matrix((W.values().numpy(), W.col_indices().numpy(),
                                    W.crow_indices().numpy()), shape=W.shape)
