"""`finetune()`: a source (run folder or torchvision:NAME) and a dataset name in, a run folder out."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from convscope.transfer.finetune import fit_plan, prepare, with_source_normalization
from convscope.transfer.sources import Source, load_source


def finetune(source: str | Path | Source, data: Any, out: str | Path, *, freeze: int | str | None = None,
             reinit: int = 0, keep_head: bool = False, epochs: int = 3, freeze_epochs: int = 1,
             lr: float = 0.05, body_lr_mult: float = 0.1, seed: int = 0, image_size: int | None = None,
             data_root: str | None = None, download: bool = False, overwrite: bool = False,
             progress: bool = True, device: str | None = None, threads: int | None = None,
             **cfg: Any) -> Path:
    """Fine-tune `source` on `data` (a dataset name or a Dataset) into the run folder `out`.

    source: a run folder, "torchvision:NAME[:WEIGHTS]" or a Source. A torchvision
    source trains at its weights' crop size unless `image_size` says otherwise.
    `cfg` are TrainConfig fields (batch_size, optimizer, weight_decay, augment, ...).
    The run is an ordinary one: convscope.load, evaluate, predict and serve read it.
    """
    from convscope.runs import RunDir
    from convscope.train.api import load_dataset, run_config_for, writer
    from convscope.train.runtime import setup, teardown

    out = Path(out)
    run = RunDir(out)
    run.check_out(resume=False, overwrite=overwrite)
    src = load_source(source)
    if image_size is None and str(src.origin).startswith("torchvision:") and isinstance(data, str):
        image_size = src.input_size[-1]
    rt = setup(device, threads)
    try:
        dataset = with_source_normalization(
            load_dataset(data, root=data_root, download=download, image_size=image_size), src)
        plan = prepare(src, dataset, freeze=freeze, reinit=reinit, keep_head=keep_head, seed=seed)
        run.probe_writable()
        # num_classes and in_chans kept in config.json: convscope.load rebuilds the fine-tuned network
        config = run_config_for(src.name, src.kwargs, dataset, data_name=data if isinstance(data, str) else None,
                                image_size=image_size)
        with writer(run, rt, replace=overwrite) as checkpointed:
            fit_plan(plan, dataset, out, epochs=epochs, freeze_epochs=freeze_epochs, lr=lr,
                     body_lr_mult=body_lr_mult, run_config=config, progress=progress, runtime=rt, seed=seed,
                     on_checkpoint=checkpointed, **cfg)
        return out
    finally:
        teardown(rt)
