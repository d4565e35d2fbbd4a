"""The figures of the lecture's "What does a unit see?" section, for `make docs`.

Both come from one lenet5 trained with the mnist-fast recipe (30 epochs,
seed 0; about 20 s), kept in test-artifacts/cache so a rebuild reuses it:

    tuning     conv1's orientation tuning, trained against random init
    hierarchy  Lee et al.'s figure: best patch and optimised image per channel, conv1 and conv2
    units-conv2  conv2's top nine digits per channel beside its optimised image
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

RUN = Path("test-artifacts/cache/docs-units-lenet5-mnist")


def units_run() -> Path:
    if not (RUN / "model.safetensors").is_file():
        from convscope.train import train

        train(model="lenet5", data="mnist", recipe="mnist-fast", epochs=30, out=RUN, progress=False, overwrite=True, seed=0)
    return RUN


def build_tuning(out: Path) -> dict[str, Any]:
    from convscope.units.report import tuning
    from convscope.units.target import load_target

    run = str(units_run())
    result = tuning(load_target(run), load_target(run, random_init=True), "conv1", out.parent / "_units")
    shutil.move(result["png"], out)
    return result


def build_hierarchy(out: Path) -> dict[str, Any]:
    from convscope.units.report import units
    from convscope.units.target import load_target

    result = units(load_target(str(units_run())), "all", out.parent / "_units", method="optimize")
    shutil.move(result["hierarchy_png"], out)
    shutil.rmtree(out.parent / "_units", ignore_errors=True)
    return result


def build_units_conv2(out: Path) -> dict[str, Any]:
    from convscope.units.report import units
    from convscope.units.target import load_target

    result = units(load_target(str(units_run())), "conv2", out.parent / "_units", method="optimize")
    shutil.move(result["png"], out)
    shutil.rmtree(out.parent / "_units", ignore_errors=True)
    return result
