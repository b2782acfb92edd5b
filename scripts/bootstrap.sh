#!/usr/bin/env bash
# Install what nfvlab needs on a fresh Debian machine: the apt packages in deps/apt.txt and a venv
# with the package. Idempotent and quiet when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY=${PYTHON:-python3}

mapfile -t pkgs < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' deps/apt.txt)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "bootstrap: installing apt packages: ${missing[*]}"
  if [ "$(id -u)" != 0 ]; then echo "bootstrap: need root to install packages" >&2; exit 1; fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

stamp="$VENV/.nfvlab-installed"
if [ ! -x "$VENV/bin/python" ]; then
  echo "bootstrap: creating venv $VENV"
  "$PY" -m venv "$VENV"
fi
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "bootstrap: installing nfvlab into $VENV"
  "$VENV/bin/pip" install -q --upgrade pip
  "$VENV/bin/pip" install -q -e ".[dev]"
  touch "$stamp"
fi
