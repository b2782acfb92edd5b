#!/usr/bin/env bash
# CloudLab startup service (profile.py): install nfvlab from the profile's repository on every
# node at boot. CloudLab clones the repository to /local/repository and runs this as root; it is
# re-run at every boot, so it is idempotent (bootstrap.sh is) and leaves a marker when done.
set -euo pipefail
LOG_DIR=/local/logs
mkdir -p "$LOG_DIR"
exec >>"$LOG_DIR/nfvlab-startup.log" 2>&1
echo "nfvlab startup: $(date -u +%FT%TZ) on $(hostname)"
cd /local/repository
export DEBIAN_FRONTEND=noninteractive
# Ubuntu images ship python3 without venv; bootstrap.sh installs deps/apt.txt after this.
if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends python3-venv
fi
scripts/bootstrap.sh
mkdir -p /var/lib/nfvlab
date -u +%FT%TZ >/var/lib/nfvlab/bootstrap.done
echo "nfvlab startup: done"
