#!/usr/bin/env bash
# ctest's entry for a reference test: run.sh PYTHON SCRIPT ARGS...
# PYTHON is the reference environment's interpreter (scripts/pyref.sh, passed to CMake as
# MODSERVE_PYREF_PYTHON). A missing environment is a failure, never a skip, unless the
# developer opted out by hand with MODSERVE_NO_PYREF=1 (exit 77: ctest's "skipped").
py=$1; shift
if [ "${MODSERVE_NO_PYREF:-0}" = 1 ]; then
  echo "skipped: MODSERVE_NO_PYREF=1 (reference environment opted out)"
  exit 77
fi
if [ -z "$py" ] || [ ! -x "$py" ]; then
  echo "FAIL: no reference environment (MODSERVE_PYREF_PYTHON='$py'): run scripts/pyref.sh and configure with -DMODSERVE_PYREF_PYTHON=<its python>" >&2
  exit 1
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
exec "$py" "$@"
