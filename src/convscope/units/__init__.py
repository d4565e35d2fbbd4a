"""What a unit sees: top dataset patches, optimised images, orientation tuning, the layer hierarchy.

    >>> from convscope.units import load_target, top_patches, visualize, tune
    >>> t = load_target("runs/mnist-fast")                  # a run folder, or a zoo name
    >>> hits = top_patches(t, images, "conv2", k=9)          # {channel: [Hit(index, y, x, activation)]}
    >>> imgs, acts, where = visualize(t, "conv2", [0, 1])    # optimised images, their peak activation
    >>> tune(t, "conv1").units()                             # preferred orientation and OSI per channel

`convscope units` and `convscope tuning` (docs/units.md) are the command-line face.
"""
from convscope.units.optimize import Settings, visualize
from convscope.units.patches import Hit, crop, top_patches
from convscope.units.target import Target, from_module, load_target
from convscope.units.tuning import Tuning, osi, tune

__all__ = ["Settings", "visualize", "Hit", "crop", "top_patches", "Target", "from_module", "load_target",
           "Tuning", "osi", "tune"]
