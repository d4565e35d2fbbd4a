#!/usr/bin/env bash
# `make demo`: a short walk through the lecture's convolution examples via the CLI.
# (The explorer issue turns this into: train the demo model if needed, then serve.)
set -euo pipefail
cd "$(dirname "$0")/.."
CS=.venv/bin/convscope
echo "== A 7x7 input, a 3x3 kernel, stride 1"; $CS conv --input 7 --kernel 3 --stride 1
echo; echo "== stride 2"; $CS conv --input 7 --kernel 3 --stride 2
echo; echo "== stride 3 does not fit"; $CS conv --input 7 --kernel 3 --stride 3 || true
echo; echo "== padding 1 keeps 7x7"; $CS conv --input 7 --kernel 3 --padding 1
