import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lpnb.config import make_config
from lpnb.data import apply_augmentation, augment, draw_augmentation, normalize
from lpnb.diffusion import PseudoLabels
from lpnb.models import build_model
from lpnb.train import (
    Trainer,
    confident_mistakes,
    cosine_lr,
    labeled_batches,
    omega_histogram,
    sigmoid_rampup,
    two_stream_batches,
)


def test_cosine_schedule_reaches_zero_at_210_and_stops_at_180():
    assert cosine_lr(0.05, 0, 210) == pytest.approx(0.05)
    assert cosine_lr(0.05, 105, 210) == pytest.approx(0.025)
    assert cosine_lr(0.05, 180, 210) == pytest.approx(0.05 * 0.5 * (1 + math.cos(math.pi * 180 / 210)))
    assert cosine_lr(0.05, 210, 210) == pytest.approx(0.0, abs=1e-12)
    assert cosine_lr(0.05, 250, 210) == pytest.approx(0.0, abs=1e-12)  # past the ramp-down: stays at 0


def test_sigmoid_rampup():
    assert sigmoid_rampup(0, 5) == pytest.approx(math.exp(-5))
    assert sigmoid_rampup(2.5, 5) == pytest.approx(math.exp(-5 * 0.5 ** 2))
    assert sigmoid_rampup(5, 5) == 1.0 and sigmoid_rampup(50, 5) == 1.0 and sigmoid_rampup(3, 0) == 1.0


def test_two_stream_batches_cover_unlabeled_once_and_cycle_labeled():
    labeled, unlabeled = torch.arange(0, 7), torch.arange(7, 107)
    g = torch.Generator().manual_seed(0)
    batches = two_stream_batches(labeled, unlabeled, batch_size=15, labeled_batch_size=5, generator=g)
    assert len(batches) == 10  # 100 unlabeled / 10 per batch
    assert all(len(b) == 15 and set(b[:5].tolist()) <= set(range(7)) and min(b[5:].tolist()) >= 7 for b in batches)
    seen_unlabeled = torch.cat([b[5:] for b in batches])
    assert sorted(seen_unlabeled.tolist()) == list(range(7, 107))
    counts = np.bincount(torch.cat([b[:5] for b in batches]).numpy(), minlength=7)
    assert counts.min() >= 7 and counts.max() <= 8  # 50 labeled slots over 7 images: every image cycles


def test_two_stream_batches_need_one_full_batch():
    with pytest.raises(ValueError, match="cannot fill one batch"):
        two_stream_batches(torch.arange(3), torch.arange(3, 6), 10, 5, torch.Generator())


def test_labeled_batches_are_one_pass():
    batches = labeled_batches(torch.arange(250), 100, torch.Generator().manual_seed(1))
    assert [len(b) for b in batches] == [100, 100] and len(set(torch.cat(batches).tolist())) == 200


def test_every_stream_is_shuffled_afresh():
    """Stage 1's labeled pass, the unlabeled pass and each cycle of the labeled images are random orders, new
    each epoch (the generator goes on): not the given order, nor one order repeated."""
    g = torch.Generator().manual_seed(0)
    first, second = (torch.cat(labeled_batches(torch.arange(300), 100, g)) for _ in range(2))
    assert not torch.equal(first, torch.arange(300)) and not torch.equal(first, second)
    labeled, unlabeled = torch.arange(0, 20), torch.arange(20, 420)
    epochs = [two_stream_batches(labeled, unlabeled, 30, 10, g) for _ in range(2)]
    streams = [(torch.cat([b[10:] for b in e]), torch.cat([b[:10] for b in e])) for e in epochs]
    assert not torch.equal(streams[0][0], unlabeled) and not torch.equal(streams[0][0], streams[1][0])
    cycles = streams[0][1].reshape(-1, 20)  # 20 batches x 10 labeled slots: 10 passes over the 20 images
    assert all(sorted(c.tolist()) == list(range(20)) for c in cycles)
    assert len({tuple(c.tolist()) for c in cycles}) == len(cycles)  # each pass its own order


def _trainer(method="lp", n=40, classes=4, **overrides):
    overrides = {"amp": False, "channels_last": False, "compile": False, **overrides}
    cfg = make_config("smoke", method=method, labels=8, device="cpu", **overrides)
    model = build_model("cnn13", classes, width=0.125, l2_normalize=method != "mt", two_heads=method == "mt")
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8)
    labels = torch.arange(n) % classes
    labeled = torch.arange(n) < 8
    return Trainer(cfg, model, images, labels, labeled, mean=(0.5,) * 3, std=(0.25,) * 3, aug_kind="cifar",
                   num_classes=classes, device=torch.device("cpu"))


def test_a_state_saved_on_another_kind_of_device_loads_its_augmentation_seeded_from_it():
    """A GPU's generator state (16 bytes: seed, offset) cannot set a CPU's, nor the other way round."""
    state = _trainer().state_dict()
    state["aug_generator"] = torch.arange(16, dtype=torch.uint8)  # as a CUDA generator saves it
    drawn = []
    for _ in range(2):
        trainer = _trainer()
        trainer.load_state_dict(state)
        drawn.append(torch.rand(4, generator=trainer.aug_generator))
    torch.testing.assert_close(drawn[0], drawn[1])  # reproducibly
    assert not torch.equal(drawn[0], torch.rand(4, generator=_trainer().aug_generator))  # not the run's first draws


def test_speed_ups_default_to_off_on_cpu():
    tr = _trainer(amp=None, channels_last=None, compile=None)
    assert (tr.cfg.amp, tr.cfg.channels_last, tr.cfg.compile, tr.cuda_graphs) == (False, False, False, False)
    assert tr.mean.device == tr.images.device and tr.mean.tolist() == [0.5] * 3  # normalisation constants on the device


def test_step_is_the_weighted_cross_entropy_of_eq_12():
    torch.manual_seed(0)
    tr = _trainer()
    tr.model.eval()  # no dropout / BN noise: the loss is a deterministic function of the weights
    images = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    targets = torch.tensor([0, 1, 2, 3, 0, 1])
    weights = torch.tensor([1.0, 0.5, 0.0, 2.0, 0.25, 1.0])
    tr.aug_generator.manual_seed(5)
    loss = tr._step(images, targets, weights)
    x = normalize(augment(images, "cifar", torch.Generator().manual_seed(5)), (0.5,) * 3, (0.25,) * 3)
    with torch.no_grad():
        logits = tr.model(x)[0]
    expected = (weights * F.cross_entropy(logits, targets, reduction="none")).sum() / 6
    torch.testing.assert_close(loss, expected)
    assert all(p.grad is not None for p in tr.model.parameters() if p.requires_grad)


def test_mean_teacher_loss_is_the_consistency_and_logit_distance_of_its_code():
    """CE on the first head; consistency sum (softmax(student's second head) - softmax(teacher))^2 / (c B),
    returned apart; the heads' logit distance sum (z1 - z2)^2 / (c B) x 0.01 (docs/method.md)."""
    torch.manual_seed(0)
    tr = _trainer("mt")
    tr.model.eval()
    tr.teacher.eval()
    images = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    targets, weights = torch.tensor([0, 1, 2, 3, 0, 1]), torch.tensor([1.0, 1.0, 0.0, 0.0, 1.0, 0.0])
    aug, teacher_aug = (draw_augmentation(6, "cifar", torch.Generator().manual_seed(k)) for k in (1, 2))
    loss, consistency = tr._losses(images, aug, targets, weights, teacher_aug)
    with torch.no_grad():
        z1, z2, _ = tr.model(normalize(apply_augmentation(images, "cifar", aug), (0.5,) * 3, (0.25,) * 3))
        zt = tr.teacher(normalize(apply_augmentation(images, "cifar", teacher_aug), (0.5,) * 3, (0.25,) * 3))[0]
    scale = 4 * 6  # c classes x B images
    ce = (weights * F.cross_entropy(z1, targets, reduction="none")).sum() / 6
    torch.testing.assert_close(loss, ce + 0.01 * ((z1 - z2) ** 2).sum() / scale)
    torch.testing.assert_close(consistency, ((z2.softmax(1) - zt.softmax(1)) ** 2).sum() / scale)


@pytest.mark.parametrize("stage", [1, 2])
def test_consistency_weight_ramps_up_in_stage_1_only(stage):
    tr = _trainer("mt", n=200, epochs_stage1=2, epochs_stage2=2, consistency_rampup=5.0, consistency=100.0)
    seen, step = [], tr._step
    tr._step = lambda *args: (seen.append(args[3]), step(*args))[1]
    tr.train_epoch(stage, 1)
    n = len(seen)
    expected = [100.0 * (sigmoid_rampup(1 + i / n, 5.0) if stage == 1 else 1.0) for i in range(n)]
    np.testing.assert_allclose(seen, expected, rtol=1e-12)


def test_test_error_is_top1_and_top5_of_the_predictions(monkeypatch):
    tr = _trainer(classes=7)
    probs = torch.tensor([[.3, .2, .1, .1, .1, .1, .1],   # label 0: top-1 right
                          [.3, .2, .1, .1, .1, .1, .1],   # label 1: top-1 wrong, within the top 5
                          [.4, .3, .2, .05, .03, .01, .01],  # label 6: outside the top 5 (its probability is last)
                          [.1, .1, .1, .1, .1, .1, .4]])  # label 6: right
    monkeypatch.setattr(tr, "predict", lambda model, images, aug: (None, probs))
    assert tr.test_error(None, torch.tensor([0, 1, 6, 6])) == (50.0, 25.0)
    probs = torch.eye(7)[torch.arange(10) % 7]
    monkeypatch.setattr(tr, "predict", lambda model, images, aug: (None, probs))
    assert tr.test_error(None, (torch.arange(10) % 7 + 1) % 7)[0] == 100.0  # all wrong
    assert tr.test_error(None, torch.tensor([0, 1, 2, 3, 4, 5, 6, 0, 1, 3]))[0] == 10.0  # not float32's 10.000000149


@pytest.mark.parametrize("method", ["lp", "mt"])
def test_training_step_compiles_as_one_graph(method):
    """On CUDA the step is one CUDA graph: augmentation, network(s) and losses must trace without a break."""
    torch.manual_seed(0)
    tr = _trainer(method)
    tr.model.eval()
    if tr.teacher is not None:
        tr.teacher.eval()
    images = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    args = (images, draw_augmentation(6, "cifar", torch.Generator().manual_seed(1)), torch.tensor([0, 1, 2, 3, -1, -1]),
            torch.rand(6), draw_augmentation(6, "cifar", torch.Generator().manual_seed(2)) if method == "mt" else None)
    eager = tr._losses(*args)
    compiled = torch.compile(tr._losses, backend="aot_eager", fullgraph=True)(*args)
    torch.testing.assert_close(compiled, eager)
    assert (eager[1] is None) == (method == "lp")


def test_mean_teacher_ema_update():
    tr = _trainer("mt")
    with torch.no_grad():
        for p in tr.model.parameters():
            p.add_(1.0)
    for _ in range(3):
        tr._update_teacher()
    # steps 1..3: decay min(1 - 1/step, 0.97) = 0, 0.5, 0.667: the teacher equals the student after the first
    for t, s in zip(tr.teacher.parameters(), tr.model.parameters()):
        torch.testing.assert_close(t, s)
    tr.ema_steps = 1000
    with torch.no_grad():
        for p in tr.model.parameters():
            p.add_(1.0)
    old = [t.clone() for t in tr.teacher.parameters()]
    tr._update_teacher()
    for t, o, s in zip(tr.teacher.parameters(), old, tr.model.parameters()):
        torch.testing.assert_close(t, 0.97 * o + 0.03 * s)


def test_refresh_pseudo_labels_applies_omega_and_zeta_switches():
    torch.manual_seed(0)
    tr = _trainer("lp")
    pl, probs, _, _ = tr.refresh_pseudo_labels()
    assert probs.shape == (40, 4)
    np.testing.assert_array_equal(tr.targets.numpy()[:8], (np.arange(8) % 4))  # labeled keep their label
    expected = pl.weights * pl.class_weights[pl.pseudo_labels]
    np.testing.assert_allclose(tr.loss_weights.numpy(), expected, rtol=1e-6)
    tr.cfg = make_config("smoke", method="lp", labels=8, use_omega=False, use_zeta=False, device="cpu", amp=False,
                         channels_last=False, compile=False)
    tr.refresh_pseudo_labels()
    np.testing.assert_array_equal(tr.loss_weights.numpy(), np.ones(40))


@pytest.mark.parametrize("method, labeller", [("lp", "propagate"), ("gtg", "gtg_pseudo_labels")])
def test_refresh_passes_the_configured_graph_and_solver_settings(monkeypatch, method, labeller):
    import lpnb.train

    seen = []
    original = getattr(lpnb.train, labeller)
    monkeypatch.setattr(lpnb.train, labeller, lambda *a, **kw: seen.append(kw) or original(*a, **kw))
    settings = dict(k=7, gamma=2.0, knn="approx", **({"alpha": 0.9, "cg_iters": 5} if method == "lp" else {}))
    _trainer(method, **settings).refresh_pseudo_labels()
    renamed = {"cg_iters": "max_iter"}
    assert len(seen) == 1 and {renamed.get(f, f): seen[0].get(renamed.get(f, f)) for f in settings} == {
        renamed.get(f, f): v for f, v in settings.items()}


def test_the_mean_teacher_trains_in_training_mode_as_the_student():
    """Mean Teacher's code runs the teacher in train mode (its dropout on): its targets are noisy too."""
    tr = _trainer("mt")
    tr.teacher.eval()
    tr.train_epoch(1, 0)
    assert tr.teacher.training and tr.model.training


@pytest.mark.parametrize("use_omega", [True, False])
def test_a_point_without_scores_gets_no_weight_with_or_without_omega(monkeypatch, use_omega):
    """An isolated point's all-zero score row has no pseudo-label (its argmax, 0, is no class): it must not be
    trained as class 0 when the omega ablation sets the other weights to 1."""
    import lpnb.train

    def isolated_first_unlabeled(*args, **kwargs):
        pl = propagate(*args, **kwargs)
        pl.scores[8] = 0
        pl.pseudo_labels[8], pl.weights[8], pl.scored[8] = 0, 0.0, False
        return pl
    propagate = lpnb.train.propagate
    monkeypatch.setattr(lpnb.train, "propagate", isolated_first_unlabeled)
    tr = _trainer("lp", use_omega=use_omega)
    pl, _, _, _ = tr.refresh_pseudo_labels()
    omega = pl.weights if use_omega else np.r_[np.ones(8), 0, np.ones(31)]
    np.testing.assert_allclose(tr.loss_weights.numpy(), omega * pl.class_weights[pl.pseudo_labels], rtol=1e-6)


def test_omega_histogram_and_confident_mistakes():
    pseudo = np.array([0, 1, 1, 0, 1, 0, 0])
    scores = np.eye(2, dtype=np.float32)[pseudo]
    scores[5:] = 0  # points the graph left without scores: class 0, weight 0, no pseudo-label
    pl = PseudoLabels(pseudo_labels=pseudo, weights=np.array([1.0, 0.92, 0.2, 0.75, 0.95, 0.0, 0.0], np.float32),
                      class_weights=np.ones(2, np.float32), scores=scores)  # scored: the positive weights
    labels = np.array([0, 1, 0, 1, 1, 0, 1])
    labeled = np.array([True, False, False, False, False, False, False])
    h = omega_histogram(pl, labels, labeled, bins=10)
    assert sum(h["correct"]) == 2 and sum(h["incorrect"]) == 4  # unlabeled only; no scores: not a correct label
    assert h["incorrect"][0] == 2 and h["incorrect"][2] == 1 and h["incorrect"][7] == 1 and h["correct"][9] == 2
    wrong = confident_mistakes(pl, labels, labeled, train_index=np.arange(10, 17), top=5)
    assert [w["index"] for w in wrong] == [13, 12] and wrong[0]["pseudo_label"] == 0 and wrong[0]["label"] == 1
    # 16 (label 1, no scores, so the pseudo-label 0 it is given) is no mistake: it has no pseudo-label


@pytest.mark.parametrize("stage, epoch", [(1, 0), (2, 1)])
def test_train_epoch_applies_the_per_iteration_cosine_schedule(stage, epoch):
    """lr * 0.5 (1 + cos(pi t / 210)) for 180 epochs, here scaled to the smoke preset's 2: the rate of every step
    at its fractional epoch t (sec. 5.2), as the optimiser sees it."""
    tr = _trainer(n=200, epochs_stage1=2, epochs_stage2=2)
    rates, step = [], tr.optimizer.step
    tr.optimizer.step = lambda: (rates.append(tr.optimizer.param_groups[0]["lr"]), step())
    tr.train_epoch(stage, epoch)
    n = len(rates)
    assert n == (1 if stage == 1 else 6)  # 8 labeled images in one batch; 192 unlabeled in batches of 32
    rampdown = 2 * 210 / 180
    expected = [tr.cfg.lr * 0.5 * (1 + math.cos(math.pi * (epoch + i / n) / rampdown)) for i in range(n)]
    np.testing.assert_allclose(rates, expected, rtol=1e-12)
