"""Peak memory of `lpnb.propagate` phase by phase, against the estimate its memory check uses.

    python benchmarks/propagate_memory.py                      # n = 200,000, approximate k-NN
    python benchmarks/propagate_memory.py --n 100000 --knn exact
    python benchmarks/propagate_memory.py --graph gaussian      # Euclidean k-NN, Gaussian weights
    python benchmarks/propagate_memory.py --assembly torch     # the graph's CUDA assembly, run on the CPU

Synthetic Gaussian features (d = 32), k = 50, 10 classes, one point in 20 labeled. Memory is the
process's resident size beyond what it held before the call, in units of n k bytes: the peak so far
when each phase returns (Linux's ru_maxrss) and what is left then. Run in a fresh process, with
MALLOC_MMAP_THRESHOLD_ fixed (set by the script) so that freed arrays go back to the system.
"""
import argparse
import functools
import os
import resource
import sys

if os.environ.get("MALLOC_MMAP_THRESHOLD_") != "131072":  # glibc reads it at start-up: start again with it
    os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"})

import numpy as np  # noqa: E402
import torch  # noqa: E402

from lpnb import diffusion, graph  # noqa: E402


def resident():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=200_000)
    p.add_argument("--k", type=int, default=50)
    p.add_argument("--d", type=int, default=32)
    p.add_argument("--knn", choices=["exact", "approx"], default="approx")
    p.add_argument("--graph", choices=["dot", "gaussian"], default="dot")
    p.add_argument("--assembly", choices=["scipy", "torch"], default="scipy",
                   help="torch: only the assembly of W that CUDA tensors take (lpnb.graph._symmetrize), on the CPU")
    args = p.parse_args()
    n, k, d = args.n, args.k, args.d
    unit = n * k
    torch.manual_seed(0)
    if args.assembly == "torch":  # k-NN lists as the torch search returns them: float32 values, int64 indices
        S, I = torch.rand(n, k), torch.randint(0, n, (n, k))
        base = resident()
        graph._symmetrize(I, S)
        build, _ = diffusion._graph_memory(n, 0, k, cuda=True, torch_search=False)
        print(f"W = A + A^T assembled in torch: peak {(peak() - base) / unit:.1f} n k beyond the k-NN lists "
              f"({(S.numel() * 4 + I.numel() * 8) / unit:.0f} n k); the check allows {build / unit:.0f} n k for both")
        return
    x = torch.randn(n, d)
    labels = np.random.default_rng(0).integers(0, 10, n)
    base = resident()

    def measured(name, f):
        @functools.wraps(f)
        def call(*a, **kw):
            before = resident()
            out = f(*a, **kw)
            print(f"{name:22s} peak so far {(peak() - base) / unit:5.1f}   held before {(before - base) / unit:5.1f}, "
                  f"after {(resident() - base) / unit:5.1f}   (n k bytes)")
            return out
        return call

    for name in ["_rescale", "knn_search", "default_sigma", "graph_from_neighbours", "normalize",
                 "conjugate_gradient"]:
        setattr(diffusion, name, measured(name, getattr(diffusion, name)))
    diffusion.propagate(x, labels, np.arange(0, n, 20), k=k, knn=args.knn, graph=args.graph)
    build, kept = diffusion._graph_memory(n, d, k, cuda=False, torch_search=diffusion.faiss is None)
    print(f"n = {n}, d = {d}, k = {k}, knn = {args.knn}, graph = {args.graph}: peak {(peak() - base) / unit:.1f} n k; "
          f"the check allows "
          f"{build / unit:.1f} n k while the graph is built, then {kept / unit:.0f} n k for it beside the solve")


if __name__ == "__main__":
    main()
