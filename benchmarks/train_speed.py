"""Training speed: lpnb's fast path vs a conventional pipeline, in one process on one device.

(a) fast path: the `lpnb.train.Trainer` of a stage-2 epoch (B = 100, B_L = 50): uint8 images
    resident on the device, batched augmentation there, bf16 autocast, channels_last and
    torch.compile with CUDA graphs (each on by default on CUDA; --compile-mode default
    compiles without CUDA graphs);
(b) conventional: torchvision transforms on PIL images through a DataLoader with 2 workers,
    fp32, the same network and optimiser.
Prints images/s of both and their ratio, the time of one stage-2 epoch of the fast path, and
the time of one full refresh of the pseudo-labels (descriptors + k-NN + CG + weights).

    python benchmarks/train_speed.py                      # CIFAR-10 (JPEG q95 copy), all 50k images
    python benchmarks/train_speed.py --images 5000 --steps 20 --width 0.25   # a CPU-sized check
    python benchmarks/train_speed.py --refresh-only       # the pseudo-label refresh alone
"""
import argparse
import time

import numpy as np
import torch
import torchvision.transforms as T
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from lpnb.config import DATASET_DEFAULTS, make_config
from lpnb.experiment import build_trainer, load_run_data
from lpnb.models import build_model


class PILDataset(Dataset):
    def __init__(self, images, labels, transform):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def conventional(images, labels, cfg, data, device, steps, workers):
    transform = T.Compose([T.RandomCrop(32, padding=4, padding_mode="reflect"), T.RandomHorizontalFlip(),
                           T.ToTensor(), T.Normalize(data.mean, data.std)])
    loader = DataLoader(PILDataset(images, labels, transform), batch_size=cfg.batch_size, shuffle=True,
                        num_workers=workers, drop_last=True, persistent_workers=workers > 0)
    model = build_model("cnn13", len(data.classes), width=cfg.width).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9, nesterov=True, weight_decay=cfg.weight_decay)
    model.train()
    done, t0 = 0, None
    while done < steps + 5:
        for x, y in loader:
            if done == 5:
                sync(device)
                t0 = time.perf_counter()
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            loss = torch.nn.functional.cross_entropy(model(x)[0], y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            done += 1
            if done == steps + 5:
                break
    sync(device)
    return steps * cfg.batch_size / (time.perf_counter() - t0)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=None, help="training images used (default: all)")
    p.add_argument("--labels", type=int, default=4000)
    p.add_argument("--steps", type=int, default=200, help="timed steps per pipeline")
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--data-root", default=None)
    p.add_argument("--device", default=None, help="default: cuda (a GPU); cpu only when given")
    p.add_argument("--compile-mode", default="reduce-overhead",
                   help="torch.compile mode of the fast path: reduce-overhead (CUDA graphs, lpnb's CUDA default) "
                        "or default")
    p.add_argument("--workers", type=int, default=2,
                   help="DataLoader workers of the conventional pipeline (default 2, as in the recorded ratios; it is "
                        "bound by them: give the machine's cores for a stronger baseline)")
    p.add_argument("--refresh-only", action="store_true", help="time the pseudo-label refresh alone, no training")
    args = p.parse_args()
    if args.device is None and not torch.cuda.is_available():  # the paper preset would train for hours here
        p.error("no CUDA device here, and this benchmark is meant for one: pass --device cpu "
                "(with --images 5000 --steps 20 --width 0.25) to try its code path on this CPU")
    args.device = args.device or "cuda"
    if args.workers < 0:
        p.error(f"--workers must be 0 or more, got {args.workers}")
    for name in ("labels", "steps"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be a positive integer, got {getattr(args, name)}")
    batch, labeled_batch = (DATASET_DEFAULTS["cifar10"][k] for k in ("batch_size", "labeled_batch_size"))
    if args.images is not None and args.images - args.labels < batch - labeled_batch:
        p.error(f"--images {args.images} leaves fewer unlabeled images beside --labels {args.labels} than one batch "
                f"holds ({batch - labeled_batch}): give more images")
    device = torch.device(args.device)
    on_cuda = device.type == "cuda"
    cfg = make_config("paper", labels=args.labels, width=args.width, device=args.device, amp=on_cuda,
                      channels_last=on_cuda, compile=on_cuda and (args.compile_mode == "default" or args.compile_mode),
                      unlabeled_size=None if args.images is None else args.images - args.labels)
    run_data = load_run_data(cfg, args.data_root)  # split 0, as `lpnb run` reads it
    data, index = run_data.data, run_data.train_index
    images, labels = np.ascontiguousarray(data.train_images[index]), np.asarray(data.train_labels[index])
    print(f"device: {torch.cuda.get_device_name(device) if on_cuda else 'cpu'}; {len(index)} CIFAR-10 (JPEG q95 copy) "
          f"training images, {cfg.labels} labeled; 13-layer net width {cfg.width}; B={cfg.batch_size}, "
          f"B_L={cfg.labeled_batch_size}; torch.compile: {cfg.compile}")

    trainer = build_trainer(cfg, run_data, device)
    t0 = time.perf_counter()
    trainer.refresh_pseudo_labels()  # warm-up (and compilation)
    sync(device)
    t_first = time.perf_counter() - t0
    times = []
    for _ in range(3):
        sync(device)
        t0 = time.perf_counter()
        _, _, t_desc, t_pl = trainer.refresh_pseudo_labels()
        sync(device)
        times.append((time.perf_counter() - t0, t_desc, t_pl))
    total, t_desc, t_pl = min(times)
    print(f"pseudo-label refresh at n={len(index)}: {total:.3f} s (descriptors {t_desc:.3f} s, k-NN + CG + weights "
          f"{t_pl:.3f} s; first call {t_first:.1f} s)")
    if args.refresh_only:
        return

    n_steps = len(trainer.unlabeled_idx) // (cfg.batch_size - cfg.labeled_batch_size)
    trainer.train_epoch(2, 0, progress=lambda b: b[:5])  # warm-up and compilation
    sync(device)
    t0 = time.perf_counter()
    trainer.train_epoch(2, 0, progress=lambda b: b[:args.steps])
    sync(device)
    fast = min(args.steps, n_steps) * cfg.batch_size / (time.perf_counter() - t0)
    print(f"fast path:    {fast:9.0f} images/s  -> one stage-2 epoch ({n_steps} steps) "
          f"~ {n_steps * cfg.batch_size / fast:.1f} s")
    conv = conventional(images, labels, cfg, data, device, args.steps, args.workers)
    print(f"conventional: {conv:9.0f} images/s  (PIL + torchvision transforms, DataLoader with {args.workers} workers, "
          "fp32)")
    print(f"ratio fast / conventional: {fast / conv:.2f}x")
    est = (cfg.epochs_stage1 * (cfg.labels // cfg.batch_size) * cfg.batch_size / fast
           + cfg.epochs_stage2 * (n_steps * cfg.batch_size / fast + total))
    print(f"estimated full run (180 + 180 epochs, {cfg.labels} labels, no test evaluation): {est / 60:.1f} min")


if __name__ == "__main__":
    main()
