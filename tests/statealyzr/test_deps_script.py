"""scripts/statealyzr-deps.sh: the deb-src entries it derives from a machine's apt sources.

Runs the script's read-only mode against a temporary apt directory (no root, no apt-get)."""

import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "statealyzr-deps.sh"
CODENAME = next((ln.split("=", 1)[1].strip().strip('"') for ln in Path("/etc/os-release").read_text().splitlines()
                 if ln.startswith("VERSION_CODENAME=")), "")

pytestmark = pytest.mark.skipif(not CODENAME, reason="no VERSION_CODENAME in /etc/os-release")


def missing(etc: Path, ours: Path | None = None) -> list[dict[str, str]]:
    env = {"PATH": "/usr/bin:/bin", "APT_ETC": str(etc), "SRC_FILE": str(ours or etc / "none")}
    out = subprocess.run([str(SCRIPT), "--print-missing-deb-src"], env=env, capture_output=True, text=True,
                         check=True).stdout
    stanzas = []
    for block in out.strip().split("\n\n"):
        if block.strip():
            stanzas.append(dict(line.split(": ", 1) for line in block.splitlines()))
    return stanzas


def apt_dir(tmp_path: Path, deb822: str = "", one_line: str = "") -> Path:
    etc = tmp_path / "apt"
    (etc / "sources.list.d").mkdir(parents=True)
    if deb822:
        (etc / "sources.list.d" / "debian.sources").write_text(deb822)
    (etc / "sources.list").write_text(one_line)
    return etc


def test_deb822_sources_get_deb_src_twins_for_every_suite_and_component(tmp_path):
    etc = apt_dir(tmp_path, f"""Types: deb
URIs: http://deb.debian.org/debian
Suites: {CODENAME} {CODENAME}-updates
Components: main contrib
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: https://example.org/thirdparty
Suites: nodistro
Components: main
""")
    got = missing(etc)
    assert [(s["URIs"], s["Suites"], s["Components"]) for s in got] == [
        ("http://deb.debian.org/debian", CODENAME, "main contrib"),
        ("http://deb.debian.org/debian", f"{CODENAME}-updates", "main contrib")]
    assert all(s["Types"] == "deb-src" and s["Signed-By"].endswith("debian-archive-keyring.gpg") for s in got)


def test_existing_deb_src_and_disabled_or_foreign_entries_add_nothing(tmp_path):
    etc = apt_dir(tmp_path, f"""Types: deb deb-src
URIs: http://deb.debian.org/debian/
Suites: {CODENAME}
Components: main
""", one_line=f"deb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian {CODENAME} main\n"
               f"deb-src http://mirror.example/debian/ {CODENAME} main\n"
               f"# deb http://commented.example/debian {CODENAME} main\n")
    (etc / "sources.list.d" / "x.sources.disabled").write_text(
        f"Types: deb\nURIs: http://disabled.example\nSuites: {CODENAME}\nComponents: main\n")
    (etc / "sources.list.d" / "off.sources").write_text(
        f"Types: deb\nURIs: http://off.example\nSuites: {CODENAME}\nComponents: main\nEnabled: no\n")
    assert missing(etc) == []


def test_one_line_entry_keeps_its_signing_key_and_our_file_makes_it_idempotent(tmp_path):
    etc = apt_dir(tmp_path, one_line=f"deb [signed-by=/k.gpg] http://mirror.example/debian {CODENAME}-security main\n")
    first = missing(etc)
    assert first == [{"Types": "deb-src", "URIs": "http://mirror.example/debian", "Suites": f"{CODENAME}-security",
                      "Components": "main", "Signed-By": "/k.gpg"}]
    ours = tmp_path / "ours.sources"
    ours.write_text("\n".join(f"{k}: {v}" for k, v in first[0].items()) + "\n")
    assert missing(etc, ours) == []
