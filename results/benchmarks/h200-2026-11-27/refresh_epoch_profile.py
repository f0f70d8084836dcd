"""H200 probe at 01b674f: the refresh with the GPU graph assembly, a stage-2 epoch with foreach vs fused SGD,
and a torch.profiler table of 50 training steps. Output: refresh_epoch_profile.txt."""
import sys, time
import numpy as np, torch
from lpnb.data import labeled_indices, load_dataset, to_device
from lpnb.experiment import make_config, select_training_images
from lpnb.models import build_model
from lpnb.train import Trainer

import os
CPU = bool(os.environ.get("PROBE_CPU"))
dev = torch.device("cpu" if CPU else "cuda")
print(torch.__version__, "cpu" if CPU else torch.cuda.get_device_name(dev), flush=True)
data = load_dataset("cifar10", None)
cfg = make_config("paper", labels=4000, width=0.125 if CPU else 1.0, device=dev.type, amp=not CPU, channels_last=not CPU, compile=False if CPU else "reduce-overhead")
lab = labeled_indices(data, 4000, 0)
index = select_training_images(len(data.train_labels), lab, 1000 if CPU else None, seed=0)
images, labels = np.ascontiguousarray(data.train_images[index]), np.asarray(data.train_labels[index])
gimg, glab, gmask = to_device(images, dev), torch.as_tensor(labels, device=dev), torch.as_tensor(np.isin(index, lab), device=dev)

def trainer(fused=False, c=cfg):
    t = Trainer(c, build_model("cnn13", 10, width=c.width), gimg, glab, gmask, mean=data.mean, std=data.std, aug="cifar", num_classes=10, device=dev)
    if fused:
        t.optimizer = torch.optim.SGD(t.model.parameters(), lr=c.lr, momentum=c.momentum, nesterov=c.nesterov,
                                      weight_decay=c.weight_decay, fused=not CPU)
    return t

def sync():
    if not CPU: torch.cuda.synchronize()

# 1. refresh at n=50k, shipped code (GPU graph assembly)
t = trainer()
t.refresh_pseudo_labels(); sync()
r = []
for _ in range(3):
    sync(); t0 = time.perf_counter(); _, _, a, b = t.refresh_pseudo_labels(); sync(); r.append((time.perf_counter() - t0, a, b))
print("refresh n=50000: best total %.3f s (desc %.3f s, knn+cg+w %.3f s)" % min(r), flush=True)

# 2. full stage-2 epochs per variant
def epochs(t, name, n=2):
    t.train_epoch(2, 0, progress=lambda b: b[:10]); sync()
    out = []
    for _ in range(n):
        sync(); t0 = time.perf_counter(); t.train_epoch(2, 0); sync(); out.append(time.perf_counter() - t0)
    steps = len(t.unlabeled_idx) // 50
    print(f"{name}: stage-2 epoch {min(out):.2f} s ({steps} steps, {steps * 100 / min(out):.0f} img/s); all {[round(x, 2) for x in out]}", flush=True)
    return t

epochs(t, "shipped (foreach SGD)")
tf = epochs(trainer(fused=not CPU), "fused SGD")
epochs(t, "shipped again")

# 3. profile 50 steps of the shipped path
from torch.profiler import profile, ProfilerActivity
with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
    sync(); t0 = time.perf_counter(); t.train_epoch(2, 0, progress=lambda b: b[:50]); sync(); wall = time.perf_counter() - t0
ka = prof.key_averages()
cuda_total = sum(e.self_device_time_total for e in ka) / 1e3
print(f"profile 50 steps: wall {wall * 1e3 / 50:.2f} ms/step (with profiler), GPU kernel time {cuda_total / 50:.2f} ms/step")
print(ka.table(sort_by="self_device_time_total", row_limit=25, max_name_column_width=70))
print(ka.table(sort_by="self_cpu_time_total", row_limit=20, max_name_column_width=70))
