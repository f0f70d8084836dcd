"""Same process, same data: the step as of 01b674f (compiled model, eager augmentation and loss) vs one compiled graph.

Run from the repository root with old_train.py beside this file (`git show 01b674f:lpnb/train.py > old_train.py`):
    PYTHONPATH=$PWD python results/benchmarks/h100-2026-11-27b/old_vs_new.py    # output: old_vs_new.txt
"""
import os, sys, time
import numpy as np, torch
sys.path.insert(0, os.path.dirname(__file__))
import old_train
from lpnb.data import labeled_indices, load_dataset, to_device
from lpnb.experiment import make_config, select_training_images
from lpnb.models import build_model
from lpnb.train import Trainer

CPU = bool(os.environ.get("PROBE_CPU"))
dev = torch.device("cpu" if CPU else "cuda")
print(torch.__version__, "cpu" if CPU else torch.cuda.get_device_name(dev), flush=True)
data = load_dataset("cifar10", None)
lab = labeled_indices(data, 4000, 0)
index = select_training_images(len(data.train_labels), lab, 1000 if CPU else None, seed=0)
images, labels = np.ascontiguousarray(data.train_images[index]), np.asarray(data.train_labels[index])
gimg, glab, gmask = to_device(images, dev), torch.as_tensor(labels, device=dev), torch.as_tensor(np.isin(index, lab), device=dev)

def sync():
    if not CPU: torch.cuda.synchronize()

def build(cls, method):
    cfg = make_config("paper", labels=4000, method=method, width=0.125 if CPU else 1.0, device=dev.type, amp=not CPU,
                      channels_last=not CPU, compile=False if CPU else "reduce-overhead")
    torch.manual_seed(0)
    t = cls(cfg, build_model("cnn13", 10, width=cfg.width, l2_normalize=method != "mt", two_heads=method == "mt"),
            gimg, glab, gmask, mean=data.mean, std=data.std, aug="cifar", num_classes=10, device=dev)
    t.train_epoch(2, 0, progress=lambda b: b[:10]); sync()
    return t

def epoch(t):
    sync(); t0 = time.perf_counter(); loss = t.train_epoch(2, 0); sync(); return time.perf_counter() - t0, loss

steps = (len(index) - 4000) // 50
for method in ("lp", "mt"):
    trainers = {"01b674f step": build(old_train.Trainer, method), "one-graph step": build(Trainer, method)}
    times = {k: [] for k in trainers}
    for _ in range(2):
        for k, t in trainers.items():
            s, loss = epoch(t); times[k].append(s)
            print(f"  {method} {k}: epoch {s:.2f} s, loss {loss:.3f}", flush=True)
    best = {k: min(v) for k, v in times.items()}
    for k, v in best.items():
        print(f"{method}: {k}: best stage-2 epoch {v:.2f} s ({steps} steps, {steps * 100 / v:.0f} img/s)", flush=True)
    print(f"{method}: speed-up {best['01b674f step'] / best['one-graph step']:.2f}x", flush=True)
    del trainers
