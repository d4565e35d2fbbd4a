"""`convscope site RUN --out DIR`: the explorer as static files that run the network in the browser.

    DIR/index.html          the explorer page (the same page `convscope serve` sends)
    DIR/static/*.js, *.css  its code, plus preprocess.js and engine_ort.js (the in-browser engine)
    DIR/model.onnx          the run's network with every shown layer as a named output
    DIR/model.json          what GET /api/model answers, and the run's config and classes
    DIR/weights.json        every unit's weights (GET /api/weights), for networks up to 2M parameters
    DIR/samples.json        a page of the run's test images (GET /api/samples), when the data is here
    DIR/samples_wrong.json  the misclassified ones (GET /api/samples?wrong=1): the first WRONG_KEPT of
                            those among the first 1,000 test images, found when the site is built
    DIR/gradcam.onnx        Grad-CAM's gradient graph (export/gradcam.py), where it can be exported
    DIR/ort/                onnxruntime-web's JavaScript and WebAssembly (npm, pinned)

The page talks to the network only through `CS.engine`; in a site, `engine_ort.js`
installs an engine that answers from these files and ONNX Runtime Web, so after
loading no request leaves the page. Any static host serves the folder, e.g.
`python -m http.server -d DIR`.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from convscope.errors import UserError
from convscope.web.encoding import png_url

ORT_WEB_VERSION = "1.30.0"
ORT_FILES = ("ort.wasm.min.js", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
MARKER = ".convscope-site"
MAX_WEIGHT_PARAMS = 2_000_000
SAMPLES = 48
WRONG_KEPT = 96      # misclassified test images kept (of those among the server's first 1,000)
THUMB = 64           # web.samples' thumbnails: a larger image travels whole beside its thumbnail
STATIC = Path(__file__).resolve().parents[1] / "web" / "static"


# ---- onnxruntime-web from npm ---------------------------------------------------------------

def _ort_candidates() -> list[Path]:
    env = os.environ.get("CONVSCOPE_ORT_WEB")
    repo = Path(__file__).resolve().parents[3]
    found = [Path(env)] if env else []
    found += [repo / ".cache" / "onnxruntime-web" / "node_modules" / "onnxruntime-web",
              _user_cache() / "node_modules" / "onnxruntime-web"]
    return found


def _user_cache() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "convscope" / f"onnxruntime-web-{ORT_WEB_VERSION}"


def _dist(package: Path) -> Path | None:
    """The dist/ folder of an onnxruntime-web package folder, if it is the pinned version."""
    try:
        version = json.loads((package / "package.json").read_text()).get("version")
    except (OSError, ValueError):
        return None
    dist = package / "dist"
    if version != ORT_WEB_VERSION or not all((dist / f).is_file() for f in ORT_FILES):
        return None
    return dist


def find_ort_web(*, install: bool = True) -> Path:
    """onnxruntime-web's dist/ folder: $CONVSCOPE_ORT_WEB, the bootstrap's .cache/, or the user
    cache (installed there with npm on first use). UserError, saying what to do, without npm."""
    for package in _ort_candidates():
        dist = _dist(package)
        if dist is not None:
            return dist
    npm = shutil.which("npm")
    if install and npm:
        prefix = _user_cache()
        prefix.mkdir(parents=True, exist_ok=True)
        cmd = [npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund", "--ignore-scripts",
               "--no-save", f"onnxruntime-web@{ORT_WEB_VERSION}"]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        dist = _dist(prefix / "node_modules" / "onnxruntime-web")
        if res.returncode == 0 and dist is not None:
            return dist
        raise UserError(f"npm could not fetch onnxruntime-web {ORT_WEB_VERSION} "
                        f"({(res.stderr or res.stdout).strip().splitlines()[-1:] or '?'}); "
                        "set CONVSCOPE_ORT_WEB to an onnxruntime-web package folder")
    raise UserError(f"the static site needs onnxruntime-web {ORT_WEB_VERSION} from npm, and npm is not "
                    "installed: install Node.js and npm (sudo apt-get install npm) or set CONVSCOPE_ORT_WEB "
                    "to an onnxruntime-web package folder; `convscope serve` works without it")


# ---- the network with every shown layer as an output ------------------------------------------

class ShownLayers(nn.Module):
    """The explorer's forward as a module: (logits, the value of each named layer), exactly
    the values the server shows (`Snapshot.value`, before taking the batch's first item)."""

    def __init__(self, snap: Any, names: list[str]) -> None:
        super().__init__()
        self.model = snap.model  # registered, so its weights become the graph's initializers
        self.snap = snap
        self.names = names

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        logits, values = self.snap.forward(x, pad=False)  # one row: what the browser computes
        shown = self.snap.graph.shown
        return (logits, *(values[shown[n]].float() for n in self.names))


# ---- the site --------------------------------------------------------------------------------

def check_site_dir(out: str | Path) -> Path:
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise UserError(f"--out {out} is a file; name a folder for the site")
    if path.is_dir() and any(path.iterdir()) and not (path / MARKER).is_file():
        raise UserError(f"--out {out} is a folder with other files in it; name an empty or new folder "
                        "(a folder built by `convscope site` before is replaced)")
    for above in [path.parent, *path.parent.parents]:
        if above.exists():
            if not above.is_dir():
                raise UserError(f"cannot write {out}: {above} is a file, not a folder")
            if not os.access(above, os.W_OK):
                raise UserError(f"cannot write {out}: {above} is not writable")
            break
    return path


def _page() -> str:
    """index.html as `convscope serve` sends it, with relative paths and the in-browser engine
    loaded before engine.js (which then keeps it: `CS.engine = CS.engine || ...`)."""
    from convscope.web.app import page_html as served_page

    html = served_page().decode()
    html = html.replace('href="/static/', 'href="static/').replace('src="/static/', 'src="static/')
    engine = ('<script src="ort/ort.wasm.min.js"></script>\n<script src="static/preprocess.js"></script>\n'
              '<script src="static/engine_ort.js"></script>\n')
    anchor = '<script src="static/engine.js"></script>'
    if anchor not in html:
        raise RuntimeError("index.html loads no static/engine.js: the page has no engine seam to plug into")
    html = html.replace(anchor, engine + anchor)
    # the server's footer would be wrong here: say where the network runs
    return html.replace("the network runs on the server you started; nothing leaves this machine.",
                        "a static site: the network runs in this browser (ONNX Runtime Web); nothing is sent anywhere.")


def _weights(engine: Any) -> dict[str, Any]:
    if sum(p.numel() for p in engine.model.parameters()) > MAX_WEIGHT_PARAMS:
        return {}
    out = {}
    for layer in engine.layers:
        if layer["kind"] in ("conv", "fc", "bn") and layer.get("shape"):
            try:
                out[layer["name"]] = [engine.weights(layer["name"], u) for u in range(layer["shape"][0])]
            except ValueError:  # a layer the server would not show weights for either
                continue
    return out


def _samples(engine: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """(a page of test images, the misclassified ones) exactly as /api/samples and ?wrong=1 answer them."""
    from convscope.web.samples import MAX_PAGE

    try:
        page = engine.samples(offset=0, limit=SAMPLES)
        wrong = engine.samples(offset=0, limit=min(WRONG_KEPT, MAX_PAGE), wrong=True)
    except Exception as exc:  # no dataset on this machine: the site has no samples, and says why
        empty = {"split": None, "total": 0, "offset": 0, "wrong": False, "samples": [],
                 "note": f"no samples in this site ({str(exc)[:160]})"}
        return empty, {**empty, "wrong": True}
    wrong["kept"] = len(wrong["samples"])
    for item in page["samples"] + wrong["samples"]:
        img, _ = engine.sample_image(item["index"])
        if max(img.shape[:2]) > THUMB:  # the thumbnail is smaller than what the server feeds
            item["image"] = png_url(img)
    return page, wrong


def build_site(run_dir: str | Path, out: str | Path) -> dict[str, Any]:
    """Build the static explorer of `run_dir` into `out` (replaced whole, atomically)."""
    from convscope.export.gradcam import export_gradcam
    from convscope.export.onnx import LOGITS, export_module
    from convscope.web.answer import FIRST_MAPS, FIRST_SCREEN_BYTES
    from convscope.web.engine import Explorer
    from convscope.web.kept import KEEP_INPUTS

    t0 = time.perf_counter()
    dest = check_site_dir(out)
    ort_dist = find_ort_web()
    explorer = Explorer.from_run(run_dir)
    page = _page()
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        names = [layer["name"] for layer in explorer.layers if layer["kind"] != "input"]
        check = export_module(ShownLayers(explorer.snapshot, names), tmp / "model.onnx", explorer.input_size,
                              [LOGITS, *names])
        cam = export_gradcam(explorer.model, explorer.input_size, explorer.num_classes, tmp)
        first, wrong = _samples(explorer)
        description = explorer.describe()
        description["site"] = {"onnx": "model.onnx", "outputs": [LOGITS, *names], "ort_web": ORT_WEB_VERSION,
                               "first_screen_bytes": FIRST_SCREEN_BYTES, "first_maps": FIRST_MAPS,
                               "keep_inputs": KEEP_INPUTS, "check_max_abs_diff": check.max_abs_diff,
                               "gradcam": cam}
        config = {k: explorer.config.get(k) for k in ("model", "dataset", "classes", "input_size",
                                                       "normalization", "preprocessing")}
        _write_json(tmp / "model.json", {"description": description, "config": config})
        _write_json(tmp / "weights.json", _weights(explorer))
        _write_json(tmp / "samples.json", first)
        _write_json(tmp / "samples_wrong.json", wrong)
        (tmp / "index.html").write_text(page)
        shutil.copytree(STATIC, tmp / "static", ignore=shutil.ignore_patterns("index.html"))
        (tmp / "ort").mkdir()
        for name in ORT_FILES:
            # the .mjs module is saved as .js: every static host sends .js as JavaScript, which
            # a module import needs (older ones send .mjs as application/octet-stream)
            shutil.copy2(ort_dist / name, tmp / "ort" / name.replace(".mjs", ".js"))
        (tmp / MARKER).write_text(f"built from {run_dir}\n")
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; a site is for a web server to read
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    files = [p for p in dest.rglob("*") if p.is_file()]
    return {"out": str(dest), "files": len(files), "bytes": sum(p.stat().st_size for p in files),
            "onnx_bytes": (dest / "model.onnx").stat().st_size, "check_max_abs_diff": check.max_abs_diff,
            "seconds": round(time.perf_counter() - t0, 2), "ort_web": ORT_WEB_VERSION,
            "gradcam": {k: v for k, v in cam.items() if k in ("layer", "unavailable")}}


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, separators=(",", ":")))
