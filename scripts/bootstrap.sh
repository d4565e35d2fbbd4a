#!/usr/bin/env bash
# Idempotent set-up: .venv with torch and convscope[dev], plus the Debian
# packages the tests and the offline datasets need (chromium for the browser tests,
# nodejs for the page's JavaScript under Node: tests/parity). A second run does nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv
STAMP="$VENV/.convscope-bootstrap"
APT_PKGS=(chromium nodejs dataset-fashion-mnist)

missing_apt=()
for pkg in "${APT_PKGS[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing_apt+=("$pkg")
done
if [ ${#missing_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "bootstrap: installing Debian packages: ${missing_apt[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing_apt[@]}" >/dev/null
  else
    echo "bootstrap: missing Debian packages (${missing_apt[*]}); as root run:" >&2
    echo "  sudo apt-get update && sudo apt-get install -y ${missing_apt[*]}" >&2
    echo "bootstrap: going on without them: the browser (chromium) and Node (nodejs) tests will FAIL" >&2
    echo "  until they are installed; fashion-mnist tests will be skipped." >&2
  fi
fi

# onnxruntime-web (npm, pinned) for `convscope site`, vendored into .cache/ (gitignored).
# Without Node.js/npm the static site cannot be built; `convscope serve` works all the same.
ORT_WEB_VERSION=1.30.0
ORT_WEB_DIR=.cache/onnxruntime-web
if ! grep -qs "\"version\": \"$ORT_WEB_VERSION\"" "$ORT_WEB_DIR/node_modules/onnxruntime-web/package.json"; then
  if command -v npm >/dev/null 2>&1; then
    echo "bootstrap: vendoring onnxruntime-web $ORT_WEB_VERSION from npm into $ORT_WEB_DIR"
    mkdir -p "$ORT_WEB_DIR"
    npm install --prefix "$ORT_WEB_DIR" --no-audit --no-fund --ignore-scripts --no-save --loglevel=error \
      "onnxruntime-web@$ORT_WEB_VERSION" >/dev/null \
      || echo "bootstrap: npm could not fetch onnxruntime-web; \`convscope site\` will try again" >&2
  else
    echo "bootstrap: npm not found: \`convscope site\` (the in-browser explorer) needs Node.js and npm" >&2
    echo "  (sudo apt-get install npm); \`convscope serve\` works without them." >&2
  fi
fi

# The stamp holds a hash of pyproject.toml: a changed dependency list reinstalls.
want=$(sha256sum pyproject.toml | cut -c1-16)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && [ -x "$VENV/bin/convscope" ]; then
  exit 0
fi

PY=${PYTHON:-}
if [ -z "$PY" ]; then
  for cand in python3.11 python3; do
    if command -v "$cand" >/dev/null 2>&1; then PY=$cand; break; fi
  done
fi
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"

case "$(uname -m)" in
  aarch64|arm64) TORCH=(torch==2.9.1 torchvision==0.24.1) ;;
  *) TORCH=(torch==2.14.1 torchvision==0.29.1) ;;
esac
echo "bootstrap: installing ${TORCH[*]} and convscope[dev] into $VENV (first run: a few minutes)"
pip_install() {
  # this machine's pip config lists local indexes that may not exist: drop those warnings
  "$VENV/bin/pip" install -q "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
}
pip_install --upgrade pip >/dev/null
pip_install "${TORCH[@]}"
pip_install -e ".[dev]"
echo "$want" > "$STAMP"
echo "bootstrap: done"
