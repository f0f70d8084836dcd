"""`lpnb.propagate` at large n: seconds per phase, peak memory and accuracy on synthetic descriptors.

The data: n unit vectors in d = 128 dimensions with a seeded class structure, each of `--classes`
classes a mixture of 4 Gaussian clusters around random directions, and a fifth of the points lying
in a cluster of another class, so that the classes overlap and accuracy on the unlabeled points
(which the truth makes known) is informative: well below 100%. 10 labeled points per class.
`propagate(..., knn="approx")`, k = 50, alpha = 0.99, 20 CG iterations. Each measurement runs in a
fresh process, so that its peak resident memory (which includes the data, 4 n d bytes) is its own.

    python benchmarks/propagate_scale.py --n 1000000 --classes 100
    python benchmarks/propagate_scale.py --n 100000            # also exact search, and approx's agreement
    python benchmarks/propagate_scale.py --n 200000            # also scikit-learn's LabelSpreading
    python benchmarks/propagate_scale.py --n 1000000 --classes 1000 --device cuda   # on a GPU (without a faiss
                                                               # GPU build the search is exact); GPU peak memory too

The last line reads `n=... classes=... seconds=... peak_rss_gb=... accuracy=...` (approx).
"""
import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def make_data(n, classes, d=128, clusters=4, noise=1.5, stray=0.2, seed=0):
    """Unit descriptors (n, d) float32 and their classes, made a block of rows at a time (no (n, d) temporary).
    A point lies in one of its class's clusters, but a `stray` fraction of them in a cluster of any class: the
    classes overlap, and no method can pseudo-label those right but by chance."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((classes * clusters, d)).astype(np.float32)
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    labels = rng.integers(0, classes, n)
    x = np.empty((n, d), np.float32)
    for i in range(0, n, 1 << 16):
        rows = slice(i, min(i + (1 << 16), n))
        m = rows.stop - rows.start
        home = np.where(rng.random(m) < stray, rng.integers(0, classes, m), labels[rows])
        which = home * clusters + rng.integers(0, clusters, m)
        block = centers[which] + noise / np.sqrt(d) * rng.standard_normal((m, d), dtype=np.float32)
        x[rows] = block / np.linalg.norm(block, axis=1, keepdims=True)
    labeled = np.zeros(n, bool)
    for j in range(classes):
        labeled[np.flatnonzero(labels == j)[:10]] = True
    return x, labels, labeled


def measure(method, n, classes, max_memory=None, device="cpu", pseudo_dir=None):
    """One measurement, in this process: prints a JSON line."""
    import torch  # (torch first: scikit-learn's OpenMP beside torch's doubles its time otherwise)
    from sklearn.semi_supervised import LabelSpreading

    from lpnb import propagate

    x, y, labeled = make_data(n, classes)
    out = {"method": method}
    t = time.perf_counter()
    if method == "labelspreading":
        model = LabelSpreading(kernel="knn", n_neighbors=50, alpha=0.99, max_iter=20, tol=1e-6)
        try:
            model.fit(x, np.where(labeled, y, -1))
            pseudo = model.transduction_
        except MemoryError as e:
            out["failed"] = f"MemoryError: {e}"
            pseudo = None
    else:
        if device != "cpu":  # the data on the device first, and a warm-up, so that only propagate is timed
            x = torch.from_numpy(x).to(device)
            propagate(x[:1000], y[:1000], labeled[:1000], n_classes=classes, k=10, max_iter=2)
            torch.cuda.synchronize()
            t = time.perf_counter()
        res = propagate(x, y, labeled, knn=method, k=50, alpha=0.99, max_iter=20, max_memory=max_memory)
        pseudo = res.pseudo_labels
        if device != "cpu":
            out["peak_gpu_gb"] = torch.cuda.max_memory_allocated() / 1e9
        out.update(phases=res.timings, class_blocks=res.class_blocks)
    out["seconds"] = time.perf_counter() - t
    if pseudo is not None and pseudo_dir is not None:  # for main's agreement of approx and exact, after the clock
        np.save(Path(pseudo_dir) / f"{method}.npy", pseudo)
    out["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9  # KiB on Linux
    if pseudo is not None:
        out["accuracy"] = float((pseudo[~labeled] == y[~labeled]).mean())
    print(json.dumps(out))


def run(method, n, classes, max_memory=None, device="cpu", pseudo_dir=None):
    """`measure` in a fresh process (its own peak memory); its JSON, or what went wrong."""
    cmd = [sys.executable, __file__, "--measure", method, "--n", str(n), "--classes", str(classes), "--device", device]
    cmd += ["--pseudo-dir", str(pseudo_dir)] if pseudo_dir is not None else []
    cmd += ["--max-memory", str(max_memory / 1e9)] if max_memory is not None else []
    proc = subprocess.run(cmd, capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"method": method, "failed": f"exit status {proc.returncode}: {proc.stderr.strip()[-500:]}"}
    return json.loads(lines[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--classes", type=int, default=100)
    p.add_argument("--max-memory", type=float, default=None,
                   help="GB that propagate's graph and solve may take (its max_memory); default: the available memory")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda: where propagate runs")
    p.add_argument("--measure", help=argparse.SUPPRESS)
    p.add_argument("--pseudo-dir", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.classes < 2 or args.n < 10 * args.classes + 1:
        p.error(f"--classes must be at least 2 and --n more than 10 per class (the labeled points), got --n {args.n} "
                f"--classes {args.classes}")
    if args.max_memory is not None and not args.max_memory > 0:
        p.error(f"--max-memory must be a positive number of GB, got {args.max_memory}")
    max_memory = None if args.max_memory is None else args.max_memory * 1e9
    if args.measure:
        return measure(args.measure, args.n, args.classes, max_memory, args.device, args.pseudo_dir)
    methods = ["approx"] + (["exact"] if args.n == 100_000 else []) + (["labelspreading"] if args.n == 200_000 else [])
    pseudo_dir = Path(tempfile.mkdtemp(prefix="propagate_scale-"))  # this call's pseudo-labels, none of an older one
    results = {m: run(m, args.n, args.classes, max_memory, args.device, pseudo_dir) for m in methods}
    for m, r in results.items():
        if "failed" in r:
            print(f"{m:15s} failed: {r['failed']}")
            continue
        phases = ", ".join(f"{k} {v:.1f} s" for k, v in r.get("phases", {}).items())
        gpu = f" (GPU {r['peak_gpu_gb']:.2f} GB)" if "peak_gpu_gb" in r else ""
        print(f"{m:15s} {r['seconds']:7.1f} s  peak {r['peak_rss_gb']:.2f} GB{gpu}  accuracy {r['accuracy']:.4f}"
              + (f"  ({phases}; {r['class_blocks']} class block(s))" if phases else ""))
    if all(m in results and "failed" not in results[m] for m in ("approx", "exact")):
        agree = np.mean(np.load(pseudo_dir / "approx.npy") == np.load(pseudo_dir / "exact.npy"))
        print(f"approx and exact give the same pseudo-label to {agree:.2%} of the points")
    shutil.rmtree(pseudo_dir)
    r = results["approx"]
    print(f"n={args.n} classes={args.classes} seconds={r.get('seconds', float('nan')):.1f} "
          f"peak_rss_gb={r.get('peak_rss_gb', float('nan')):.2f} accuracy={r.get('accuracy', float('nan')):.4f}")
    if any("failed" in r for r in results.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
