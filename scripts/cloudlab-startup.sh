#!/usr/bin/env bash
# CloudLab startup service (profile.py): install nfvlab from the profile's repository on every
# node at boot. CloudLab clones the repository to /local/repository and runs this as root; it is
# re-run at every boot, so it is idempotent (bootstrap.sh is) and leaves a marker when done.
set -euo pipefail
LOG_DIR=/local/logs
mkdir -p "$LOG_DIR" /var/lib/nfvlab
exec >>"$LOG_DIR/nfvlab-startup.log" 2>&1
echo "nfvlab startup: $(date -u +%FT%TZ) on $(hostname) ($(. /etc/os-release; echo "$PRETTY_NAME"))"
cd /local/repository
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# Ubuntu images ship python3 without venv; bootstrap.sh installs deps/apt.txt after this.
apt-get install -y -qq --no-install-recommends python3-venv python3-pip
if scripts/bootstrap.sh; then
  date -u +%FT%TZ >/var/lib/nfvlab/bootstrap.done
  echo "nfvlab startup: done"
  exit 0
fi
# deps/apt.txt names Debian 12 packages; a few have other names or none on other releases (e.g.
# bpftool on Ubuntu 22.04 lives in linux-tools-*). Install what exists, record what does not,
# then make the venv as bootstrap.sh does.
echo "nfvlab startup: bootstrap.sh failed; installing deps/apt.txt package by package"
: >/var/lib/nfvlab/missing-apt.txt
for p in $(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' deps/apt.txt); do
  apt-get install -y -qq --no-install-recommends "$p" || echo "$p" >>/var/lib/nfvlab/missing-apt.txt
done
if grep -qx bpftool /var/lib/nfvlab/missing-apt.txt; then
  apt-get install -y -qq --no-install-recommends linux-tools-common "linux-tools-$(uname -r)" || true
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e ".[dev]"
touch .venv/.nfvlab-installed
date -u +%FT%TZ >/var/lib/nfvlab/bootstrap.done
echo "nfvlab startup: done; apt packages not found here: $(tr '\n' ' ' </var/lib/nfvlab/missing-apt.txt)"
