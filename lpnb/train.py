"""The inductive half of the paper (Algorithm 1, sec. 4-5.2): one epoch at a time.

Stage 1 (lines 3-5) trains on the labeled images with cross-entropy (eq. 2), or, for Mean
Teacher, on all images with the consistency loss (eq. 4) added. Stage 2 (lines 6-17)
starts every epoch with `refresh_pseudo_labels`: descriptors of all training images, the
k-NN graph, diffusion (eq. 10) and the weights omega (eq. 11) and zeta; then
`train_epoch` optimises the weighted loss (eq. 12) for one pass over the unlabeled images.

Everything lives on one device: the training images as a uint8 tensor, augmentation,
the model, the pseudo-labels. The experiment runner (`lpnb.experiment`) drives the epochs,
checkpoints and records.
"""
import copy
import hashlib
import math
import time
from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F

from lpnb.data import apply_augmentation, augment, draw_augmentation, normalize
from lpnb.diffusion import PseudoLabels, gtg_pseudo_labels, network_pseudo_labels, propagate


def cosine_lr(base_lr, t, rampdown_epochs):
    """Per-iteration cosine annealing: lr * 0.5 * (1 + cos(pi min(t, R) / R)) at fractional epoch t, R =
    rampdown_epochs (210 for 180 epochs, sec. 5.2)."""
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * min(t, rampdown_epochs) / rampdown_epochs))


def sigmoid_rampup(t, length):
    """Mean Teacher's consistency ramp-up exp(-5 (1 - t/length)^2)."""
    if length == 0:
        return 1.0
    p = min(max(t / length, 0.0), 1.0)
    return math.exp(-5.0 * (1.0 - p) ** 2)


def labeled_batches(labeled_idx, batch_size, generator):
    """Stage 1 without Mean Teacher: one pass over the labeled images in batches of B (last partial batch dropped;
    with fewer than B labeled images, one batch of all of them)."""
    order = labeled_idx[torch.randperm(len(labeled_idx), generator=generator)]
    batch_size = min(batch_size, len(order))
    return [order[i:i + batch_size] for i in range(0, len(order) - batch_size + 1, batch_size)]


def two_stream_batches(labeled_idx, unlabeled_idx, batch_size, labeled_batch_size, generator):
    """Batches of B - B_L unlabeled + B_L labeled images: one pass over the unlabeled ones, labeled ones cycle
    (sec. 5.2)."""
    n_unlabeled_per_batch = batch_size - labeled_batch_size
    n_batches = len(unlabeled_idx) // n_unlabeled_per_batch
    if n_batches == 0:
        raise ValueError(f"{len(unlabeled_idx)} unlabeled images cannot fill one batch of {n_unlabeled_per_batch}: "
                         "use more unlabeled images or a smaller batch_size - labeled_batch_size")
    unlabeled = unlabeled_idx[torch.randperm(len(unlabeled_idx), generator=generator)]
    n_cycles = -(-n_batches * labeled_batch_size // len(labeled_idx))
    labeled = torch.cat([labeled_idx[torch.randperm(len(labeled_idx), generator=generator)] for _ in range(n_cycles)])
    return [torch.cat([labeled[i * labeled_batch_size:(i + 1) * labeled_batch_size],
                       unlabeled[i * n_unlabeled_per_batch:(i + 1) * n_unlabeled_per_batch]]) for i in range(n_batches)]


def epoch_batches(stage, mean_teacher, n_labeled, n_unlabeled, batch_size, labeled_batch_size):
    """(steps, labeled images per step) of an epoch of `stage`, as `train_epoch` batches it: stage 1 without
    Mean Teacher passes over the labeled images (`labeled_batches`); stage 2 and Mean Teacher over the
    unlabeled ones, B_L labeled images a step (`two_stream_batches`)."""
    if stage == 1 and not mean_teacher:
        per_step = min(batch_size, n_labeled)
        return n_labeled // per_step, per_step
    return n_unlabeled // (batch_size - labeled_batch_size), labeled_batch_size


class Trainer:
    """Model, optional EMA teacher, optimiser and the device-resident data of one run.

    `images` is the uint8 (n, C, H, W) training set on the device, `labels` (n,) its true
    labels (read only at labeled positions and for reporting pseudo-label accuracy),
    `labeled` (n,) a bool mask. `cfg` is a `lpnb.config.Config`.
    """

    def __init__(self, cfg, model, images, labels, labeled, *, mean, std, aug_kind, num_classes, device):
        on_cuda = device.type == "cuda"  # the speed-ups default to on for CUDA only, compiled with CUDA graphs
        defaults = {"amp": on_cuda, "channels_last": on_cuda, "compile": "reduce-overhead" if on_cuda else False}
        cfg = replace(cfg, **{f: v if getattr(cfg, f) is None else getattr(cfg, f) for f, v in defaults.items()})
        self.cfg, self.device, self.num_classes = cfg, device, num_classes
        self.images, self.labels, self.labeled = images, labels, labeled
        self.aug_kind = aug_kind
        # mean and std: on the device for the eager descriptor pass (no host copy per batch), and as
        # Python constants for the compiled training step (no input to copy into its CUDA graph)
        self.mean, self.std = (torch.tensor(v, dtype=torch.float32, device=device) for v in (mean, std))
        self.norm = (tuple(mean), tuple(std))
        self.labeled_idx = torch.nonzero(labeled).flatten().cpu()
        self.unlabeled_idx = torch.nonzero(~labeled).flatten().cpu()
        memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        self.model = model.to(device, memory_format=memory_format)
        self.teacher = copy.deepcopy(self.model).requires_grad_(False) if cfg.method.startswith("mt") else None
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                         nesterov=cfg.nesterov, weight_decay=cfg.weight_decay)
        mode = cfg.compile if isinstance(cfg.compile, str) else None
        self.cuda_graphs = mode in ("reduce-overhead", "max-autotune")
        # augmentation, normalisation, network(s) and losses compile into one graph (one CUDA graph replay)
        self.losses = torch.compile(self._losses, mode=mode) if cfg.compile else self._losses
        if on_cuda:
            torch.backends.cudnn.benchmark = True  # fixed batch shapes: let cuDNN pick its fastest kernels
        self.batch_generator = torch.Generator().manual_seed(cfg.seed)
        self.aug_generator = torch.Generator(device).manual_seed(cfg.seed + 1)
        self.ema_steps = 0
        self.targets = torch.where(labeled, labels, torch.full_like(labels, -1))
        self.loss_weights = labeled.float()  # stage 1 (Mean Teacher): CE on labeled images only

    # --- state, for checkpoints -------------------------------------------------------
    def state_dict(self):
        """What a checkpoint needs to continue training exactly: the networks, the optimiser and every generator."""
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "teacher": self.teacher.state_dict() if self.teacher is not None else None,
                "ema_steps": self.ema_steps, "batch_generator": self.batch_generator.get_state(),
                "aug_generator": self.aug_generator.get_state(), "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None}

    def load_state_dict(self, state):
        """Continue from a `state_dict()`, saved on this kind of device or the other (CPU, GPU)."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.teacher is not None:
            self.teacher.load_state_dict(state["teacher"])
        self.ema_steps = state["ema_steps"]
        self.batch_generator.set_state(state["batch_generator"])
        saved = state["aug_generator"]
        if saved.numel() == self.aug_generator.get_state().numel():
            self.aug_generator.set_state(saved)
        else:  # saved on the other kind of device (a GPU's state is not a CPU's): seeded from it, as reproducibly
            self.aug_generator.manual_seed(int.from_bytes(hashlib.sha1(saved.numpy().tobytes()).digest()[:8], "little"))
        torch.set_rng_state(state["torch_rng"])  # dropout
        if self.device.type == "cuda" and state["cuda_rng"] is not None:  # None: saved on a CPU
            torch.cuda.set_rng_state(state["cuda_rng"], self.device)

    # --- one optimisation step ----------------------------------------------------------
    def _losses(self, images, aug_params, targets, loss_weights, teacher_aug_params):
        """Weighted cross-entropy sum_i w_i CE_i / B (eq. 12; in stage 1, w = 1 on labeled images and 0 on the
        unlabeled ones Mean Teacher adds) of the uint8 `images` augmented by `aug_params` (from `draw_augmentation`),
        plus for Mean Teacher its logit-distance term, and its consistency term (returned apart, to be scaled
        by the ramp-up; None without a teacher).
        """
        cfg = self.cfg

        def inputs(params):
            x = normalize(apply_augmentation(images, self.aug_kind, params), *self.norm)
            return x.contiguous(memory_format=torch.channels_last) if cfg.channels_last else x

        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=cfg.amp):
            logits, aux_logits, _ = self.model(inputs(aug_params))
            ce = F.cross_entropy(logits.float(), targets.clamp(min=0), reduction="none")
            loss = (loss_weights * ce).sum() / len(images)
            if teacher_aug_params is None:
                return loss, None
            with torch.no_grad():
                teacher_logits, _, _ = self.teacher(inputs(teacher_aug_params))
            student = aux_logits if aux_logits is not None else logits
            scale = self.num_classes * len(images)
            consistency = F.mse_loss(student.float().softmax(1), teacher_logits.float().softmax(1), reduction="sum")
            consistency = consistency / scale
            if aux_logits is not None:
                distance = F.mse_loss(logits.float(), aux_logits.float(), reduction="sum") / scale
                loss = loss + cfg.logit_distance_cost * distance
        return loss, consistency

    def _step(self, images, targets, loss_weights, consistency_weight=0.0):
        """Draws the augmentation(s), computes the loss (`_losses`) and its gradients; returns the loss."""
        aug_params = draw_augmentation(len(images), self.aug_kind, self.aug_generator, self.device)
        teacher_aug_params = None
        if self.teacher is not None:
            teacher_aug_params = draw_augmentation(len(images), self.aug_kind, self.aug_generator, self.device)
        loss, consistency = self.losses(images, aug_params, targets, loss_weights, teacher_aug_params)
        if consistency is not None:
            loss = loss + consistency_weight * consistency
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        return loss.detach()

    @torch.no_grad()
    def _update_teacher(self):
        """EMA of the student's parameters, decay min(1 - 1/n, ema_decay) at the n-th update (0.97, docs/method.md)."""
        self.ema_steps += 1
        decay = min(1.0 - 1.0 / self.ema_steps, self.cfg.ema_decay)
        torch._foreach_lerp_(list(self.teacher.parameters()), list(self.model.parameters()), 1.0 - decay)

    def steps_per_epoch(self, stage):
        """The training steps of an epoch of `stage`, as `train_epoch` batches it."""
        return epoch_batches(stage, self.teacher is not None, len(self.labeled_idx), len(self.unlabeled_idx),
                             self.cfg.batch_size, self.cfg.labeled_batch_size)[0]

    def train_epoch(self, stage, epoch, progress=None):
        """One epoch of stage 1 (eq. 2, or MT) or stage 2 (eq. 12); returns the mean loss."""
        cfg = self.cfg
        self.model.train()
        if self.teacher is not None:
            self.teacher.train()
        if stage == 1 and self.teacher is None:
            batches = labeled_batches(self.labeled_idx, cfg.batch_size, self.batch_generator)
        else:
            batches = two_stream_batches(self.labeled_idx, self.unlabeled_idx, cfg.batch_size,
                                         cfg.labeled_batch_size, self.batch_generator)
        epochs = cfg.epochs_stage1 if stage == 1 else cfg.epochs_stage2
        rampdown = epochs * 210 / 180 if cfg.lr_rampdown_epochs is None else cfg.lr_rampdown_epochs  # 210 for 180
        total = torch.zeros((), device=self.device)
        batches = list(torch.stack(batches).to(self.device))  # one copy per epoch: the steps never wait for the GPU
        for i, idx in enumerate(progress(batches) if progress else batches):
            t = epoch + i / len(batches)
            for group in self.optimizer.param_groups:
                group["lr"] = cosine_lr(cfg.lr, t, rampdown)
            if self.cuda_graphs:
                torch.compiler.cudagraph_mark_step_begin()
            # the ramp-up runs in stage 1; stage 2 continues with the teacher carried over at full weight
            consistency_weight = cfg.consistency * (sigmoid_rampup(t, cfg.consistency_rampup) if stage == 1 else 1.0)
            total += self._step(self.images[idx], self.targets[idx], self.loss_weights[idx], consistency_weight)
            self.optimizer.step()
            if self.teacher is not None:
                self._update_teacher()
        return total.item() / len(batches)

    # --- descriptors, pseudo-labels, evaluation ----------------------------------------
    @torch.no_grad()
    def predict(self, model, images, kind):
        """Eval-mode pass: descriptors (n, d) float32 and softmax probabilities (n, c), one `kind`-augmented view
        of each image."""
        batch_size = 2000 if self.device.type == "cuda" else 500
        model.eval()
        descs, probs = [], []
        for i in range(0, len(images), batch_size):
            x = normalize(augment(images[i:i + batch_size], kind, generator=self.aug_generator), self.mean, self.std)
            if self.cfg.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.cfg.amp):
                logits, _, v = model(x)
            descs.append(F.normalize(v.float(), dim=1))
            probs.append(logits.float().softmax(1))
        return torch.cat(descs), torch.cat(probs)

    def refresh_pseudo_labels(self):
        """Lines 7-15 of Algorithm 1 for the configured pseudo-labeler; sets the per-image targets and weights.

        Returns (PseudoLabels, network probabilities, seconds for descriptors, seconds for labelling).
        """
        cfg = self.cfg
        t0 = time.perf_counter()
        descriptors, probs = self.predict(self.model, self.images, self.aug_kind)
        if descriptors.is_cuda:  # the pass is queued: timed once it has run
            torch.cuda.synchronize(descriptors.device)
        t1 = time.perf_counter()
        labels, labeled = self.labels.cpu().numpy(), self.labeled.cpu().numpy()
        if cfg.method in ("lp", "mt+lp"):
            pl = propagate(descriptors, labels, labeled, n_classes=self.num_classes, k=cfg.k, gamma=cfg.gamma,
                           alpha=cfg.alpha, max_iter=cfg.cg_iters, knn=cfg.knn)
        elif cfg.method == "gtg":
            pl = gtg_pseudo_labels(descriptors, labels, labeled, n_classes=self.num_classes, k=cfg.k, gamma=cfg.gamma,
                                   knn=cfg.knn)
        elif cfg.method == "network":
            pl = network_pseudo_labels(probs.cpu().numpy(), labels, labeled)
        else:
            raise ValueError(f"method {cfg.method!r} has no stage 2")
        t2 = time.perf_counter()
        omega = pl.weights if cfg.use_omega else pl.scored.astype(np.float32)  # no pseudo-label: weight 0 in any case
        omega = torch.as_tensor(omega, device=self.device)
        zeta = torch.as_tensor(pl.class_weights if cfg.use_zeta else np.ones(self.num_classes, np.float32),
                               device=self.device)
        self.targets = torch.as_tensor(pl.pseudo_labels, device=self.device)
        self.loss_weights = omega * zeta[self.targets]
        return pl, probs, t1 - t0, t2 - t1

    def test_error(self, images, labels, model=None):
        """Top-1 and top-5 error (%) on un-augmented images, from the counts of mistakes (90.0, not float32's
        89.99999761581421)."""
        _, probs = self.predict(model or self.model, images, "none")
        top5 = probs.topk(min(5, probs.shape[1]), dim=1).indices
        top1_wrong, top5_wrong = (top5[:, 0] != labels).sum().item(), (~(top5 == labels[:, None]).any(1)).sum().item()
        return 100 * top1_wrong / len(labels), 100 * top5_wrong / len(labels)


def correct_pseudo_labels(pl: PseudoLabels, labels, rows):
    """Whether each of `rows` (a mask or indices) has a correct pseudo-label: its true label, from a score row
    that is not all equal (a point the graph leaves without scores gets class 0 and weight 0: no pseudo-label)."""
    return (pl.pseudo_labels[rows] == labels[rows]) & pl.scored[rows]


def omega_histogram(pl: PseudoLabels, labels, labeled, bins=20):
    """Counts of omega over unlabeled images, split by correct / incorrect pseudo-label (Figure 5)."""
    unl = ~labeled
    correct = correct_pseudo_labels(pl, labels, unl)
    edges = np.linspace(0, 1, bins + 1)
    return {"edges": edges.tolist(),
            "correct": np.histogram(pl.weights[unl][correct], edges)[0].tolist(),
            "incorrect": np.histogram(pl.weights[unl][~correct], edges)[0].tolist()}


def confident_mistakes(pl: PseudoLabels, labels, labeled, train_index, top=40):
    """The wrong pseudo-labels with the highest omega (Figure 7): dataset index, pseudo-label, true label, omega.
    A point the graph left without scores has no pseudo-label, so it is no mistake."""
    wrong = np.flatnonzero(~labeled & pl.scored & (pl.pseudo_labels != labels))
    order = wrong[np.argsort(-pl.weights[wrong], kind="stable")[:top]]
    return [{"index": int(train_index[i]), "pseudo_label": int(pl.pseudo_labels[i]), "label": int(labels[i]),
             "omega": float(pl.weights[i])} for i in order]
