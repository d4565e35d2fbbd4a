"""Transfer learning: fine-tuning and the layer-transferability experiment.

    finetune("runs/fashion", "mnist", "runs/ft", freeze=1)        # -> Path of an ordinary run
    finetune("torchvision:resnet18", "cifar10", "runs/r18", freeze="all")
    stages(model)                                                 # the units --freeze/--reinit count
    transfer_vs_scratch(...), transferability(...)                # the two experiments

See docs/transfer.md.
"""
from __future__ import annotations

from convscope.transfer.adapt import adapt_input_channels, adapt_weight
from convscope.transfer.api import finetune
from convscope.transfer.finetune import Plan, fit_plan, param_groups, prepare
from convscope.transfer.sources import Source, from_run, from_torchvision, load_source
from convscope.transfer.stages import Stage, head, stages

__all__ = ["finetune", "prepare", "fit_plan", "param_groups", "Plan", "Source", "load_source", "from_run",
           "from_torchvision", "stages", "head", "Stage", "adapt_input_channels", "adapt_weight"]
