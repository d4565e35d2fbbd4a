"""The zoo at a glance: ImageNet top-1 against multiply-adds, bubble area by parameters.

Parameters and multiply-adds are measured here (`summary`, meta device, each
model at its native resolution); accuracies are read from `accuracy.json`,
which cites a source for every entry (the paper, or torchvision's published
numbers for its weights). Models without an entry are listed as skipped.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Sequence


@dataclass
class Entry:
    name: str
    params: int
    macs: int
    input_size: tuple[int, int, int]
    top1: float
    top5: float | None
    source: str
    cite: str = ""


def accuracies() -> dict[str, dict]:
    """The packaged table: name -> {"top1", "top5", "source"} (percent)."""
    text = resources.files("convscope.analysis").joinpath("accuracy.json").read_text()
    return json.loads(text)["models"]


def compare(names: Sequence[str] | None = None) -> tuple[list[Entry], dict[str, str]]:
    """(entries sorted by MACs, {skipped name: why}) for `names` (default: every registered model).

    Parameters are those of the inference network (an eval forward): GoogLeNet's
    auxiliary training heads are left out, as in the published counts."""
    from convscope.analysis.summary import summary
    from convscope.models import list_models

    known = list_models()
    table = accuracies()
    entries: list[Entry] = []
    skipped: dict[str, str] = {}
    for name in names or known:
        if name not in known:
            summary(name)  # raises the registry's "unknown model ... did you mean" error
        if name not in table:
            skipped[name] = "no published ImageNet accuracy in accuracy.json"
            continue
        s = summary(name)
        acc = table[name]
        entries.append(Entry(name, s.params_in_forward, s.total_macs, s.input_size, acc["top1"], acc.get("top5"),
                             acc["source"], acc.get("cite", "")))
    return sorted(entries, key=lambda e: e.macs), skipped


def table(entries: Sequence[Entry]) -> str:
    width = max([len(e.name) for e in entries] + [5])
    lines = [f"{'model'.ljust(width)}  {'input':<9}  {'params':>8}  {'MACs':>8}  {'top-1':>6}  source",
             "(MACs = multiply-accumulates, measured by convscope; FLOPs = 2 x MACs)"]
    for e in entries:
        size = "x".join(str(v) for v in e.input_size)
        lines.append(f"{e.name.ljust(width)}  {size:<9}  {e.params / 1e6:>7.1f}M  {e.macs / 1e9:>7.2f}G  "
                     f"{e.top1:>5.1f}%  {e.cite}")
    return "\n".join(lines)


def bubble_chart(entries: Sequence[Entry], out: str | Path, *, title: str | None = None) -> Path:
    """Top-1 against G-MACs (log axis), bubble area proportional to parameters (after Canziani et al. 2016)."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 6.5), dpi=110)
    biggest = max(e.params for e in entries)
    for i, e in enumerate(entries):
        area = 2500 * e.params / biggest + 15  # area, not radius, scales with the parameter count
        ax.scatter(e.macs / 1e9, e.top1, s=area, alpha=0.45, color=plt.cm.tab20(i % 20), edgecolors="k",
                   linewidths=0.5)
        ax.annotate(e.name, (e.macs / 1e9, e.top1), fontsize=7, ha="center", va="bottom",
                    xytext=(0, 4), textcoords="offset points")
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_xlabel("multiply-adds per image, G-MACs (log scale; FLOPs = 2 x MACs)")
    ax.set_ylabel("ImageNet top-1 accuracy, % (sources in accuracy.json)")
    ax.set_title(title or "The zoo at a glance: bubble area = parameters")
    for p in (5e6, 25e6, 100e6):
        ax.scatter([], [], s=2500 * p / biggest + 15, alpha=0.3, color="grey", label=f"{p / 1e6:g}M params")
    ax.legend(loc="lower right", labelspacing=2.0, borderpad=1.2, frameon=False)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
