"""`train()` and `evaluate()`: names, datasets and run folders in; results out.

Everything that can be wrong with the request (an unknown model, dataset or
recipe, an --out that cannot be written, a model whose input does not fit
the data) is reported before the first training step.
"""
from __future__ import annotations

import contextlib
import platform
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from convscope.runs import RunDir
from convscope.train.config import make_config, recipe_defaults
from convscope.train.runtime import Runtime, barrier, setup, teardown

if TYPE_CHECKING:
    from convscope.train.request import TrainRequest


def versions() -> dict[str, str]:
    from convscope import __version__

    out = {"convscope": __version__, "python": platform.python_version(), "torch": torch.__version__}
    for mod in ("torchvision", "numpy"):
        try:
            out[mod] = __import__(mod).__version__
        except ImportError:  # pragma: no cover
            pass
    return out


def load_dataset(data: Any, *, root: str | None = None, download: bool = False,
                 image_size: int | None = None, val_fraction: float | None = None,
                 test_fraction: float | None = None) -> Any:
    """A convscope.data Dataset from a name ("mnist", "folder:PATH", ...) or the object itself.

    val_fraction (None: 0.1) and test_fraction (None: the source's rule) say how a name's
    images are split; a Dataset object is split already, so they must be None for one."""
    if not isinstance(data, str):
        if val_fraction is not None or test_fraction is not None:
            raise ValueError("val_fraction/test_fraction split a dataset given by name; this Dataset "
                             "object is split already (build it with the fractions you want)")
        return data
    from convscope.data import get_dataset

    dataset = get_dataset(data, root=root, download=download, image_size=image_size,
                          val_fraction=0.1 if val_fraction is None else val_fraction, test_fraction=test_fraction)
    if val_fraction is not None and dataset.split_settings.get("val_fraction", 0.0) is None:
        from convscope.errors import DataError

        raise DataError(f"{dataset.name} brings its own validation split ({len(dataset.val)} images); "
                        "--val-fraction is only for data without one")
    return dataset


def run_dataset(run_config: dict, data: Any = None, *, root: str | None = None, download: bool = False) -> Any:
    """`data` (default: the run's dataset) loaded at the run's image size and, when it is the run's
    own dataset from the same place, split as config.json's "split" says it was trained: a run
    trained on every image (--test-fraction 0) then has an empty test split, never a default
    test split of images it trained on."""
    data = run_config.get("dataset") if data is None else data
    val_fraction, test_fraction = split_of(run_config) if data == run_config.get("dataset") else (None, None)
    if root or download:  # another source of the same name (full MNIST) brings its own test split
        test_fraction = None
    return load_dataset(data, root=root, download=download, image_size=run_config.get("image_size"),
                        val_fraction=val_fraction, test_fraction=test_fraction)


def split_of(run_config: dict) -> tuple[float | None, float | None]:
    """(val_fraction, test_fraction) a run's config.json says its data was split with
    (None: the default, and for runs from before the split was recorded)."""
    split = run_config.get("split") or {}
    return split.get("val_fraction"), split.get("test_fraction")


def check_fit(model: nn.Module, dataset: Any, *, device: str | None = None) -> None:
    """One forward pass of two real images: the model must take them and give one score per class.
    device="meta" (a model built on the meta device): the shapes are checked, nothing is computed."""
    images = torch.as_tensor(dataset.val.images[:2] if len(dataset.val.images) else dataset.train.images[:2])
    x = images.float() / 255
    if device is not None:
        x = x.to(device)
    name = getattr(model, "model_name", type(model).__name__)
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(x)
    except (RuntimeError, ValueError) as exc:
        want = getattr(model, "default_input_size", None)
        raise ValueError(
            f"model {name} does not fit {dataset.name}'s images of size {tuple(x.shape[1:])}"
            + (f" (it was designed for {tuple(want)})" if want else "")
            + f": {str(exc).splitlines()[0]}. Pick a model for this input size, pass model kwargs "
              f"(e.g. --model-arg input_size=...), or resize the data with --image-size") from None
    finally:
        model.train(was)
    logits = out[0] if isinstance(out, (tuple, list)) else out
    if logits.dim() != 2 or logits.shape[1] != len(dataset.classes):
        raise ValueError(f"model {name} gives outputs of shape {tuple(logits.shape)} but {dataset.name} has "
                         f"{len(dataset.classes)} classes; build it with num_classes={len(dataset.classes)}")


def full_kwargs(model_kwargs: dict | None, dataset: Any) -> dict:
    """The model kwargs with the data's class and channel counts filled in (where not given):
    config.json keeps these, so `convscope.load` rebuilds the very same network."""
    kwargs = dict(model_kwargs or {})
    kwargs.setdefault("num_classes", len(dataset.classes))
    kwargs.setdefault("in_chans", int(dataset.train.images.shape[1]))
    return kwargs


def run_config_for(model_name: str, model_kwargs: dict | None, dataset: Any, *, data_name: str | None = None,
                   image_size: int | None = None) -> dict[str, Any]:
    """config.json minus the training recipe (fit adds "recipe", "seed" and the result);
    the model kwargs are filled with `full_kwargs`."""
    pre = dataset.preprocessing() if hasattr(dataset, "preprocessing") else {}
    return {
        "model": {"name": model_name, "kwargs": full_kwargs(model_kwargs, dataset)},
        "dataset": data_name or dataset.name,
        "dataset_kind": getattr(dataset, "kind", None),
        "dataset_source": str(getattr(dataset, "source", "")),
        "image_size": image_size,
        "classes": [str(c) for c in dataset.classes],
        "input_size": list(getattr(dataset, "input_size", dataset.train.images.shape[1:])),
        "normalization": {"mean": [float(v) for v in dataset.mean], "std": [float(v) for v in dataset.std]},
        "preprocessing": pre,
        "split": dataset.split_record() if hasattr(dataset, "split_record") else None,
        "versions": versions(),
    }


def build_model(model: str | nn.Module, model_kwargs: dict, seed: int) -> tuple[nn.Module, str]:
    """(module, name): a registered name built with `model_kwargs` (initial weights from `seed`
    only), or a module passed through."""
    if isinstance(model, nn.Module):
        return model, getattr(model, "model_name", type(model).__name__)
    from convscope.models import create_model

    torch.manual_seed(seed)
    return create_model(model, **model_kwargs), model


def writer(run: RunDir, rt: Runtime, *, replace: bool) -> Any:
    """`run.writing(replace=...)` on rank 0; elsewhere a no-op (only rank 0 writes)."""
    return run.writing(replace=replace) if rt.main else contextlib.nullcontext(lambda: None)


def _resolve(run: RunDir, model, data, recipe, resume: bool, model_kwargs, values: dict,
             split: tuple[float | None, float | None]) -> tuple:
    """(model, data, model_kwargs, TrainConfig, split): from the saved run on resume, else recipe + arguments."""
    out = run.path
    if resume:
        saved = run.read_config()
        name, kwargs = run.model_spec()
        have_split = split_of(saved)
        for what, given, have in (("model", model, name), ("data", data, saved["dataset"]),
                                  ("val-fraction", split[0], have_split[0]),
                                  ("test-fraction", split[1], have_split[1])):
            if (isinstance(given, str) or what.endswith("fraction")) and given is not None and given != have:
                raise ValueError(f"{out} was trained with --{what} {have}, not {given}; drop --{what} "
                                 f"to resume, or start a new run in another --out")
        values = {k: v for k, v in values.items() if k != "seed"}  # a run keeps its seed
        return (name, saved["dataset"], kwargs, make_config(None, base=saved.get("recipe", {}), **values),
                have_split)
    rd = recipe_defaults(recipe)
    if model is None and model_kwargs is None:  # the recipe's model comes with its kwargs
        model_kwargs = rd.get("model_kwargs")
    model = model if model is not None else rd.get("model", "lenet5")
    data = data if data is not None else rd.get("data", "mnist")
    return model, data, dict(model_kwargs or {}), make_config(recipe, **values), split


def train(*, model: str | nn.Module | None = None, data: Any = None, out: str | Path,
          recipe: str | None = None, epochs: int | None = None, batch_size: int | None = None,
          lr: float | None = None, optimizer: str | None = None, schedule: str | None = None,
          seed: int = 0, resume: bool = False, progress: bool = True, model_kwargs: dict | None = None,
          device: str | None = None, threads: int | None = None, data_root: str | None = None,
          download: bool = False, image_size: int | None = None, overwrite: bool = False,
          report: bool | None = None, val_fraction: float | None = None, test_fraction: float | None = None,
          callbacks: Any = (), **overrides: Any) -> Path:
    """Train `model` (a registered name or a module) on `data` (a name or a Dataset); returns the run folder.

    model/data default to the recipe's, else lenet5 on mnist. `overrides` are
    TrainConfig fields (weight_decay=..., label_smoothing=..., augment=...).
    val_fraction / test_fraction split a dataset given by name (see `convscope.data.get_dataset`):
    val_fraction=0 trains on the validation share too (val_loss/val_top1/val_top5 are then null),
    and with test_fraction=0 as well the offline mnist run trains on all 5,000 digits.
    config.json's "split" records them. The arguments are checked by `TrainRequest.parse`
    (convscope.train.request): a bad one is a UserError before anything is loaded.
    Run under torchrun it trains with DistributedDataParallel; only rank 0 writes.
    """
    from convscope.train.request import TrainRequest

    req = TrainRequest.parse(dict(
        overrides, model=model, data=data, out=out, recipe=recipe, epochs=epochs, batch_size=batch_size, lr=lr,
        optimizer=optimizer, schedule=schedule, seed=seed, resume=resume, model_kwargs=model_kwargs,
        device=device, threads=threads, data_root=data_root, download=download, image_size=image_size,
        overwrite=overwrite, val_fraction=val_fraction, test_fraction=test_fraction))
    return train_request(req, progress=progress, report=report, callbacks=callbacks)


def _prepare(req: "TrainRequest") -> tuple:
    """(run, model, data name or object, model kwargs, TrainConfig, dataset, image_size): every check
    `train_request` makes before it builds the network, writing nothing."""
    if req.out is None:
        raise ValueError("out is required: the run folder to write")
    run = RunDir(req.out)
    values = dict(req.overrides, epochs=req.epochs, batch_size=req.batch_size, lr=req.lr,
                  optimizer=req.optimizer, schedule=req.schedule, seed=req.seed)
    run.check_out(resume=req.resume, overwrite=req.overwrite)
    model_kwargs = dict(req.model_kwargs) if req.model_kwargs is not None else None
    model, data, model_kwargs, cfg, split = _resolve(run, req.model, req.data, req.recipe, req.resume,
                                                     model_kwargs, values, (req.val_fraction, req.test_fraction))
    dataset = load_dataset(data, root=req.data_root, download=req.download, image_size=req.image_size,
                           val_fraction=split[0], test_fraction=split[1])
    from convscope.train.loop import check_schedule

    check_schedule(cfg, dataset)
    return run, model, data, full_kwargs(model_kwargs, dataset), cfg, dataset


def preflight(req: "TrainRequest") -> None:
    """Everything `train_request(req)` checks before its first write (the run folder, the recipe, the
    data, the model taking the data's images and giving one score per class), with the network
    built on the meta device: nothing is written and no weight is allocated. Raises what train would."""
    import torch

    run, model, data, model_kwargs, cfg, dataset = _prepare(req)
    if isinstance(model, nn.Module):
        check_fit(model, dataset)
        return
    from convscope.models import create_model

    with torch.device("meta"):
        net = create_model(model, **model_kwargs)
    check_fit(net, dataset, device="meta")


def train_request(req: "TrainRequest", *, progress: bool = True, report: bool | None = None,
                  callbacks: Any = ()) -> Path:
    """Train what `req` (a checked TrainRequest) asks for; returns the run folder (see `train`)."""
    rt = setup(req.device, req.threads)
    try:
        run, model, data, model_kwargs, cfg, dataset = _prepare(req)
        from convscope.train.loop import fit

        net, name = build_model(model, model_kwargs, cfg.seed)
        check_fit(net, dataset)
        if rt.main:
            run.probe_writable()
        run_config = run_config_for(name, model_kwargs, dataset, data_name=data if isinstance(data, str) else None,
                                    image_size=req.image_size)
        replace = req.overwrite and not req.resume
        with writer(run, rt, replace=replace) as checkpointed:
            barrier(rt)
            result = fit(net, dataset, cfg, run.path, run_config=run_config, resume=req.resume, progress=progress,
                         runtime=rt, on_checkpoint=checkpointed, callbacks=callbacks)
        if rt.main and (progress if report is None else report):
            print(result_line(run.path, result, rt), flush=True)
        return run.path
    finally:
        teardown(rt)


def result_line(out: Path, result: dict, rt: Runtime | None = None) -> str:
    h = result["history"]
    if not h:
        return f"nothing trained: {out} had finished all its epochs already"
    f = h[-1]
    secs = sum(r["seconds"] for r in h)
    procs = f" x{rt.world} processes" if rt is not None and rt.world > 1 else ""
    if f["val_top1"] is None:  # trained on the validation share too: nothing to report, nothing to pick
        return (f"done: {result['epochs']} epochs in {secs:.1f}s{procs}: val top-1 n/a (no validation split, "
                f"every image trained on); final train loss {f['train_loss']:.4f} -> {out}")
    best = max(r["val_top1"] for r in h if r["val_top1"] is not None)
    return (f"done: {result['epochs']} epochs in {secs:.1f}s{procs}: val top-1 {100 * f['val_top1']:.2f}%, "
            f"top-5 {100 * f['val_top5']:.2f}% (best top-1 {100 * best:.2f}%) -> {out}")
