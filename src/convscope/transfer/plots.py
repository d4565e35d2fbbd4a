"""The two transfer figures (matplotlib, Agg): accuracy vs shots, and Yosinski et al.'s Figure 2."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from convscope.train.plots import save_png

# Figure 2 of Yosinski et al. (2014): B in blue circles, A->B in red diamonds, "+" lighter
STYLE = {
    "BnB": dict(color="#1f3f99", marker="o", mfc="#1f3f99"),
    "BnB+": dict(color="#6fa8f0", marker="o", mfc="#6fa8f0"),
    "AnB": dict(color="#a01818", marker="D", mfc="#a01818"),
    "AnB+": dict(color="#f08ca0", marker="D", mfc="#f08ca0"),
}


def _figure(**kw: Any):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt, plt.subplots(**kw)


def plot_shots(result: dict[str, Any], path: str | Path, *, more: dict[str, dict[str, Any]] | None = None) -> None:
    """Test top-1 against k images per class: fine-tuned vs from scratch.

    more: {label: result} of other fine-tuning settings on the same cuts, drawn as extra lines.
    """
    plt, (fig, ax) = _figure(figsize=(6, 4))
    rows = result["rows"]
    ks = [r["per_class_used"] for r in rows]
    lines = [(rows, "finetune", "o-", "fine-tuned from source")]
    lines += [(other["rows"], "finetune", "^-", label) for label, other in (more or {}).items()]
    lines += [(rows, "scratch", "s--", "from scratch")]
    for rs, key, fmt, label in lines:
        sd = [100 * r.get(f"{key}_sd", 0.0) for r in rs]  # error bars: sd over the repeats
        ax.errorbar(ks, [100 * r[f"{key}_top1"] for r in rs], yerr=sd, fmt=fmt, capsize=3, label=label)
    ax.set_xscale("log")
    ax.set_xlabel("labelled training images per class (k)")
    ax.set_ylabel("test top-1 (%)")
    reps = rows[0].get("repeats", 1) if rows else 1
    ax.set_title(f"{result['source'].split(' (')[0]} -> {result['data']} (mean +- sd of {reps})", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_png(plt, fig, Path(path), dpi=110)


def plot_transferability(result: dict[str, Any], path: str | Path) -> None:
    """Left, Figure 2 of the paper: top-1 on B against n, every repeat a marker, means joined,
    baseB as the reference line. Right: the means minus the same split's baseB."""
    plt, (fig, (ax, ax_d)) = _figure(ncols=2, figsize=(12, 4.6), gridspec_kw={"width_ratios": [3, 2]})
    layers = result["layers"]
    ns = list(range(1, len(layers) + 1))
    ticks = ([0, *ns], ["base", *[f"{n}\n{name}" for n, name in zip(ns, layers)]])
    base = [100 * v for v in result["base"]["baseB"]["values"]]
    ax.axhline(sum(base) / len(base), color="grey", ls="--", lw=1, label="baseB (mean)")
    ax.plot([0] * len(base), base, "o", color="black", mfc="white", ms=8, label="baseB")
    ax_d.axhline(0, color="grey", ls="--", lw=1)
    offsets = {"BnB": -0.15, "BnB+": -0.05, "AnB": 0.05, "AnB+": 0.15}
    for treatment, style in STYLE.items():
        rows = [r for r in result["table"] if r["treatment"] == treatment]
        xs = [r["n"] + offsets[treatment] for r in rows]
        for x, r in zip(xs, rows):
            ax.plot([x] * len(r["values"]), [100 * v for v in r["values"]], linestyle="none", alpha=0.45, ms=5,
                    **style)
        ax.plot(xs, [100 * r["mean"] for r in rows], lw=1.5, ms=7, label=treatment, **style)
        ax_d.plot(xs, [100 * r["delta"] for r in rows], lw=1.5, ms=6, label=treatment, **style)
    for a in (ax, ax_d):
        a.set_xticks(*ticks)
        a.set_xlabel("layer n at which the network is chopped and retrained")
        a.grid(alpha=0.3)
    ax.set_ylabel("top-1 on B's test split (%)")
    ax_d.set_ylabel("minus the same split's baseB (points)")
    reps = len(base)
    ax.set_title(f"{result['model']} on {result['data']}, {reps} A/B split(s): Yosinski et al. 2014, Fig. 2 style",
                 fontsize=9)
    ax_d.set_title("mean difference to baseB", fontsize=9)
    ax.legend(fontsize=8, ncol=3, loc="lower left")
    fig.tight_layout()
    save_png(plt, fig, Path(path), dpi=110)
