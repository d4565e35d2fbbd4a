"""What a unit sees, in the explorer: a channel's top dataset patches and its optimised image.

    GET /api/units/layers                 the conv/pool layers that have units to show
    GET /api/units?layer=L&channel=c      200 {"status": "ready", "layer", "channel", "top": [{"index",
                                          "y", "x", "activation", "png"}], "optimized_png",
                                          "optimized_full_png", "optimized_activation",
                                          "best_patch_activation", "ratio", "receptive_field"}
                                          or 202 {"status": "computing", "stage", "progress" (0-1)}

A layer is computed once per run, in a background thread (every channel at
once: one pass over the run's dataset, then the optimisation), and kept
beside the run in RUN/units-cache/ (`convscope.units.cache`); the page polls
while the progress bar fills. Bad input answers 4xx with {"detail": message}.
`app.py` includes `router` when this module is present.
"""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

router = APIRouter()


def _fail(message: str, status: int = 422) -> JSONResponse:
    from convscope.errors import one_line

    return JSONResponse({"detail": one_line(message)[:300]}, status_code=status)


def _jobs(request: Request):
    from pathlib import Path

    from convscope.units.cache import Jobs
    from convscope.units.target import load_target

    state = request.app.state
    snap = state.explorer.snapshot  # the jobs of the network the explorer shows now, never an earlier one
    held = getattr(state, "units_jobs", None)
    if held is not None and held[0] is snap:
        return held[1]
    if snap.run_dir is None:
        return None
    run_dir = snap.run_dir
    jobs = Jobs(lambda: load_target(str(run_dir)), Path(run_dir))
    state.units_jobs = (snap, jobs)
    return jobs


NO_RUN = ("what a unit sees is ranked over the run's dataset: start the explorer with --run RUN "
          "(a model name has no dataset)")


@router.get("/api/units/layers")
def units_layers(request: Request) -> Any:
    jobs = _jobs(request)
    if jobs is None:
        return _fail(NO_RUN, 409)
    t = jobs.target()
    return {"layers": [{"name": n, "channels": t.channels(n), "receptive_field": int(max(t.fields[n].r))}
                       for n in t.unit_layers()]}


@router.get("/api/units")
def units(request: Request, layer: str = "", channel: str = "") -> Any:
    from convscope.errors import ConvscopeError

    jobs = _jobs(request)
    if jobs is None:
        return _fail(NO_RUN, 409)
    target = jobs.target()
    try:
        layer = target.check_layer(layer)
    except ConvscopeError as exc:
        return _fail(str(exc))
    if not (channel.isascii() and channel.isdigit()) or int(channel) >= target.channels(layer):
        return _fail(f"channel must be a whole number from 0 to {target.channels(layer) - 1}, got {channel[:20]!r}")
    data = jobs.get(layer)
    if data is None:
        progress = jobs.start(layer)
        if progress.get("status") == "error":
            return _fail(f"computing the units of {layer} failed: {progress['error']}", 409)
        data = jobs.get(layer)
        if data is None:
            return JSONResponse(progress, status_code=202)
    entry = next(c for c in data["channels"] if c["channel"] == int(channel))
    return {"status": "ready", "layer": layer, "receptive_field": data["receptive_field"], **entry}
