#!/usr/bin/env bash
# What StateAlyzr's real-middlebox study needs beyond scripts/bootstrap.sh, installed unattended:
#   1. deb-src entries mirroring the machine's Debian deb entries (same URIs, suites, components,
#      signing key), so `apt-get source` can fetch the recipes' sources;
#   2. the Debian build dependencies of every apt recipe (apt-get build-dep) plus the recipes' own
#      build_deps and the toolchain (bear, gdb, clang-14, llvm-14, dpkg-dev).
# Idempotent: nothing is written, updated or installed when everything is already there.
# Used by `make exp-statealyzr`, not by `make test` (the ground truth needs none of it).
set -euo pipefail
cd "$(dirname "$0")/.."
RECIPES=${RECIPES:-src/nfvlab/statealyzr/corpus/recipes}
SRC_FILE=${SRC_FILE:-/etc/apt/sources.list.d/nfvlab-statealyzr-src.sources}
APT_ETC=${APT_ETC:-/etc/apt}
# libdaq-dev: daq.h for the daqmon ground truth (a sweep point of experiments/statealyzr-table.yaml)
TOOLS=(bear gdb clang-14 llvm-14 dpkg-dev libdaq-dev)
export DEBIAN_FRONTEND=noninteractive

say() { echo "statealyzr-deps: $*"; }

# Source packages of the recipes fetched with apt (source: {apt: NAME}) and their extra build_deps.
apt_recipes() { sed -n 's/^source:[[:space:]]*{[[:space:]]*apt:[[:space:]]*\([A-Za-z0-9.+-]*\).*/\1/p' "$RECIPES"/*.yaml; }
recipe_deps() {
  for f in "$RECIPES"/*.yaml; do
    grep -q '^source:.*apt:' "$f" || continue
    sed -n 's/^build_deps:[[:space:]]*\[\(.*\)\].*/\1/p' "$f" | tr ',' '\n' | tr -d ' '
  done | sed '/^$/d' | sort -u
}

# The deb-src stanzas the machine lacks (deb822 text on stdout, empty when every Debian deb entry
# already has a deb-src twin). Only the distribution's own suites are mirrored (codename,
# codename-updates, codename-security...), not third-party repositories.
missing_deb_src() {
  python3 - "$APT_ETC" "$SRC_FILE" <<'PY'
import glob, os, re, sys
etc, ours = sys.argv[1], sys.argv[2]
codename = ""
for line in open("/etc/os-release"):
    if line.startswith("VERSION_CODENAME="):
        codename = line.split("=", 1)[1].strip().strip('"')

def one_line(path):
    for raw in open(path, errors="replace"):
        line = raw.split("#", 1)[0].strip()
        m = re.match(r"^(deb|deb-src)\s+(?:\[([^\]]*)\]\s+)?(\S+)\s+(\S+)\s*(.*)$", line)
        if not m:
            continue
        opts = dict(o.split("=", 1) for o in (m.group(2) or "").split() if "=" in o)
        yield {"types": [m.group(1)], "uris": [m.group(3)], "suites": [m.group(4)],
               "components": m.group(5).split(), "signed_by": opts.get("signed-by", ""),
               "enabled": True}

def deb822(path):
    text = open(path, errors="replace").read()
    for block in re.split(r"\n\s*\n", text):
        fields, key = {}, None
        for raw in block.splitlines():
            if raw.startswith("#"):
                continue
            if raw[:1] in (" ", "\t") and key:
                fields[key] += " " + raw.strip()
                continue
            if ":" in raw:
                key, val = raw.split(":", 1)
                key = key.strip().lower()
                fields[key] = val.strip()
        if "types" not in fields:
            continue
        yield {"types": fields["types"].split(), "uris": fields.get("uris", "").split(),
               "suites": fields.get("suites", "").split(),
               "components": fields.get("components", "").split(),
               "signed_by": fields.get("signed-by", ""),
               "enabled": fields.get("enabled", "yes").lower() != "no"}

entries = []
for p in [os.path.join(etc, "sources.list")] + sorted(glob.glob(os.path.join(etc, "sources.list.d", "*.list"))):
    if os.path.isfile(p):
        entries += list(one_line(p))
for p in sorted(glob.glob(os.path.join(etc, "sources.list.d", "*.sources"))):
    entries += list(deb822(p))
if os.path.isfile(ours) and os.path.dirname(ours) != os.path.join(etc, "sources.list.d"):
    entries += list(deb822(ours))   # our own file kept outside the apt directory (tests)

norm = lambda u: u.rstrip("/")
have = {(norm(u), s, c) for e in entries if e["enabled"] and "deb-src" in e["types"]
        for u in e["uris"] for s in e["suites"] for c in e["components"]}
want = {}   # (uri, suite, signed_by) -> components lacking a deb-src
for e in entries:
    if not e["enabled"] or "deb" not in e["types"]:
        continue
    for u in e["uris"]:
        for s in e["suites"]:
            if codename and not (s == codename or s.startswith((codename + "-", codename + "/"))):
                continue
            for c in e["components"]:
                if (norm(u), s, c) not in have:
                    want.setdefault((u, s, e["signed_by"]), [])
                    if c not in want[(u, s, e["signed_by"])]:
                        want[(u, s, e["signed_by"])].append(c)
out = []
for (u, s, key), comps in sorted(want.items()):
    st = [f"Types: deb-src", f"URIs: {u}", f"Suites: {s}", f"Components: {' '.join(comps)}"]
    if key:
        st.append(f"Signed-By: {key}")
    out.append("\n".join(st))
print("\n\n".join(out))
PY
}

if [ "${1:-}" = --print-missing-deb-src ]; then   # what would be added, nothing else
  missing_deb_src
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  say "need root (apt sources, apt-get build-dep)" >&2
  exit 1
fi

mapfile -t srcpkgs < <(apt_recipes)
updated=no
stanzas=$(missing_deb_src)
if [ -n "$stanzas" ]; then
  say "adding deb-src entries to $SRC_FILE:"
  echo "$stanzas" | sed 's/^/    /'
  { echo "# deb-src twins of this machine's Debian sources, added by nfvlab scripts/statealyzr-deps.sh"
    [ -f "$SRC_FILE" ] && grep -v '^#' "$SRC_FILE" && echo
    echo "$stanzas"; } > "$SRC_FILE.tmp"
  mv "$SRC_FILE.tmp" "$SRC_FILE"
  apt-get update -qq
  updated=yes
fi
# source indexes missing (entries present but never fetched): fetch them once
for p in "${srcpkgs[@]}"; do
  # (no grep -q: it would close the pipe early and pipefail would report apt-cache's SIGPIPE)
  if [ $updated = no ] && [ -z "$(apt-cache showsrc "$p" 2>/dev/null | sed -n '/^Package:/p')" ]; then
    say "no source index for $p: apt-get update"
    apt-get update -qq
    updated=yes
  fi
done

missing=()
for p in "${TOOLS[@]}" $(recipe_deps); do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  [ $updated = yes ] || { apt-get update -qq; updated=yes; }
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# build dependencies of the recipes' source packages: only when apt would install something
if [ ${#srcpkgs[@]} -gt 0 ]; then
  n=$(apt-get -s build-dep "${srcpkgs[@]}" 2>/dev/null | grep -c '^Inst ' || true)
  if [ "$n" != 0 ]; then
    say "apt-get build-dep ${srcpkgs[*]} ($n packages)"
    apt-get build-dep -y -qq "${srcpkgs[@]}" >/dev/null
  fi
fi
say "ok (sources: ${srcpkgs[*]})"
