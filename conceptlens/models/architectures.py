"""Model architectures that ConceptLens itself defines.

Weights-only files (safetensors, ``torch.save`` state dicts) carry no code, so they can
only be loaded into an architecture that lives here. Each one is registered in
:data:`ARCHITECTURES` under a stable key that files record as their architecture name.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

__all__ = [
    "ARCHITECTURES",
    "ArchitectureSpec",
    "DigitCNN",
    "ResidualBlock",
    "SmallResNet",
    "SmallVGG",
]


class DigitCNN(nn.Module):
    """A small CNN for 16×16 grayscale digits: ``[B, 1, 16, 16]`` in [0, 1] → ``[B, 10]`` logits.

    Layout (submodule names are stable, later code picks intermediate layers by them)::

        conv1 (1→16, 3×3, pad 1) → relu1 → pool1 (2×2)   # [B, 16, 8, 8]
        conv2 (16→32, 3×3, pad 1) → relu2 → pool2 (2×2)  # [B, 32, 4, 4]
        flatten → fc1 (512→64) → relu3 → fc2 (64→10)      # [B, 10]

    Cost: about 0.37 M multiply-adds per image (conv2 is 80% of them) and 38,282
    parameters; the 2^16 masked inputs of a 16-player Harsanyi game took about 6 s on
    two shared CPU cores.

    Example:
        >>> DigitCNN()(torch.zeros(2, 1, 16, 16)).shape
        torch.Size([2, 10])
    """

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, kernel_size=3, padding=1)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(16, 32, kernel_size=3, padding=1)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(32 * 4 * 4, 64)
        self.relu3 = nn.ReLU()
        self.fc2 = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.relu1(self.conv1(x)))
        x = self.pool2(self.relu2(self.conv2(x)))
        x = self.relu3(self.fc1(self.flatten(x)))
        return self.fc2(x)


class SmallVGG(nn.Module):
    """A small VGG-style CNN for 32×32 colour images: ``[B, 3, 32, 32]`` → ``[B, 10]`` logits.

    Stacks of 3×3 convolutions with ReLU, halved by max pooling, then two linear layers;
    no normalisation layers, so every image's output depends on that image alone (the
    order losses run masked copies of a batch through the model beside the batch itself).
    Layout (stable submodule names)::

        conv1 (3→16) → relu1 → conv2 (16→16) → relu2 → pool1 (2×2)   # [B, 16, 16, 16]
        conv3 (16→32) → relu3 → conv4 (32→32) → relu4 → pool2 (2×2)  # [B, 32, 8, 8]
        conv5 (32→64) → relu5 → pool3 (2×2)                           # [B, 64, 4, 4]
        flatten → fc1 (1024→64) → relu6 → fc2 (64→10)                 # [B, 10]

    All convolutions are 3×3 with padding 1. Cost: about 7.6 M multiply-adds per image
    (conv2 and conv4 are 2.4 M each) and 101,402 parameters — about 20× the digits CNN's
    compute per image, trainable on a CPU for small image sets.

    Example:
        >>> SmallVGG()(torch.zeros(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, kernel_size=3, padding=1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(16, 16, kernel_size=3, padding=1)
        self.relu2 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)
        self.conv3 = nn.Conv2d(16, 32, kernel_size=3, padding=1)
        self.relu3 = nn.ReLU()
        self.conv4 = nn.Conv2d(32, 32, kernel_size=3, padding=1)
        self.relu4 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2)
        self.conv5 = nn.Conv2d(32, 64, kernel_size=3, padding=1)
        self.relu5 = nn.ReLU()
        self.pool3 = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(64 * 4 * 4, 64)
        self.relu6 = nn.ReLU()
        self.fc2 = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.relu2(self.conv2(self.relu1(self.conv1(x)))))
        x = self.pool2(self.relu4(self.conv4(self.relu3(self.conv3(x)))))
        x = self.pool3(self.relu5(self.conv5(x)))
        x = self.relu6(self.fc1(self.flatten(x)))
        return self.fc2(x)


class ResidualBlock(nn.Module):
    """Two 3×3 convolutions with GroupNorm and a skip connection (ResNet's basic block).

    ``conv1 (stride s) → norm1 → relu1 → conv2 → norm2``, plus ``shortcut`` (the identity,
    or when the shape changes ``shortcut.conv``, a strided 1×1 convolution, then
    ``shortcut.norm``), then ``relu2``.
    GroupNorm (4 groups) normalises each image on its own, the same in train and eval mode.
    """

    def __init__(self, inputs: int, outputs: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inputs, outputs, 3, stride=stride, padding=1, bias=False)
        self.norm1 = nn.GroupNorm(4, outputs)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(outputs, outputs, 3, padding=1, bias=False)
        self.norm2 = nn.GroupNorm(4, outputs)
        self.shortcut: nn.Module = (
            nn.Identity()
            if stride == 1 and inputs == outputs
            else nn.Sequential(
                OrderedDict(
                    conv=nn.Conv2d(inputs, outputs, 1, stride=stride, bias=False),
                    norm=nn.GroupNorm(4, outputs),
                )
            )
        )
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.norm2(self.conv2(self.relu1(self.norm1(self.conv1(x)))))
        return self.relu2(out + self.shortcut(x))


class SmallResNet(nn.Module):
    """A small ResNet-style CNN for 32×32 colour images: ``[B, 3, 32, 32]`` → ``[B, 10]``.

    Layout (stable submodule names; blocks are :class:`ResidualBlock`)::

        conv1 (3→16, 3×3, pad 1) → norm1 (GroupNorm) → relu1   # [B, 16, 32, 32]
        layer1: block 16→16, stride 1                           # [B, 16, 32, 32]
        layer2: block 16→32, stride 2 (1×1 shortcut)            # [B, 32, 16, 16]
        layer3: block 32→64, stride 2 (1×1 shortcut)            # [B, 64, 8, 8]
        pool (global average) → flatten → fc (64→10)            # [B, 10]

    GroupNorm instead of BatchNorm: no batch statistics, so a masked copy of an image (the
    order losses, the interaction games) is processed exactly as it would be alone, in
    train and eval mode. Cost: about 12.5 M multiply-adds per image (layer1 is 4.7 M) and
    78,042 parameters.

    Example:
        >>> SmallResNet()(torch.zeros(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, kernel_size=3, padding=1, bias=False)
        self.norm1 = nn.GroupNorm(4, 16)
        self.relu1 = nn.ReLU()
        self.layer1 = ResidualBlock(16, 16)
        self.layer2 = ResidualBlock(16, 32, stride=2)
        self.layer3 = ResidualBlock(32, 64, stride=2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.norm1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(self.flatten(self.pool(x)))


@dataclass(frozen=True)
class ArchitectureSpec:
    """How to build one registered architecture and what it consumes and produces.

    Attributes:
        name: registry key, also stored in weight files (``conceptlens_architecture``).
        build: returns a freshly initialised module (random weights, train mode).
        input_shape: ``(C, H, W)`` of one input image.
        num_classes: number of logits the module returns.
    """

    name: str
    build: Callable[[], nn.Module]
    input_shape: tuple[int, int, int]
    num_classes: int


ARCHITECTURES: dict[str, ArchitectureSpec] = {
    "digit_cnn": ArchitectureSpec(
        name="digit_cnn", build=DigitCNN, input_shape=(1, 16, 16), num_classes=10
    ),
    "small_vgg": ArchitectureSpec(
        name="small_vgg", build=SmallVGG, input_shape=(3, 32, 32), num_classes=10
    ),
    "small_resnet": ArchitectureSpec(
        name="small_resnet", build=SmallResNet, input_shape=(3, 32, 32), num_classes=10
    ),
}
"""Registered architectures by name."""
