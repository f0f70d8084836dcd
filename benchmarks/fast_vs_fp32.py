"""Do the speed-ups change the results? The same short LP runs on one device, fast path vs plain fp32.

fast:  bf16 autocast, channels_last, torch.compile with CUDA graphs (the CUDA defaults of
       `lpnb.train.Trainer`; --compile-modes gives the modes to run instead, one fast path each);
plain: fp32 throughout (TF32 off for cuDNN convolutions and matmuls, which PyTorch's default
       would let convolutions use), no channels_last, no compile.
Each path runs the same configurations with several seeds; the script prints every run's
test error and time and, per path, the mean and spread over seeds. The fast path keeps the
meaning of the results when its mean sits within the seed-to-seed spread of the plain one.

    python benchmarks/fast_vs_fp32.py --data-root ../shared/data            # CUDA: the short preset below
    python benchmarks/fast_vs_fp32.py --preset smoke --seeds 0 --device cpu  # the code path, in minutes
"""
import argparse
import contextlib
import json
import tempfile
import time

import numpy as np
import torch

from lpnb.config import make_config
from lpnb.experiment import run

# short: the paper's network and batches, 10,000 unlabeled images, 30 + 10 epochs
SHORT = dict(unlabeled_size=10000, epochs_stage1=30, epochs_stage2=10, eval_every=0)


@contextlib.contextmanager
def true_fp32(on):
    """With on, TF32 off for cuDNN (on by PyTorch's default) and for matmuls, restored afterwards."""
    saved = torch.backends.cudnn.allow_tf32, torch.get_float32_matmul_precision()
    if on:
        torch.backends.cudnn.allow_tf32 = False
        torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32 = saved[0]
        torch.set_float32_matmul_precision(saved[1])


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="paper", help="base preset; 'paper' gets the short overrides above")
    p.add_argument("--labels", type=int, default=4000)
    p.add_argument("--method", default="lp")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--data-root", default=None)
    p.add_argument("--device", default=None, help="default: cuda (a GPU); cpu only when given")
    p.add_argument("--compile-modes", nargs="+", default=["reduce-overhead"],
                   help="torch.compile modes of the fast path, one fast path each (lpnb's CUDA default: "
                        "reduce-overhead)")
    p.add_argument("--json", default=None, help="also write the runs' figures to this file")
    args = p.parse_args()
    if args.device is None and not torch.cuda.is_available():  # the paper preset would train for hours here
        p.error("no CUDA device here, and this benchmark is meant for one: pass --device cpu "
                "(with --preset smoke --seeds 0) to try its code path on this CPU")
    args.device = args.device or "cuda"
    overrides = SHORT if args.preset == "paper" else {}
    paths = {f"fast, compile {mode}": dict(amp=True, channels_last=True, compile=mode == "default" or mode)
             for mode in args.compile_modes}
    paths["plain fp32"] = dict(amp=False, channels_last=False, compile=False)
    rows = []
    for seed in args.seeds:
        for name, switches in paths.items():
            cfg = make_config(args.preset, labels=args.labels, method=args.method, seed=seed, device=args.device,
                              **overrides, **switches)
            torch._dynamo.reset()  # each run compiles afresh: no recompile limit reached (then eager), comparable times
            t0 = time.perf_counter()
            with tempfile.TemporaryDirectory() as results, true_fp32(not switches["amp"]):  # ids: the same
                rec = run(cfg, data_root=args.data_root, results_dir=results, progress=False)
            rows.append({"path": name, "seed": seed, "test_error": rec["test_error"],
                         "stage1_test_error": rec["stage1_test_error"], "seconds": time.perf_counter() - t0,
                         "device": rec["device"], "run_id": rec["run_id"]})
            print(f"{name:26s} seed {seed}: test error {rec['test_error']:.2f}% "
                  f"(stage 1 {rec['stage1_test_error']:.2f}%), "
                  f"{rows[-1]['seconds']:.0f} s", flush=True)
    print(f"\n{rows[0]['device']}; {args.preset} preset{f' with {overrides}' if overrides else ''}, "
          f"{args.labels} labels, method {args.method}")
    for name in paths:
        err = np.array([r["test_error"] for r in rows if r["path"] == name])
        print(f"{name:26s}: test error {err.mean():.2f} +- {err.std(ddof=1) if len(err) > 1 else float('nan'):.2f} "
              f"over seeds {args.seeds}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
