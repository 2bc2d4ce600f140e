"""A ResNet-18 in pure torch (torchvision is not installable here), for benchmarks.

Same architecture and parameter count as ``torchvision.models.resnet18`` (BasicBlock, layers
[2, 2, 2, 2], 64-128-256-512 channels, 1000 classes, 3x224x224 input: 11,689,512 parameters),
with random, seeded weights: the figures it gives are about speed, never accuracy.

    from bench.resnet18 import resnet18, example_input
    model = resnet18(seed=0)          # eval mode
    x = example_input(batch=1)        # float32 (1, 3, 224, 224)

``python bench/resnet18.py`` prints the parameter count (and checks one forward pass).
"""

from __future__ import annotations

import torch
from torch import nn

INPUT_SHAPE = (3, 224, 224)
NUM_CLASSES = 1000
LAYERS = (2, 2, 2, 2)
WIDTHS = (64, 128, 256, 512)


def conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers and a residual connection (1x1 conv-BN shortcut when the shape changes)."""

    expansion = 1

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = conv3x3(cin, cout, stride)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(cout, cout)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = (
            nn.Sequential(conv1x1(cin, cout, stride), nn.BatchNorm2d(cout)) if stride != 1 or cin != cout else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    def __init__(
        self, layers: tuple[int, ...] = LAYERS, widths: tuple[int, ...] = WIDTHS, num_classes: int = NUM_CLASSES
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, widths[0], kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        stages, cin = [], widths[0]
        for i, (n, w) in enumerate(zip(layers, widths)):
            blocks = [BasicBlock(cin, w, stride=1 if i == 0 else 2)]
            blocks += [BasicBlock(w, w) for _ in range(n - 1)]
            stages.append(nn.Sequential(*blocks))
            cin = w
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _init_weights(model: nn.Module) -> None:
    """torchvision's initialisation: Kaiming-normal convs, BN weight 1 / bias 0, default Linear."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def resnet18(num_classes: int = NUM_CLASSES, seed: int = 0, eval_mode: bool = True) -> ResNet:
    """ResNet-18 with random weights drawn from ``seed`` (the global torch RNG is left untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ResNet(num_classes=num_classes)
        _init_weights(model)
    return model.eval() if eval_mode else model


def example_input(batch: int = 1, seed: int = 0) -> torch.Tensor:
    """A seeded random float32 input of shape (batch, 3, 224, 224)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, *INPUT_SHAPE, generator=g, dtype=torch.float32)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def main() -> None:
    model = resnet18()
    n = count_parameters(model)
    print(f"ResNet-18 (pure torch): {n:,} parameters ({n / 1e6:.2f}M)")
    with torch.inference_mode():
        y = model(example_input(1))
    print(f"forward: input (1, {', '.join(map(str, INPUT_SHAPE))}) -> output {tuple(y.shape)}")


if __name__ == "__main__":
    main()
