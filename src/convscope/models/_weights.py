"""Copy weights from a torchvision or timm module into the matching convscope model.

A model may define `reference_key(our_key) -> str` to map its state-dict keys to
the reference's; without it the keys must be the same. Every tensor of ours
must find a reference tensor of the same shape, and every reference tensor
must be used: otherwise the error names the first one that does not fit.
"""
from __future__ import annotations

import torch
from torch import nn


def import_weights(model: nn.Module, reference_module: nn.Module) -> nn.Module:
    ours = model.state_dict()
    theirs = reference_module.state_dict()
    key_of = getattr(model, "reference_key", lambda k: k)
    new_state: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    for key, tensor in ours.items():
        ref_key = key_of(key)
        if ref_key not in theirs:
            raise ValueError(
                f"cannot import weights: our tensor {key!r} {tuple(tensor.shape)} has no counterpart "
                f"{ref_key!r} in the reference {type(reference_module).__name__}; is it the same architecture?"
            )
        ref = theirs[ref_key]
        if ref.shape != tensor.shape:
            raise ValueError(
                f"cannot import weights: {key!r} has shape {tuple(tensor.shape)} but the reference's "
                f"{ref_key!r} has {tuple(ref.shape)}"
            )
        new_state[key] = ref.detach().clone()
        used.add(ref_key)
    unused = [k for k in theirs if k not in used]
    if unused:
        raise ValueError(
            f"cannot import weights: the reference's tensor {unused[0]!r} {tuple(theirs[unused[0]].shape)} "
            f"has no place in {type(model).__name__} ({len(unused)} unused in all)"
        )
    model.load_state_dict(new_state)
    return model
