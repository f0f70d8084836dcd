import pytest
import torch
import torch.nn.functional as F

from lpnb.models import build_model


def num_parameters(model):
    return sum(p.numel() for p in model.parameters())


def test_cnn13_matches_the_paper_network():
    model = build_model("cnn13", 10)
    assert num_parameters(model) == 3_125_908  # docs/method.md; the authors' network
    assert num_parameters(build_model("cnn13", 10, width=0.25)) == 197_812  # the cpu preset's
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 9 and all(hasattr(m, "parametrizations") for m in convs)  # 9 conv + ... all weight-normalised
    assert [c.kernel_size[0] for c in convs] == [3] * 7 + [1, 1] and convs[6].padding == (0, 0)
    model.eval()
    logits, aux, v = model(torch.randn(4, 3, 32, 32))
    assert logits.shape == (4, 10) and aux is None and v.shape == (4, 128)
    torch.testing.assert_close(v.norm(dim=1), torch.ones(4))


def test_cnn13_computes_the_13_layer_network_written_out_layer_by_layer():
    """The network of Laine & Aila as Mean Teacher builds it, from the model's own weights with torch's functions:
    3 x (conv 3x3, BN, LeakyReLU 0.1), max-pool 2, dropout 0.5, the same at twice the channels, conv 3x3 unpadded,
    conv 1x1, conv 1x1 (each with BN and LeakyReLU 0.1), global average pool, the l2 layer, the linear head."""
    torch.manual_seed(0)
    model = build_model("cnn13", 10, width=0.25).eval()
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    with torch.no_grad():  # statistics and affine parameters that are not the identity
        for bn in norms:
            bn.running_mean.uniform_(-0.5, 0.5), bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(0.5, 1.5), bn.bias.uniform_(-0.5, 0.5)
    x = torch.randn(2, 3, 32, 32)
    h = x
    for i, (conv, bn) in enumerate(zip(convs, norms, strict=True)):
        h = F.conv2d(h, conv.weight, conv.bias, padding=1 if i < 6 else 0)
        h = F.leaky_relu(F.batch_norm(h, bn.running_mean, bn.running_var, bn.weight, bn.bias, eps=bn.eps), 0.1)
        if i in (2, 5):
            h = F.max_pool2d(h, 2)  # dropout: the identity in eval mode
    v = F.normalize(h.mean((2, 3)), dim=1)
    logits, _, descriptor = model(x)
    torch.testing.assert_close(descriptor, v)
    torch.testing.assert_close(logits, F.linear(v, model.head.weight, model.head.bias))
    layers = list(model.backbone.features)
    after_pooling = [layers[i + 1] for i, m in enumerate(layers) if isinstance(m, torch.nn.MaxPool2d)]
    assert [(type(m), m.p) for m in after_pooling] == [(torch.nn.Dropout, 0.5)] * 2


def test_mean_teacher_variant_has_two_heads_and_no_l2_layer():
    model = build_model("cnn13", 100, width=0.125, l2_normalize=False, two_heads=True).eval()
    logits, aux, v = model(torch.randn(3, 3, 32, 32))
    assert logits.shape == aux.shape == (3, 100) and v.shape == (3, 16)
    assert not torch.allclose(v.norm(dim=1), torch.ones(3))
    assert not torch.allclose(logits, aux)


def test_width_multiplier_and_grayscale_input():
    model = build_model("cnn13", 10, width=0.25, in_channels=1).eval()
    _, _, v = model(torch.randn(2, 1, 28, 28))
    assert v.shape == (2, 32)
    assert num_parameters(model) < num_parameters(build_model("cnn13", 10)) / 10


def test_resnet18_on_84px_images():
    model = build_model("resnet18", 100).eval()
    logits, _, v = model(torch.randn(2, 3, 84, 84))
    assert logits.shape == (2, 100) and v.shape == (2, 512)
    logits, _, v = build_model("resnet18", 10, in_channels=1).eval()(torch.randn(2, 1, 84, 84))  # grayscale
    assert logits.shape == (2, 10) and v.shape == (2, 512)


def test_bad_arch_and_width():
    with pytest.raises(ValueError, match="unknown arch"):
        build_model("vgg", 10)
    with pytest.raises(ValueError, match="width"):
        build_model("resnet18", 10, width=0.5)
