#!/usr/bin/env bash
# `make demo`: train the explorer's network once (lenet5_harley, Adam Harley's LeNet-5
# widths 120 -> 100 -> 10, `--recipe mnist-fast`, on all 5,000 offline MNIST digits:
# --val-fraction 0 --test-fraction 0; under 2 minutes on 2 CPU cores), then serve the explorer.
# How well it reads digits it never saw is measured by 5-fold cross-validation
# (benchmarks/mnist_kfold.py, docs/training.md), since no digit is left to test it on.
# The next start is instant: the run in runs/demo is reused while the recipe and the
# arguments it was trained with are those below; otherwise it is trained again.
#   PORT=8001 make demo          # another port
#   HOST=0.0.0.0 make demo       # reachable from other machines (careful)
set -euo pipefail
cd "$(dirname "$0")/.."
CS=${CONVSCOPE:-.venv/bin/convscope}
PY=${PYTHON:-.venv/bin/python}
RUN=${DEMO_RUN:-runs/demo}
READY="$RUN/.demo-ready"   # written only after training finished; holds what it was trained with
ARGS=(--model lenet5_harley --data mnist --recipe mnist-fast --val-fraction 0 --test-fraction 0)
SPEC="${ARGS[*]} $($PY -c 'import json; from convscope.train.config import RECIPES; print(json.dumps(RECIPES["mnist-fast"], sort_keys=True))')"

if [ ! -f "$READY" ] || [ "$(cat "$READY")" != "$SPEC" ]; then
  if [ ! -f "$READY" ] && [ -f "$RUN/config.json" ] && [ -d "$RUN/state" ]; then
    echo "== Continuing the interrupted demo training in $RUN"
    $CS train --out "$RUN" --resume
  else
    [ -f "$READY" ] && echo "== $RUN was trained with another recipe: training it again"
    echo "== Training the demo model (lenet5_harley on all 5,000 offline MNIST digits, recipe mnist-fast) into $RUN"
    rm -f "$READY"
    $CS train "${ARGS[@]}" --out "$RUN" --overwrite
  fi
  printf '%s' "$SPEC" > "$READY.tmp" && mv "$READY.tmp" "$READY"
fi

echo "== Serving the explorer (Ctrl+C to stop)"
exec $CS serve --run "$RUN" --host "${HOST:-127.0.0.1}" --port "${PORT:-8000}"
