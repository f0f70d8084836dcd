"""Networks of the paper (sec. 5.2): the "13-layer" CNN for CIFAR and ResNet-18 for Mini-ImageNet.

Both are a feature extractor phi_theta followed by a fully connected classifier (sec. 3,
"Classifier"). Without Mean Teacher an l2-normalisation layer sits between the two, so the
descriptor v_i = phi_theta(x_i) is a unit vector (used for the graph of eq. 9); the Mean
Teacher variants drop it and get a second classifier head (the "dual output trick").

`forward(x)` returns `(logits, aux_logits, descriptor)`: `aux_logits` is None without the
second head; `descriptor` is the vector that feeds the classifier (l2-normalised when the
l2 layer is on).
"""
import torch.nn.functional as F
import torchvision
from torch import nn
from torch.nn.utils.parametrizations import weight_norm


def _conv_bn(c_in, c_out, kernel, padding):
    return [weight_norm(nn.Conv2d(c_in, c_out, kernel, padding=padding)), nn.BatchNorm2d(c_out), nn.LeakyReLU(0.1)]


class CNN13(nn.Module):
    """The "13-layer" network of Laine & Aila / Mean Teacher, weight-normalised (~3.1M parameters at width 1).

    `width` scales every channel count (0.25 gives a small network for CPU runs); the descriptor
    has 128 * width dimensions. Images must be MIN_SIZE pixels or more a side (two 2x2 poolings, then
    an unpadded 3x3 convolution).
    """
    MIN_SIZE = 12

    def __init__(self, width=1.0, in_channels=3):
        super().__init__()
        c1, c2, c3 = (max(1, round(c * width)) for c in (128, 256, 512))
        self.features = nn.Sequential(
            *_conv_bn(in_channels, c1, 3, 1), *_conv_bn(c1, c1, 3, 1), *_conv_bn(c1, c1, 3, 1),
            nn.MaxPool2d(2), nn.Dropout(0.5),
            *_conv_bn(c1, c2, 3, 1), *_conv_bn(c2, c2, 3, 1), *_conv_bn(c2, c2, 3, 1),
            nn.MaxPool2d(2), nn.Dropout(0.5),
            *_conv_bn(c2, c3, 3, 0), *_conv_bn(c3, c2, 1, 0), *_conv_bn(c2, c1, 1, 0),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.dim = c1

    def forward(self, x):
        return self.features(x)


class ResNet18(nn.Module):
    """torchvision's ResNet-18 trunk (512-d descriptor) for 84x84 Mini-ImageNet images."""

    def __init__(self, in_channels=3):
        super().__init__()
        self.trunk = torchvision.models.resnet18(weights=None)
        if in_channels != 3:
            self.trunk.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        self.trunk.fc = nn.Identity()
        self.dim = 512

    def forward(self, x):
        return self.trunk(x)


class Classifier(nn.Module):
    """phi_theta + [l2 layer] + weight-normalised linear head(s): f_theta of sec. 3."""

    def __init__(self, backbone, num_classes, *, l2_normalize=True, two_heads=False):
        super().__init__()
        self.backbone = backbone
        self.l2_normalize = l2_normalize
        self.head = weight_norm(nn.Linear(backbone.dim, num_classes))
        self.aux_head = weight_norm(nn.Linear(backbone.dim, num_classes)) if two_heads else None

    def forward(self, x):
        v = self.backbone(x)
        if self.l2_normalize:
            v = F.normalize(v, dim=1)
        aux = self.aux_head(v) if self.aux_head is not None else None
        return self.head(v), aux, v


def build_model(arch, num_classes, *, width=1.0, in_channels=3, l2_normalize=True, two_heads=False):
    """`arch` is "cnn13" (CIFAR, Fashion-MNIST) or "resnet18" (Mini-ImageNet; no width multiplier)."""
    if arch == "cnn13":
        backbone = CNN13(width, in_channels)
    elif arch == "resnet18":
        if width != 1.0:
            raise ValueError("resnet18 has no width multiplier: use width=1.0, or arch='cnn13' for small runs")
        backbone = ResNet18(in_channels)
    else:
        raise ValueError(f"unknown arch {arch!r}: use 'cnn13' or 'resnet18'")
    return Classifier(backbone, num_classes, l2_normalize=l2_normalize, two_heads=two_heads)
