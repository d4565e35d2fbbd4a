"""Input adaptation: a first convolution trained on C channels used on C' channels.

    3 -> 1  sum the filters over the input channels: on a grey image (R = G = B = g)
            the summed filter gives exactly the response the RGB filter gave,
            sum_c w_c * g (timm's `adapt_input_conv` does the same)
    1 -> 3  repeat the filter on each channel and divide by 3: on a grey RGB image
            the response is unchanged, (w / 3) * 3g
    C -> C' otherwise: repeat the filters cyclically to C' channels and scale by
            C / C', so that the response to a constant image is kept

Normalisation is the target data's (its own mean and std per channel), so a
grey pixel at the data's mean reaches the first layer as 0, as it did at the source.
"""
from __future__ import annotations

import math

import torch
from torch import nn


def first_conv(model: nn.Module) -> tuple[str, nn.Conv2d]:
    """The first Conv2d (registration order) that reads the image: its in_channels == model.in_chans."""
    want = getattr(model, "in_chans", None)
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d) and (want is None or m.in_channels == want):
            return name, m
    raise ValueError(f"{type(model).__name__} has no convolution reading {want} input channels; "
                     f"input adaptation needs one")


def adapt_weight(weight: torch.Tensor, in_chans: int) -> torch.Tensor:
    """(O, C, kh, kw) filters -> (O, in_chans, kh, kw), per the table in the module docstring."""
    c = weight.shape[1]
    if in_chans == c:
        return weight.clone()
    if in_chans == 1:
        return weight.sum(dim=1, keepdim=True)
    reps = math.ceil(in_chans / c)
    return weight.repeat(1, reps, 1, 1)[:, :in_chans] * (c / in_chans)


def adapt_input_channels(model: nn.Module, in_chans: int) -> nn.Module:
    """Make `model` read `in_chans`-channel images, in place; returns it.

    Updates the first convolution (a new Conv2d with the adapted filters),
    `model.in_chans` and `model.default_input_size`. Grouped first layers are refused.
    """
    name, conv = first_conv(model)
    if conv.in_channels == in_chans:
        return model
    if conv.groups != 1:
        raise ValueError(f"cannot adapt {name} of {type(model).__name__} to {in_chans} channels: it is a "
                         f"grouped convolution (groups={conv.groups})")
    new = nn.Conv2d(in_chans, conv.out_channels, conv.kernel_size, stride=conv.stride, padding=conv.padding,
                    dilation=conv.dilation, bias=conv.bias is not None, padding_mode=conv.padding_mode)
    with torch.no_grad():
        new.weight.copy_(adapt_weight(conv.weight.detach(), in_chans))
        if conv.bias is not None:
            new.bias.copy_(conv.bias.detach())  # a constant per filter: the same at any channel count
    new.to(conv.weight.device)
    parent_name, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, attr, new)
    if hasattr(model, "in_chans"):
        model.in_chans = in_chans
    size = getattr(model, "default_input_size", None)
    if size is not None:
        model.default_input_size = (in_chans, *tuple(size)[1:])
    return model
