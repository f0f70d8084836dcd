"""Speed and accuracy of lpnb.propagate next to scikit-learn's LabelSpreading and a
straightforward faiss + scipy implementation (the official code's recipe), on Fashion-MNIST.

All n training images, PCA to 128 d (timed apart, not compared), l2-normalised; a few labels
per class (seeded); accuracy is measured on the unlabeled points. Every method builds a
50-NN graph and diffuses with alpha = 0.99. Last, the k-NN search alone, exact and approximate:
their times and the approximate search's recall of the exact neighbours.

    python benchmarks/propagate_speed.py [--n 60000] [--seed 0] [--labels-per-class 10]

Fashion-MNIST comes from the Debian package dataset-fashion-mnist (apt-get install
dataset-fashion-mnist), which puts the idx files under /usr/share/datasets/fashion-mnist.
"""
import argparse
import os
import time
import warnings

import torch  # before sklearn and faiss: imported after them, torch's OpenMP runtime makes LabelSpreading 2x slower

# isort: split
import faiss
import numpy as np
import scipy.sparse
import scipy.sparse.linalg
import sklearn
from sklearn.semi_supervised import LabelSpreading

from lpnb.data import load_dataset
from lpnb.diffusion import propagate
from lpnb.graph import knn

K, GAMMA, ALPHA, MAX_ITER = 50, 3.0, 0.99, 20


def baseline(x, labels, labeled, c):
    """The straightforward way (the official code's recipe): faiss flat inner-product index,
    the graph with scipy.sparse, scipy's CG one class at a time."""
    n, d = x.shape
    index = faiss.IndexFlatIP(d)
    index.add(x)
    D, I = index.search(x, K + 1)
    D, I = np.maximum(D[:, 1:], 0) ** GAMMA, I[:, 1:]
    W = scipy.sparse.csr_matrix((D.ravel(), (np.repeat(np.arange(n), K), I.ravel())), shape=(n, n))
    W = W + W.T
    W = W - scipy.sparse.diags(W.diagonal())
    degree = np.asarray(W.sum(1)).ravel()
    degree[degree == 0] = 1
    Dm = scipy.sparse.diags(1 / np.sqrt(degree))
    A = scipy.sparse.eye(n) - ALPHA * (Dm @ W @ Dm)
    Z = np.zeros((n, c))
    for j in range(c):
        members = labeled[labels[labeled] == j]
        y = np.zeros(n)
        y[members] = 1 / len(members)
        Z[:, j], _ = scipy.sparse.linalg.cg(A, y, rtol=1e-6, maxiter=MAX_ITER)
    return Z.argmax(1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=60000, help="number of training images (first n)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the labeled split and the PCA")
    parser.add_argument("--labels-per-class", type=int, default=10)
    parser.add_argument("--dim", type=int, default=128, help="PCA dimension")
    parser.add_argument("--repeat", type=int, default=1, help="time each method this many times, keep the fastest")
    parser.add_argument("--root", default=None, help="data root (default: lpnb's; the Debian package is found anyway)")
    args = parser.parse_args()
    for name in ("n", "labels_per_class", "dim", "repeat"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be a positive integer, got {getattr(args, name)}")

    data = load_dataset("fashion-mnist", args.root)  # the Debian package's idx files, decoded once and cached
    if args.n > len(data.train_labels):
        parser.error(f"--n {args.n}: Fashion-MNIST has {len(data.train_labels)} training images")
    images, y = data.train_images.reshape(len(data.train_labels), -1).astype(np.float32) / 255, data.train_labels
    images, y = images[:args.n], y[:args.n]
    n, c = len(y), int(y.max()) + 1
    if np.bincount(y, minlength=c).min() <= args.labels_per_class or args.dim > min(n, images.shape[1]):
        parser.error(f"--n {n} leaves a class with at most --labels-per-class {args.labels_per_class} images, or "
                     f"--dim {args.dim} exceeds the points or the {images.shape[1]} pixels: give more points")
    torch.manual_seed(args.seed)
    t = time.perf_counter()
    pixels = torch.from_numpy(images)
    mean = pixels.mean(0)
    _, _, V = torch.pca_lowrank(pixels - mean, q=args.dim, center=False, niter=4)
    x = torch.nn.functional.normalize((pixels - mean) @ V, dim=1).numpy()
    pca_seconds = time.perf_counter() - t
    rng = np.random.default_rng(args.seed)
    labeled = np.sort(np.concatenate([rng.choice(np.flatnonzero(y == j), args.labels_per_class, replace=False)
                                      for j in range(c)]))
    unlabeled = np.setdiff1d(np.arange(n), labeled)
    y_partial = np.full(n, -1)
    y_partial[labeled] = y[labeled]

    print(f"Fashion-MNIST: n={n}, PCA to d={x.shape[1]} in {pca_seconds:.2f} s (not compared), "
          f"{args.labels_per_class} labels per class, seed {args.seed}, k={K}, alpha={ALPHA}")
    print(f"threads: torch {torch.get_num_threads()}, faiss {faiss.omp_get_max_threads()}; "
          f"torch {torch.__version__}, faiss {faiss.__version__}, scikit-learn {sklearn.__version__}; "
          f"load average before: {os.getloadavg()[0]:.2f}")
    propagate(x[:2000], y[:2000], np.unique(y[:2000], return_index=True)[1])  # warm-up: thread pools, first calls

    def label_spreading():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ConvergenceWarning: 30 iterations are its default
            model = LabelSpreading(kernel="knn", n_neighbors=K, alpha=ALPHA).fit(x, y_partial)
        return model.transduction_

    methods = {
        "sklearn LabelSpreading(knn, 50, 0.99)": label_spreading,
        "faiss flat + scipy CG per class": lambda: baseline(x, y, labeled, c),
        "lpnb.propagate exact": lambda: propagate(x, y, labeled, k=K, gamma=GAMMA, alpha=ALPHA).pseudo_labels,
        "lpnb.propagate approx": lambda: propagate(x, y, labeled, k=K, gamma=GAMMA, alpha=ALPHA,
                                                   knn="approx").pseudo_labels,
    }
    rows = {}
    for name, run in methods.items():
        times = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            pred = run()
            times.append(time.perf_counter() - t)
        rows[name] = (min(times), 100 * (pred[unlabeled] == y[unlabeled]).mean())
    ls_seconds = rows["sklearn LabelSpreading(knn, 50, 0.99)"][0]
    print(f"\n{'method':40s} {'seconds':>8s} {'accuracy %':>11s} {'speed-up vs LabelSpreading':>27s}")
    for name, (seconds, acc) in rows.items():
        print(f"{name:40s} {seconds:8.2f} {acc:11.2f} {ls_seconds / seconds:26.1f}x")

    neighbours, seconds = {}, {}  # the k-NN search alone: approx's recall of the exact lists (graph._ivf_params)
    for approx in (False, True):
        t = time.perf_counter()
        neighbours[approx] = knn(x, K, approx=approx)[1].numpy()
        seconds[approx] = time.perf_counter() - t
    recall = np.mean([len(np.intersect1d(a, b)) for a, b in zip(neighbours[False], neighbours[True])]) / K
    print(f"\nk-NN search alone: exact {seconds[False]:.2f} s, approx {seconds[True]:.2f} s "
          f"({seconds[False] / seconds[True]:.1f}x), recall of the exact {K}-NN {recall:.3f}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
