#!/usr/bin/env bash
# Builds (or reuses) the Python virtual environment with the reference libraries the
# tests compare against: torch, transformers, tokenizers, safetensors, Pillow, numpy and
# the openai client, pinned in tests/ref/requirements.txt and tests/ref/constraints.txt.
#
#   bash scripts/pyref.sh          prints the environment's python on its last line
#
# Where: $MODSERVE_PYREF_VENV, default .venv-ref/ in the repository root (ignored by
# git). Reused when its stamp matches the pins; rebuilt otherwise. Needs Debian's
# python3-venv (scripts/install-deps.sh installs it) and the Python package index.
# MODSERVE_NO_PYREF=1 opts out: nothing is built and the reference tests report skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${MODSERVE_NO_PYREF:-0}" = 1 ]; then
  echo "pyref: MODSERVE_NO_PYREF=1: no reference environment (reference tests skip)" >&2
  exit 0
fi
venv=${MODSERVE_PYREF_VENV:-$PWD/.venv-ref}
stamp=$(cat tests/ref/requirements.txt tests/ref/constraints.txt | sha256sum | cut -c1-16)
if [ -x "$venv/bin/python" ] && [ "$(cat "$venv/.modserve-stamp" 2>/dev/null)" = "$stamp" ]; then
  echo "$venv/bin/python"
  exit 0
fi
echo "pyref: building $venv (first time: about 2 minutes and 5.4 GB)" >&2
start=$(date +%s)
rm -rf "$venv"
/usr/bin/python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q --disable-pip-version-check --no-cache-dir \
  -r tests/ref/requirements.txt -c tests/ref/constraints.txt >&2
# Prove the references import before saying the environment is ready.
"$venv/bin/python" -c "import torch, transformers, tokenizers, safetensors, PIL, numpy, openai" >&2
echo "$stamp" > "$venv/.modserve-stamp"
echo "pyref: ready in $(( $(date +%s) - start )) s, $(du -sh "$venv" | cut -f1)" >&2
echo "$venv/bin/python"
