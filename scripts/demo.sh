#!/usr/bin/env bash
# `make demo`: train the explorer's network once (lenet5_harley, Adam Harley's LeNet-5
# widths 120 -> 100 -> 10, on the offline MNIST digits,
# `--recipe mnist-fast`, under 2 minutes on 2 CPU cores), then serve the explorer.
# The next start is instant: the run in runs/demo is reused.
#   PORT=8001 make demo          # another port
#   HOST=0.0.0.0 make demo       # reachable from other machines (careful)
set -euo pipefail
cd "$(dirname "$0")/.."
CS=.venv/bin/convscope
RUN=${DEMO_RUN:-runs/demo}
READY="$RUN/.demo-ready"   # written only after training finished

if [ ! -f "$READY" ]; then
  if [ -f "$RUN/config.json" ] && [ -d "$RUN/state" ]; then
    echo "== Continuing the interrupted demo training in $RUN"
    $CS train --out "$RUN" --resume
  else
    echo "== Training the demo model (lenet5_harley on MNIST, recipe mnist-fast) into $RUN"
    $CS train --model lenet5_harley --data mnist --recipe mnist-fast --out "$RUN" --overwrite
  fi
  touch "$READY"
fi

echo "== Serving the explorer (Ctrl+C to stop)"
exec $CS serve --run "$RUN" --host "${HOST:-127.0.0.1}" --port "${PORT:-8000}"
