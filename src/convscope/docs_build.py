"""`make docs` (`python -m convscope.docs_build`): the lecture's figures, rebuilt from the code.

Every picture in docs/lecture.md is computed here by convscope itself, never
drawn by hand, and written as docs/img/lecture-<name>.png:

    sobel      the Sobel kernels on a real Fashion-MNIST image (section 2)
    kernels    four oriented-edge kernels and their activation maps (section 2)
    conv       the 5x5 image * 3x3 kernel example, first value 4 (section 3)
    vgg-memory VGG16's memory and parameters, layer by layer (section 8)
    compare    the zoo at a glance: top-1 against multiply-adds (section 9)
    explorer   a screenshot of the explorer after drawing a 7 (section 6)

Each builder returns the arrays it plotted, so tests check the numbers
against PyTorch, not the pixels.

    python -m convscope.docs_build                  # all of them into docs/img
    python -m convscope.docs_build sobel conv       # some of them
    python -m convscope.docs_build explorer --run runs/demo
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np

OUT = Path("docs/img")

# Sobel (1968): a smoothed derivative; as cross-correlation, SOBEL_X is positive
# where the image gets brighter from left to right (a vertical edge).
SOBEL_X = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=np.float32)
SOBEL_Y = SOBEL_X.T.copy()
# Oriented-edge kernels at 0, 45, 90 and 135 degrees (the Sobel pair and its diagonals),
# the kind of detector Hubel and Wiesel found in V1 and AlexNet's conv1 learns (Fig. 3).
ORIENTED = {
    "vertical edge (0°)": SOBEL_X,
    "diagonal edge (45°)": np.array([[0, 1, 2], [-1, 0, 1], [-2, -1, 0]], dtype=np.float32),
    "horizontal edge (90°)": SOBEL_Y,
    "diagonal edge (135°)": np.array([[-2, -1, 0], [-1, 0, 1], [0, 1, 2]], dtype=np.float32),
}
# The lecture's worked example: a binary 5x5 image and a 3x3 "X" kernel.
EXAMPLE_IMAGE = np.array([[1, 1, 1, 0, 0], [0, 1, 1, 1, 0], [0, 0, 1, 1, 1], [0, 0, 1, 1, 0], [0, 1, 1, 0, 0]],
                         dtype=np.float32)
EXAMPLE_KERNEL = np.array([[1, 0, 1], [0, 1, 0], [1, 0, 1]], dtype=np.float32)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, bbox_inches="tight")
    _plt().close(fig)
    return out


def sample_image(dataset: str = "fashion-mnist", label: str = "Ankle boot") -> np.ndarray:
    """The first test image of class `label`, as a (28, 28) float32 array in [0, 1]."""
    from convscope.data import get_dataset

    ds = get_dataset(dataset)
    index = int((ds.test.labels == ds.classes.index(label)).nonzero()[0, 0])
    return ds.test.images[index, 0].numpy().astype(np.float32) / 255.0


def sobel(image: np.ndarray) -> dict[str, np.ndarray]:
    """Sobel responses of a (H, W) image, zero padding 1: {"x", "y", "magnitude"} each (H, W)."""
    from convscope.ops import conv2d

    w = np.stack([SOBEL_X, SOBEL_Y])[:, None]             # (2, 1, 3, 3): two kernels of depth 1
    gx, gy = conv2d(image[None, None], w, padding=1)[0]   # (2, H, W): two activation maps
    return {"x": gx, "y": gy, "magnitude": np.hypot(gx, gy)}


def build_sobel(out: Path) -> dict[str, np.ndarray]:
    image = sample_image()
    maps = sobel(image)
    plt = _plt()
    fig, axes = plt.subplots(1, 4, figsize=(10, 2.9), dpi=100)
    panels = [("Fashion-MNIST test image\n(ankle boot, 28x28)", image, "gray"),
              ("Sobel x: vertical edges", maps["x"], "RdBu_r"),
              ("Sobel y: horizontal edges", maps["y"], "RdBu_r"),
              ("magnitude sqrt(x² + y²)", maps["magnitude"], "gray")]
    for ax, (title, data, cmap) in zip(axes, panels):
        lim = np.abs(data).max()
        ax.imshow(data, cmap=cmap, vmin=-lim if cmap == "RdBu_r" else 0, vmax=lim)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    _save(fig, out)
    return {"image": image, **maps}


def build_kernels(out: Path) -> dict[str, np.ndarray]:
    from convscope.ops import conv2d

    image = sample_image()
    weights = np.stack(list(ORIENTED.values()))[:, None]     # (4, 1, 3, 3)
    maps = conv2d(image[None, None], weights, padding=1)[0]  # (4, 28, 28): one map per kernel
    plt = _plt()
    fig, axes = plt.subplots(2, 4, figsize=(9, 4.8), dpi=100)
    for i, (title, kernel) in enumerate(ORIENTED.items()):
        axes[0, i].imshow(kernel, cmap="RdBu_r", vmin=-2, vmax=2)
        for (r, c), v in np.ndenumerate(kernel):
            axes[0, i].text(c, r, f"{v:g}", ha="center", va="center", fontsize=9)
        axes[0, i].set_title(title, fontsize=9)
        lim = np.abs(maps[i]).max()
        axes[1, i].imshow(maps[i], cmap="RdBu_r", vmin=-lim, vmax=lim)
        axes[1, i].set_title("its activation map", fontsize=8)
    for ax in axes.flat:
        ax.axis("off")
    _save(fig, out)
    return {"weights": weights, "maps": maps, "image": image}


def _grid(ax: Any, data: np.ndarray, title: str, box: tuple[int, int, int] | None = None) -> None:
    plt = _plt()
    ax.imshow(data, cmap="Blues", vmin=0, vmax=max(1.0, float(data.max())) * 1.6)
    for (r, c), v in np.ndenumerate(data):
        ax.text(c, r, f"{v:g}", ha="center", va="center", fontsize=12)
    if box:
        r, c, size = box
        ax.add_patch(plt.Rectangle((c - 0.5, r - 0.5), size, size, fill=False, ec="crimson", lw=2.5))
    ax.set_title(title, fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])


def build_conv(out: Path) -> dict[str, np.ndarray]:
    from convscope.ops import conv2d

    output = conv2d(EXAMPLE_IMAGE[None, None], EXAMPLE_KERNEL[None, None])[0, 0]  # (3, 3)
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(9, 3.3), dpi=100, gridspec_kw={"width_ratios": [5, 3, 3]})
    _grid(axes[0], EXAMPLE_IMAGE, "image 5x5 (first window)", (0, 0, 3))
    _grid(axes[1], EXAMPLE_KERNEL, "kernel 3x3")
    _grid(axes[2], output, "activation map 3x3", (0, 0, 1))
    fig.suptitle("sum of the window * kernel, element by element: 1+1+1+1+0 = 4", fontsize=10)
    _save(fig, out)
    return {"image": EXAMPLE_IMAGE, "kernel": EXAMPLE_KERNEL, "output": output}


def build_vgg_memory(out: Path) -> dict[str, Any]:
    from convscope.analysis import summary

    s = summary("vgg16")
    rows = [r for r in s.rows if r.kind in ("Input", "Conv2d", "MaxPool2d", "Linear")]
    names = [r.name.split(".")[-1] for r in rows]
    acts = np.array([r.activations for r in rows]) * 4 / 2**20      # MiB of fp32 activations
    params = np.array([r.params for r in rows]) * 4 / 2**20         # MiB of fp32 parameters
    plt = _plt()
    fig, axes = plt.subplots(2, 1, figsize=(10, 5.5), dpi=100, sharex=True)
    axes[0].bar(names, acts, color="tab:blue")
    axes[0].set_ylabel("activations, MiB")
    axes[0].set_title(f"VGG16, one 224x224 image: {s.total_activations:,} activation values "
                      f"({s.activation_bytes / 2**20:.1f} MiB), mostly in the first layers", fontsize=10)
    axes[1].bar(names, params, color="tab:orange")
    axes[1].set_ylabel("parameters, MiB")
    axes[1].set_title(f"{s.total_params:,} parameters ({s.param_bytes / 2**20:.0f} MiB), "
                      f"{100 * rows[-3].params / s.total_params:.0f}% of them in fc6", fontsize=10)
    axes[1].tick_params(axis="x", rotation=70, labelsize=8)
    _save(fig, out)
    return {"names": names, "activations": [r.activations for r in rows], "params": [r.params for r in rows]}


def build_compare(out: Path, names: list[str] | None = None) -> dict[str, Any]:
    """The `convscope compare --out` chart for `names` (default: every registered model)."""
    from convscope.analysis.compare import bubble_chart, compare

    entries, skipped = compare(names)
    bubble_chart(entries, out, title="The zoo at a glance (convscope compare): bubble area = parameters")
    return {"entries": entries, "skipped": skipped}


def _serving(run: str | Path):
    """The explorer for `run` served in a thread on a free loopback port; yields its URL."""
    from convscope.web import create_app
    from convscope.web.live import live_server

    return live_server(create_app(run))


def explorer_screenshot(run: str | Path, out: Path, *, timeout_ms: int = 15000) -> Path:
    """Serve `run`, draw a 7 in headless Chromium (Debian's), save the whole page as PNG."""
    import shutil

    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    if chromium is None:
        raise FileNotFoundError("chromium is not installed (sudo apt-get install chromium)")
    with _serving(run) as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(url)
        page.wait_for_selector('body[data-ready="1"]', timeout=timeout_ms)
        _draw_seven(page, timeout_ms)
        out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(out), full_page=True)
        browser.close()
    return out


def _draw_seven(page: Any, timeout_ms: int) -> None:
    box = page.get_by_test_id("draw-canvas").bounding_box()
    scale = box["width"] / 280  # the canvas's own coordinates are 280x280
    points = [(70, 60), (210, 60), (120, 235)]
    page.mouse.move(box["x"] + points[0][0] * scale, box["y"] + points[0][1] * scale)
    page.mouse.down()
    for x, y in points[1:]:
        page.mouse.move(box["x"] + x * scale, box["y"] + y * scale, steps=8)
    page.mouse.up()
    page.wait_for_function("document.body.dataset.pending === '0'", timeout=timeout_ms)


def _demo_run(run: str | None) -> Path:
    """The run to screenshot: --run, else runs/demo, else a lenet5 trained now (~20 s)."""
    from convscope.runs import RunDir

    if run:
        return Path(run)
    if RunDir("runs/demo").weights_path.is_file():
        return Path("runs/demo")
    from convscope.train import train

    out = Path("test-artifacts/cache/docs-lenet5-mnist")
    if not RunDir(out).weights_path.is_file():
        train(model="lenet5", data="mnist", recipe="mnist-fast", epochs=10, out=out, progress=False,
              overwrite=True, seed=0)
    return out


FIGURES: dict[str, Callable[[Path], Any]] = {
    "sobel": build_sobel,
    "kernels": build_kernels,
    "conv": build_conv,
    "vgg-memory": build_vgg_memory,
    "compare": build_compare,
    "explorer": lambda out: explorer_screenshot(_demo_run(None), out),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m convscope.docs_build", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"figures to build (default all: {', '.join(FIGURES)})")
    parser.add_argument("--out", default=str(OUT), help="folder for lecture-NAME.png (default docs/img)")
    parser.add_argument("--run", help="run folder the explorer screenshot serves (default runs/demo or a quick lenet5)")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in FIGURES]
    if unknown:
        parser.error(f"unknown figure {', '.join(unknown)}: choose from {', '.join(FIGURES)}")
    for name in args.names or FIGURES:
        path = Path(args.out) / f"lecture-{name}.png"
        if name == "explorer":
            explorer_screenshot(_demo_run(args.run), path)
        else:
            FIGURES[name](path)
        print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
