#!/usr/bin/env bash
# Installs what modserve needs from Debian's packages (run as root). Idempotent:
# skips apt entirely when every package is already installed.
set -euo pipefail
pkgs=(build-essential cmake pkg-config git
      libopenblas-dev libcjson-dev libstb-dev libjpeg62-turbo-dev zlib1g-dev
      libmicrohttpd-dev libcurl4-openssl-dev libpcre2-dev libicu-dev
      gnuplot-nox curl prometheus clang libclang-rt-14-dev python3-venv)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
