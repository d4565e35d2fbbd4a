"""In-memory batches: a split's uint8 images live on the device as one tensor;
a batch is an index, a cast, an augmentation and a normalisation, all batched."""
from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from convscope.predictor import main_logits
from convscope.train import augment as aug
from convscope.train.metrics import confusion_matrix, topk_correct
from convscope.train.runtime import Runtime, all_sum


class Batches:
    def __init__(self, split: Any, mean: Sequence[float], std: Sequence[float], device: torch.device,
                 spec: aug.AugmentSpec | None = None) -> None:
        images, labels = torch.as_tensor(split.images), torch.as_tensor(split.labels)
        if images.dim() != 4:
            raise ValueError(f"dataset images must be (N, C, H, W) uint8, got shape {tuple(images.shape)}")
        self.images = images.to(device)                    # (N, C, H, W) uint8
        self.labels = labels.long().to(device)             # (N,)
        c = images.shape[1]
        mean_t = torch.as_tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1).expand(1, c, 1, 1)
        std_t = torch.as_tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1).expand(1, c, 1, 1)
        self.inv_std, self.shift = 1.0 / std_t, -mean_t / std_t
        self.spec = spec or aug.AugmentSpec("none")

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])

    def get(self, idx: torch.Tensor, prm: dict | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised (and, with `prm`, augmented) float batch and its labels."""
        x = self.images[idx].float().mul_(1.0 / 255)        # (B, C, H, W) in [0, 1]
        mask = None
        if prm:
            x, mask = aug.apply(self.spec, x, prm)
        x = x * self.inv_std + self.shift
        if mask is not None:
            x = x.masked_fill(mask, 0.0)                    # erased patch = the dataset mean
        return x, self.labels[idx]


def loss_with_aux(out: Any, y: torch.Tensor, smoothing: float, aux_weight: float = 0.3) -> torch.Tensor:
    """Cross-entropy of the main logits plus 0.3 x each auxiliary head's
    (Szegedy et al. 2015, sec. 5: "their loss was added ... with a discount weight 0.3")."""
    if not isinstance(out, (tuple, list)):
        return F.cross_entropy(out, y, label_smoothing=smoothing)
    loss = F.cross_entropy(out[0], y, label_smoothing=smoothing)
    for aux_out in out[1:]:
        if aux_out is not None:
            loss = loss + aux_weight * F.cross_entropy(aux_out, y, label_smoothing=smoothing)
    return loss


@torch.inference_mode()
def score(model: nn.Module, data: Batches, rt: Runtime, *, batch_size: int = 1000,
          ks: Sequence[int] = (1, 5), confusion: bool = False, num_classes: int | None = None) -> dict:
    """Loss and top-k of a whole split (each DDP rank scores its share, then they add up)."""
    was_training = model.training
    model.eval()  # BN uses its running statistics, dropout is off
    n = len(data)
    mine = torch.arange(rt.rank, n, rt.world, device=data.labels.device)
    sums = torch.zeros(1 + len(ks), dtype=torch.float64, device=data.labels.device)  # loss, top-ks
    conf = None
    for i in range(0, len(mine), batch_size):
        x, y = data.get(mine[i:i + batch_size])
        with torch.autocast(rt.device.type, dtype=torch.bfloat16, enabled=rt.amp):
            logits = main_logits(model(x)).float()
        sums[0] += F.cross_entropy(logits, y, reduction="sum")
        sums[1:] += topk_correct(logits, y, ks)
        if confusion:
            c = confusion_matrix(logits.argmax(1), y, num_classes or logits.shape[1])
            conf = c if conf is None else conf + c
    all_sum(sums, rt)
    if conf is not None:
        all_sum(conf, rt)
    model.train(was_training)
    vals = sums.tolist()
    result = {"loss": vals[0] / max(n, 1), "n": n}
    result.update({f"top{k}": v / max(n, 1) for k, v in zip(ks, vals[1:])})
    if conf is not None:
        result["confusion"] = conf.cpu()
    return result
