"""Deliberate bugs, each put alone into a copy of the tree: the tests named for it must fail.

    python scripts/mutants.py              # all of them (`make mutants`)
    python scripts/mutants.py --list       # the table
    python scripts/mutants.py --only NAME[,NAME...]
    python scripts/mutants.py --no-baseline

The tree (src/, tests/, pyproject.toml, and test-artifacts/cache: runs there are
keyed by a hash of the code that trained them) is copied once to a temporary
folder. The targeted tests first run there unchanged (the baseline: a test that
fails anyway would "kill" every mutation). Then each mutation is applied alone
(its file's exact old text replaced by the new text), its tests are run with
PYTHONPATH pointing at the copy's src/, and the file is restored.

Prints `killed NAME` (a test failed), `survived NAME` (every test passed) or
`stale NAME` (the old text is not in the file exactly once: the mutation has gone
out of date and must be re-pointed), then `N killed, M survived`. Exits non-zero
if any mutation survived or is stale, or the baseline fails.

To re-point a mutation after code moves, edit its row in MUTANTS: the file, the
exact old text (unique in that file), the new text and the tests that kill it.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COPY = ("src", "tests", "pyproject.toml")
CACHE = Path("test-artifacts") / "cache"
TIMEOUT = 600  # seconds per pytest run; a mutation that hangs the tests counts as killed


@dataclass(frozen=True)
class Mutant:
    name: str
    file: str          # relative to the repository root
    old: str           # exact text, found exactly once in `file`
    new: str
    tests: tuple[str, ...]  # pytest arguments: paths, node ids, "-k" expressions
    what: str = ""


M = Mutant
MUTANTS: list[Mutant] = [
    # ---- the table ------------------------------------------------------------------
    M("ops_conv2d_bias_sign", "src/convscope/ops/conv.py",
      "        out += b[:, None, None]", "        out -= b[:, None, None]",
      ("tests/ops/test_conv.py",), "ops.conv2d subtracts the bias"),
    M("ops_conv2d_backward_dx_sign", "src/convscope/ops/conv.py",
      "    dx = np.ascontiguousarray(dxp[:, :, top:top + h, left:left + w_])",
      "    dx = np.ascontiguousarray(-dxp[:, :, top:top + h, left:left + w_])",
      ("tests/ops/test_conv.py",), "conv2d_backward's dx has the wrong sign"),
    M("geometry_padding_counted_once", "src/convscope/geometry.py",
      "    span = n + 2 * padding - f_eff\n    if ceil_mode:", "    span = n + padding - f_eff\n    if ceil_mode:",
      ("tests/test_geometry.py",), "conv_output_size adds the padding on one side only"),
    M("geometry_suggest_fixes_never_padding_0", "src/convscope/geometry.py",
      "    for p in range(max(f_eff, stride)):", "    for p in range(1, max(f_eff, stride)):",
      ("tests/test_geometry.py",), "suggest_fixes never offers padding 0"),
    M("api_predict_ranks_2_3_labels_swapped", "src/convscope/web/answer.py",
      '"top": [{"index": i, "label": snap.classes[i], "probability": probs[i]} for i in order[:5]],',
      '"top": [{"index": i, "label": snap.classes[order[{1: 2, 2: 1}.get(r, r)]], "probability": probs[i]}'
      ' for r, i in enumerate(order[:5])],',
      ("tests/web/test_topk_ranks.py",), "/api/predict: the labels of ranks 2 and 3 swapped"),
    M("api_predict_classes_3_4_swapped", "src/convscope/web/answer.py",
      "    probs = torch.softmax(logits.double(), dim=0).tolist()",
      "    probs = torch.softmax(logits[[0, 1, 2, 4, 3, 5, 6, 7, 8, 9]].double(), dim=0).tolist()",
      ("tests/web/test_topk_ranks.py",), "/api/predict: classes 3 and 4 swapped"),
    M("predictor_classes_3_4_swapped", "src/convscope/predictor.py",
      '"label": str(labels[i]) if i < len(labels) else str(i)',
      '"label": str(labels[{3: 4, 4: 3}.get(i, i)]) if i < len(labels) else str(i)',
      ("tests/web/test_topk_ranks.py", "-k", "predict_command"),
      "`convscope predict` (Predictor.top): labels 3 and 4 swapped"),
    M("page_paints_map_m_plus_1", "src/convscope/web/static/network.js",
      "    const off = pos * w * h;", "    const off = (pos + 1) * w * h;",
      ("tests/e2e/test_canvas_readback.py",), "the page paints feature map m+1 in map m's canvas"),
    M("train_loop_no_optimizer_step", "src/convscope/train/loop.py",
      "        self.opt.step()\n", "",
      ("tests/web/test_trained.py",), "opt.step() removed: nothing is learnt"),
    # ---- ops ----------------------------------------------------------------------------------
    M("ops_max_pool_backward_to_the_minimum", "src/convscope/ops/pool.py",
      "    winner = flat.argmax(axis=-1)", "    winner = flat.argmin(axis=-1)",
      ("tests/ops/test_pool.py",), "max_pool2d_backward routes the gradient to the smallest value"),
    M("ops_conv2d_naive_no_bias", "src/convscope/ops/conv.py",
      "                out[n, o] += b[o]                 # add the bias",
      "                out[n, o] += 0 * b[o]             # add the bias",
      ("tests/ops/test_conv.py",), "conv2d_naive forgets the bias"),
    # ---- geometry -----------------------------------------------------------------------------
    M("geometry_receptive_field_jump_added", "src/convscope/geometry.py",
      "    return r + (f_eff - 1) * j, j * stride, start", "    return r + (f_eff - 1) * j, j + stride - 1, start",
      ("tests/test_geometry.py",), "receptive_field adds strides instead of multiplying them"),
    # ---- models -------------------------------------------------------------------------------
    M("models_convnet_head_max_pool", "src/convscope/models/small_cnn.py",
      "self.global_pool = nn.AdaptiveAvgPool2d(head_pool)", "self.global_pool = nn.AdaptiveMaxPool2d(head_pool)",
      ("tests/models/test_small_cnn.py",), "convnet_*'s head max-pools instead of averaging"),
    M("models_nasnet_no_skip_reduction_input", "src/convscope/models/nasnet.py",
      'x_prev, x = (x_prev if name.startswith("reduction_cell") else x), out', "x_prev, x = x, out",
      ("tests/models/test_nasnet_functional.py",), "NASNet: the cell after a reduction reads the wrong h_{i-1}"),
    M("models_nasnet_avg_counts_padding", "src/convscope/models/nasnet.py",
      "F.avg_pool2d(x, k, 1, padding=k // 2, count_include_pad=False)",
      "F.avg_pool2d(x, k, 1, padding=k // 2, count_include_pad=True)",
      ("tests/models/test_nasnet_functional.py",), "NASNet's stride-1 average pool counts the zero padding"),
    # ---- analysis -----------------------------------------------------------------------------
    M("analysis_conv_macs_ignore_groups", "src/convscope/analysis/counting.py",
      "        return out.numel() * math.prod(weight.shape[1:])",
      "        return out.numel() * math.prod(weight.shape[2:]) * args[0].shape[1]",
      ("tests/analysis/test_macs.py", "-k", "mobilenet"), "MACs of a grouped convolution counted as dense"),
    M("analysis_linear_macs_off", "src/convscope/analysis/counting.py",
      "        return a.shape[0] * a.shape[1] * b.shape[1]", "        return a.shape[0] * a.shape[1] * (b.shape[1] + 1)",
      ("tests/analysis/test_summary.py", "-k", "golden or torchinfo"), "a linear layer's MACs count the bias"),
    # ---- training -----------------------------------------------------------------------------
    M("train_topk_is_top1", "src/convscope/train/metrics.py",
      "    return torch.stack([cum[min(k, num_classes) - 1] for k in ks])", "    return torch.stack([cum[0] for k in ks])",
      ("tests/train/test_metrics.py",), "top-5 reports top-1"),
    # ---- transfer -----------------------------------------------------------------------------
    M("transfer_finetune_starts_from_scratch", "src/convscope/transfer/finetune.py",
      "    model = copy.deepcopy(source.model).train()\n",
      "    model = copy.deepcopy(source.model).train()\n"
      "    [m.reset_parameters() for m in model.modules() if hasattr(m, 'reset_parameters')]\n",
      ("tests/transfer/test_transfer_margin.py",), "fine-tuning throws the source's weights away"),
    M("transfer_frozen_stages_trained", "src/convscope/transfer/finetune.py",
      "    unfrozen = [s for s in plan.stages if s.name not in frozen]", "    unfrozen = list(plan.stages)",
      ("tests/transfer/test_finetune.py", "-k", "frozen"), "--freeze N: the frozen stages are trained anyway"),
    # ---- the predictor (preprocessing and predict) --------------------------------------------
    M("preprocess_centre_of_mass_off_by_one", "src/convscope/data/preprocess.py",
      "    centre = MNIST_SIZE // 2  # 14", "    centre = MNIST_SIZE // 2 + 1  # 14",
      ("tests/data/test_preprocess.py",), "MNIST-style centring puts the centre of mass at 15, 15"),
    M("predictor_softmax_over_images", "src/convscope/predictor.py",
      "        return torch.softmax(self.logits(x), dim=1)", "        return torch.softmax(self.logits(x), dim=0)",
      ("tests/web/test_topk_ranks.py", "-k", "predict_command"),
      "Predictor.probabilities normalises across the images of a batch"),
    # ---- the server ---------------------------------------------------------------------------
    M("server_map_min_is_max", "src/convscope/web/encoding.py",
      '        "map_min": [float(v) for v in lo[:, 0]],', '        "map_min": [float(v) for v in hi[:, 0]],',
      ("tests/web/test_api.py", "-k", "encoding or layer_by_layer"), "activations sent with the wrong scale"),
    M("server_batch_rows_min_is_max", "src/convscope/web/encoding.py",
      '"min": whole_lo[r], "max": whole_hi[r], "map_min": map_lo[r],', '"min": whole_lo[r], "max": whole_hi[r], "map_min": map_hi[r],',
      ("tests/web/test_api.py", "-k", "row_by_row"), "a batch's activations sent with the wrong scale"),
    M("server_preprocess_flag_ignored", "src/convscope/web/decode.py",
      'return Request(image=read(obj[given[0]]), preprocess=preprocess)',
      'return Request(image=read(obj[given[0]]), preprocess=True)',
      ("tests/web/test_api.py", "-k", "preprocess_false"), "/api/predict ignores \"preprocess\": false"),
    # ---- the page -----------------------------------------------------------------------------
    M("page_second_guess_is_rank_3", "src/convscope/web/static/app.js",
      "    const [a, b] = body.top;", "    const [a, , b] = body.top;",
      ("tests/e2e/test_canvas_readback.py", "-k", "guesses"), "the page's second guess shows rank 3"),
    M("page_bars_shifted_by_one", "src/convscope/web/static/app.js",
      "      setBar(bar, body.probabilities[i]);", "      setBar(bar, body.probabilities[(i + 1) % 10]);",
      ("tests/e2e/test_canvas_readback.py", "-k", "guesses"), "bar i shows class i+1's probability"),
]


def check_table(mutants: list[Mutant]) -> None:
    names = [m.name for m in mutants]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise SystemExit(f"mutants.py: duplicate names {sorted(dupes)}")


def make_copy(dest: Path) -> None:
    for name in COPY:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(src, dest / name)
    if (ROOT / CACHE).is_dir():  # trained runs keyed by a hash of their code: safe to reuse
        shutil.copytree(ROOT / CACHE, dest / CACHE, ignore=shutil.ignore_patterns("*.lock", ".*.lock"))


def env_for(tree: Path) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(tree / "src"), OMP_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1",
               PYTHONHASHSEED="0")
    env.pop("PYTEST_ADDOPTS", None)
    return env


def pytest(tree: Path, args: tuple[str, ...]) -> tuple[int, str]:
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "--timeout", str(TIMEOUT), *args]
    try:
        proc = subprocess.run(cmd, cwd=tree, env=env_for(tree), capture_output=True, text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        return -1, "timeout"
    return proc.returncode, (proc.stdout + proc.stderr)[-3000:]


def imports_from(tree: Path) -> Path:
    out = subprocess.run([sys.executable, "-c", "import convscope; print(convscope.__file__)"], cwd=tree,
                         env=env_for(tree), capture_output=True, text=True, check=True).stdout.strip()
    return Path(out).resolve()


def baseline(tree: Path, mutants: list[Mutant]) -> bool:
    """Every targeted selection passes on the unchanged copy."""
    groups: dict[tuple[str, ...], None] = {}
    for m in mutants:
        groups.setdefault(m.tests, None)
    paths = [t for t in groups if "-k" not in t]
    plain = sorted({p for t in paths for p in t})
    runs = ([tuple(plain)] if plain else []) + [t for t in groups if "-k" in t and t[0] not in plain]
    ok = True
    for args in runs:
        t0 = time.monotonic()
        code, out = pytest(tree, args)
        if code != 0:
            print(f"baseline FAILED ({' '.join(args)}): the unchanged tree does not pass\n{out}", flush=True)
            ok = False
        else:
            print(f"baseline ok: {' '.join(args)} ({time.monotonic() - t0:.0f} s)", flush=True)
    return ok


def run_one(tree: Path, m: Mutant, verbose: bool) -> str:
    path = tree / m.file
    original = path.read_text() if path.is_file() else None
    found = original.count(m.old) if original is not None else 0
    if found != 1:
        where = "missing file" if original is None else f"old text found {found} times"
        print(f"stale {m.name} ({m.file}: {where})", flush=True)
        return "stale"
    t0 = time.monotonic()
    try:
        path.write_text(original.replace(m.old, m.new, 1))
        code, out = pytest(tree, m.tests)
    finally:
        path.write_text(original)
    seconds = time.monotonic() - t0
    if code == 5:  # no tests collected: the selection itself is out of date
        print(f"stale {m.name} (no tests selected by {' '.join(m.tests)})", flush=True)
        return "stale"
    verdict = "survived" if code == 0 else "killed"
    note = " (timeout)" if code == -1 else ""
    print(f"{verdict} {m.name}{note}  [{m.file}; {seconds:.0f} s]", flush=True)
    if verbose and verdict == "survived":
        print(out, flush=True)
    return verdict


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--list", action="store_true", help="print the table and exit")
    p.add_argument("--check", action="store_true", help="only check that every old text is found once")
    p.add_argument("--only", help="comma-separated names to run")
    p.add_argument("--no-baseline", action="store_true", help="skip the run of the unchanged tree")
    p.add_argument("--verbose", action="store_true", help="show pytest's output of survivors")
    args = p.parse_args(argv)
    check_table(MUTANTS)
    mutants = MUTANTS
    if args.only:
        wanted = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = sorted(set(wanted) - {m.name for m in MUTANTS})
        if unknown:
            p.error(f"unknown mutation(s): {', '.join(unknown)}")
        mutants = [m for m in MUTANTS if m.name in wanted]
    if args.list:
        for m in mutants:
            print(f"{m.name:42} {m.file:38} {' '.join(m.tests)}  -- {m.what}")
        return 0
    if args.check:
        bad = 0
        for m in mutants:
            path = ROOT / m.file
            found = path.read_text().count(m.old) if path.is_file() else 0
            if found != 1:
                bad += 1
                print(f"stale {m.name} ({m.file}: old text found {found} times)")
        print(f"{len(mutants) - bad} of {len(mutants)} mutations apply")
        return 1 if bad else 0
    # SIGTERM unwinds like Ctrl-C: the running pytest is killed and the copy removed
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="convscope-mutants-") as tmp:
        tree = Path(tmp)
        make_copy(tree)
        got = imports_from(tree)
        if not got.is_relative_to(tree):
            print(f"error: the copy imports convscope from {got}, not from its own src/", flush=True)
            return 2
        if not args.no_baseline and not baseline(tree, mutants):
            return 2
        verdicts = [run_one(tree, m, args.verbose) for m in mutants]
    killed, survived, stale = (verdicts.count(v) for v in ("killed", "survived", "stale"))
    print(f"({time.monotonic() - t0:.0f} s in all)", flush=True)
    if stale:
        print(f"{stale} stale (old text not found: re-point them in scripts/mutants.py)", flush=True)
    print(f"{killed} killed, {survived} survived", flush=True)
    return 1 if survived or stale else 0


if __name__ == "__main__":
    sys.exit(main())
