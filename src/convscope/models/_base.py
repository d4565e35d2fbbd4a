"""The model contract every convscope network follows (timm's, in short).

    forward(x) == forward_head(forward_features(x))
    reset_classifier(num_classes)  # a new head, the body untouched
    num_features                   # width of the features the head reads
    default_input_size             # (C, H, W) the network was designed for
"""
from __future__ import annotations

import torch
from torch import nn


def check_input(x: torch.Tensor, in_chans: int) -> None:
    """A clear error for the most common mistake: the wrong number of channels."""
    if x.dim() != 4:
        raise ValueError(f"expected a batch of images (N, C, H, W), got a tensor of shape {tuple(x.shape)}")
    if x.shape[1] != in_chans:
        raise ValueError(
            f"the model expects {in_chans} input channel(s) but the input has {x.shape[1]}; "
            f"build it with in_chans={x.shape[1]} or convert the images"
        )


class Classifier(nn.Module):
    """Base class: subclasses set `self.in_chans`, `self.num_features`,
    `self.default_input_size`, and implement `forward_features`, `forward_head`
    and `reset_classifier`."""

    in_chans: int = 3
    num_features: int
    default_input_size: tuple[int, int, int] = (3, 224, 224)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def reset_classifier(self, num_classes: int) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.in_chans)
        return self.forward_head(self.forward_features(x))


class ConvFCNet(Classifier):
    """A conv stack `features`, then `avgpool` and the fc6-fc7-fc8 `classifier`
    (AlexNet and VGG: ILSVRC 2012-2014). Subclasses build those three modules and
    set `head_hidden_size` (fc7's width)."""

    features: nn.Sequential
    avgpool: nn.Module
    classifier: nn.Sequential
    head_hidden_size: int = 4096

    def reference_key(self, our_key: str) -> str:
        """`features.conv2_1.weight` -> `features.5.weight`: torchvision numbers the layers
        of its Sequentials; ours carry the paper's names in the same order."""
        container, name, rest = our_key.split(".", 2)
        index = list(getattr(self, container)._modules).index(name)
        return f"{container}.{index}.{rest}"

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)  # (N, C, 6, 6) for AlexNet, (N, 512, 7, 7) for VGG at the native size

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = torch.flatten(self.avgpool(x), 1)
        for name, layer in self.classifier.named_children():
            if name == "fc8" and pre_logits:
                break
            x = layer(x)
        return x  # (N, 4096) with pre_logits, else (N, num_classes)

    def reset_classifier(self, num_classes: int) -> None:
        self.classifier.fc8 = nn.Linear(self.head_hidden_size, num_classes)


def rename_prefix(key: str, table: dict[str, str]) -> str:
    """Map a state-dict key through `table` (our module path -> the reference's),
    using the longest module path that is a prefix of `key`."""
    parts = key.split(".")
    for cut in range(len(parts), 0, -1):
        head = ".".join(parts[:cut])
        if head in table:
            return ".".join([table[head], *parts[cut:]])
    return key


class InceptionHead(Classifier):
    """What Inception-v4 and Inception-ResNet-v2 share after the body: global average
    pooling, dropout (keep 0.8) and `last_linear`, and timm's key names via
    `self._reference_names` (set by the subclass)."""

    num_features: int = 1536
    _reference_names: dict[str, str]

    def reference_key(self, our_key: str) -> str:
        """Our state-dict key -> timm's (`inception_a.0.branch0...` -> `features.6.branch0...`)."""
        return rename_prefix(our_key, self._reference_names)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.head_drop(torch.flatten(self.global_pool(x), 1))  # (N, 1536)
        return x if pre_logits else self.last_linear(x)

    def reset_classifier(self, num_classes: int) -> None:
        old = self.last_linear.weight
        self.last_linear = nn.Linear(self.num_features, num_classes, device=old.device, dtype=old.dtype)
