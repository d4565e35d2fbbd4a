"""Training, evaluation and run directories.

    train(model="lenet5", data="mnist", out="runs/x", recipe="mnist-fast") -> Path
    fit(model, dataset, TrainConfig(...), out, param_groups=..., frozen_modules=...)
    evaluate(run_or_model, data, split="test") -> {"top1", "top5", "per_class", "n", "confusion"}
"""
from __future__ import annotations

from convscope.train.api import train
from convscope.train.config import RECIPES, TrainConfig, make_config
from convscope.train.evaluation import evaluate
from convscope.train.loop import Interrupted, TrainingDiverged, fit
from convscope.train.metrics import topk_accuracy

__all__ = ["train", "fit", "evaluate", "topk_accuracy", "TrainConfig", "make_config", "RECIPES",
           "TrainingDiverged", "Interrupted"]
