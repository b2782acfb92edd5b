"""The StateAlyzr corpus: hand-labelled ground-truth middleboxes and recipes for real ones.

A *ground truth* is a small C middlebox shipped in ``corpus/groundtruth/`` with a YAML file of
hand labels (the classes every variable truly has). A *recipe* (``corpus/recipes/*.yaml``) says
where a real middlebox's source comes from (Debian source package, URL + sha256, or a local
path), its build dependencies and commands, which compilation units form the analysed binary, and
any receive/output functions beyond the defaults.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tarfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml

HERE = Path(__file__).parent / "corpus"
GT_DIR = HERE / "groundtruth"
RECIPE_DIR = HERE / "recipes"
CLASSES = ["persistent", "top_level", "updateable", "keyed", "pkt_output", "log_output"]


@dataclass
class GroundTruth:
    name: str
    sources: list[Path]
    labels: dict[str, dict]
    over: dict[str, dict]
    run: dict
    flags: list[str] = field(default_factory=list)

    def forbidden(self, key: str) -> set[str]:
        """False-positive labels: classes the variable must NOT get (`not:` in the YAML)."""
        return set(self.labels.get(key, {}).get("not", []))

    def expected(self, key: str) -> set[str]:
        return set(self.labels.get(key, {}).get("classes", []))

    def allowed_extra(self, key: str) -> set[str]:
        return set(self.over.get(key, {}).get("classes", []))


def ground_truths() -> list[str]:
    return sorted(p.stem for p in GT_DIR.glob("*.yaml"))


def load_ground_truth(name: str) -> GroundTruth:
    d = yaml.safe_load((GT_DIR / f"{name}.yaml").read_text())
    for k, v in d.get("variables", {}).items():
        for fld in ("classes", "not"):
            bad = set(v.get(fld, [])) - set(CLASSES)
            if bad:
                raise ValueError(f"{name}.yaml: variables.{k}.{fld}: unknown classes {sorted(bad)}; "
                                 f"expected some of {CLASSES}")
        both = set(v.get("classes", [])) & set(v.get("not", []))
        if both:
            raise ValueError(f"{name}.yaml: variables.{k}: {sorted(both)} both in classes and not")
    return GroundTruth(d["middlebox"], [GT_DIR / s for s in d["sources"]], d.get("variables", {}),
                       d.get("over_approximation") or {}, d.get("run") or {}, d.get("flags") or [])


def available(gt: GroundTruth) -> bool:
    """Can this machine compile the program? (`run.needs_header`: e.g. daq.h from libdaq-dev)"""
    h = gt.run.get("needs_header")
    return not h or any(Path(d, h).exists() for d in ("/usr/include", "/usr/local/include"))


def analyze_ground_truth(gt: GroundTruth, config=None):
    from . import analyze_sources
    return analyze_sources(gt.sources, gt.name, config, flags=gt.flags or None)


def compare(result, gt: GroundTruth) -> dict:
    """Soundness (missed labels) and precision (extra classes) of a result against hand labels."""
    found = {v.key: v for v in result.variables}
    missed, extra, fs_wrong = [], [], []
    tp = fp = 0
    for key in sorted(set(found) | set(gt.labels)):
        exp = gt.expected(key)
        got = set(found[key].classes) if key in found else set()
        for c in sorted(exp - got):
            missed.append(f"{key}: {c}")
        for c in sorted(got - exp - gt.allowed_extra(key)):
            extra.append(f"{key}: {c}")
        tp += len(got & exp)
        fp += len(got - exp)
        want_fs = gt.labels.get(key, {}).get("flowspace")
        if want_fs is not None and key in found and sorted(want_fs) != sorted(found[key].flowspace):
            fs_wrong.append(f"{key}: expected {sorted(want_fs)}, got {sorted(found[key].flowspace)}")
    forbidden_hit = [f"{k}: {c}" for k in sorted(gt.labels) for c in sorted(gt.forbidden(k))
                     if k in found and c in found[k].classes]
    return {"missed": missed, "unexpected_extra": extra, "flowspace_mismatch": fs_wrong,
            "forbidden_flagged": forbidden_hit,
            "true_positive_labels": tp, "false_positive_labels": fp,
            "precision": round(tp / (tp + fp), 4) if tp + fp else 1.0,
            "per_class": per_class(result, gt)}


# the classes precision/recall is reported for; "output_impacting" is pkt_output or log_output
METRIC_CLASSES = ["persistent", "top_level", "updateable", "keyed", "pkt_output", "log_output",
                  "output_impacting"]


def _has(classes: set[str], c: str) -> bool:
    return bool(classes & {"pkt_output", "log_output"}) if c == "output_impacting" else c in classes


def per_class(result, gt: GroundTruth) -> dict[str, dict]:
    """Precision and recall per class over the program's source variables. A variable that is
    not labelled with a class is a negative for it (the YAML lists every variable that has a
    class; `not:` makes the important negatives explicit). Allowed over-approximations count as
    false positives here: precision is what a developer sees, not what the tests tolerate."""
    found = {v.key: set(v.classes) for v in result.variables}
    out = {}
    for c in METRIC_CLASSES:
        tp = fp = fn = 0
        for key in set(found) | set(gt.labels):
            exp = _has(gt.expected(key), c)
            got = _has(found.get(key, set()), c)
            tp += exp and got
            fp += got and not exp
            fn += exp and not got
        out[c] = {"tp": tp, "fp": fp, "fn": fn,
                  "precision": round(tp / (tp + fp), 3) if tp + fp else None,
                  "recall": round(tp / (tp + fn), 3) if tp + fn else None}
    return out


def precision_table(rows: dict[str, dict]) -> str:
    """Markdown: one row per program, precision/recall per class (rows: name -> per_class)."""
    head = "| program | " + " | ".join(f"{c} P/R" for c in METRIC_CLASSES) + " |"
    lines = [head, "|" + "---|" * (len(METRIC_CLASSES) + 1)]

    def fmt(x):
        return "-" if x is None else f"{x:.2f}"
    tot = {c: {"tp": 0, "fp": 0, "fn": 0} for c in METRIC_CLASSES}
    for name, pc in sorted(rows.items()):
        cells = []
        for c in METRIC_CLASSES:
            m = pc[c]
            for k in ("tp", "fp", "fn"):
                tot[c][k] += m[k]
            cells.append(f"{fmt(m['precision'])}/{fmt(m['recall'])}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    cells = []
    for c in METRIC_CLASSES:
        t = tot[c]
        p = t["tp"] / (t["tp"] + t["fp"]) if t["tp"] + t["fp"] else None
        r = t["tp"] / (t["tp"] + t["fn"]) if t["tp"] + t["fn"] else None
        cells.append(f"{fmt(p)}/{fmt(r)}")
    lines.append("| **all (pooled)** | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ recipes
@dataclass
class Recipe:
    name: str
    kind: str                                   # c middlebox type (pcap monitor, proxy, vpn...)
    source: dict                                # {apt: pkg} | {url:, sha256:} | {path:}
    build_deps: list[str] = field(default_factory=list)
    configure: list[str] = field(default_factory=list)
    make: list[str] = field(default_factory=list)
    include: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    recv: list[str] = field(default_factory=list)
    pkt_output: list[str] = field(default_factory=list)
    log_output: list[str] = field(default_factory=list)
    paper: dict | None = None
    notes: str = ""
    dynamic: dict | None = None   # {libs: [...], argv: [... "{pcap}" ...], recv: [...]}: gdb check
    # an off-path middlebox (monitor) emits no packets: a capture file it writes (pcap_dump) is
    # its log, so packet-output calls count as log output (the paper: "N.A." for PRADS/Snort)
    off_path: bool = False


def recipe_config(recipe: Recipe, cfg):
    """The analysis configuration a recipe asks for (its receive/output functions, off-path)."""
    cfg.extra_recv += recipe.recv
    cfg.pkt_output += recipe.pkt_output
    cfg.log_output += recipe.log_output
    if recipe.off_path:
        cfg.log_output += [f for f in cfg.pkt_output if f not in cfg.log_output]
        cfg.pkt_output = []
    return cfg


def recipes() -> list[str]:
    return sorted(p.stem for p in RECIPE_DIR.glob("*.yaml"))


def load_recipe(name: str) -> Recipe:
    p = RECIPE_DIR / f"{name}.yaml"
    d = yaml.safe_load(p.read_text())
    allowed = set(Recipe.__dataclass_fields__)
    bad = set(d) - allowed
    if bad:
        raise ValueError(f"{p}: unknown fields {sorted(bad)}; expected some of {sorted(allowed)}")
    if not any(k in d.get("source", {}) for k in ("apt", "url", "path")):
        raise ValueError(f"{p}: source: expected one of apt/url/path")
    return Recipe(**d)


def _run(cmd: str, cwd: Path, log) -> None:
    log(f"$ {cmd}")
    r = subprocess.run(cmd, shell=True, cwd=cwd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"command failed in {cwd}: {cmd}\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}")


def source_versions(pkg: str) -> list[str]:
    """Versions of a Debian source package the apt indexes list, newest first."""
    r = subprocess.run(["apt-cache", "showsrc", pkg], capture_output=True, text=True)
    vers: list[str] = []
    name = None
    for line in r.stdout.splitlines():
        if line.startswith("Package:"):
            name = line.split(":", 1)[1].strip()
        elif line.startswith("Version:") and name == pkg:
            v = line.split(":", 1)[1].strip()
            if v not in vers:
                vers.append(v)
    if len(vers) > 1:
        cmp = subprocess.run(["sh", "-c", "for v in \"$@\"; do echo \"$v\"; done | sort -V -r", "-", *vers],
                             capture_output=True, text=True)
        vers = [v for v in cmp.stdout.split() if v] or vers
    return vers


def _apt_source(pkg: str, workdir: Path, log) -> None:
    """`apt-get source`, falling back to older listed versions when the newest cannot be
    downloaded (a mirror may list a suite, e.g. -security, whose pool it does not serve)."""
    try:
        _run(f"apt-get source -qq {pkg}", workdir, log)
        return
    except RuntimeError as e:
        first = e
    for v in source_versions(pkg)[1:]:
        try:
            _run(f"apt-get source -qq {pkg}={v}", workdir, log)
            return
        except RuntimeError:
            continue
    raise first


def fetch(recipe: Recipe, workdir: Path, log=print) -> Path:
    """Unpacked source tree of a recipe under workdir (re-used if already there)."""
    workdir.mkdir(parents=True, exist_ok=True)
    src = recipe.source
    if "path" in src:
        return Path(src["path"]).resolve()
    if "apt" in src:
        existing = sorted(d for d in workdir.glob(f"{src['apt']}-[0-9]*") if d.is_dir())
        if existing:
            return existing[-1]
        _apt_source(src["apt"], workdir, log)
        existing = sorted(d for d in workdir.glob(f"{src['apt']}-[0-9]*") if d.is_dir())
        if not existing:
            raise RuntimeError(f"apt-get source {src['apt']} produced no directory in {workdir}")
        return existing[-1]
    url, sha = src["url"], src.get("sha256")
    tgz = workdir / Path(url).name
    if not tgz.exists():
        log(f"download {url}")
        urllib.request.urlretrieve(url, tgz)
    if sha and hashlib.sha256(tgz.read_bytes()).hexdigest() != sha:
        raise RuntimeError(f"{tgz}: sha256 mismatch")
    out = workdir / recipe.name
    if not out.exists():
        with tarfile.open(tgz) as t:
            t.extractall(workdir / "_x")
        inner = next((workdir / "_x").iterdir())
        shutil.move(str(inner), out)
    return out


class BuildError(RuntimeError):
    """The middlebox's own build failed (or compiled nothing): nothing is analysed."""


def ccj_path(recipe: Recipe, tree: Path, workdir: Path) -> Path:
    """Where the recorded compile database lives: in the tree for fetched sources (as before),
    in the work directory for a user's own tree (which we only build, never write into)."""
    if "path" in recipe.source:
        return Path(workdir) / f"{recipe.name}.compile_commands.json"
    return tree / "compile_commands.json"


def record_build(recipe: Recipe, tree: Path, ccj: Path, log=print) -> float:
    """Run configure + build under bear into a partial database, renamed only when every command
    succeeded: a failed build never leaves a compile_commands.json that a later run would reuse.
    A stamp beside the database records the commands it came from."""
    partial = ccj.with_name(ccj.name + ".partial")
    stamp = ccj.with_name(ccj.name + ".stamp")
    partial.unlink(missing_ok=True)
    ccj.unlink(missing_ok=True)
    stamp.unlink(missing_ok=True)
    ccj.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    steps = [(c, False) for c in recipe.configure] + [(c, True) for c in recipe.make]
    first = True
    for cmd, under_bear in steps:
        if under_bear:
            cmd = f"bear --output {partial} {'' if first else '--append '}-- {cmd}"
            first = False
        log(f"$ {cmd}")
        r = subprocess.run(cmd, shell=True, cwd=tree, capture_output=True, text=True)
        if r.returncode != 0:
            partial.unlink(missing_ok=True)
            tail = (r.stdout[-1500:] + "\n" + r.stderr[-2500:]).strip()
            raise BuildError(f"build of {recipe.name} failed in {tree} (exit {r.returncode}): {cmd}\n{tail}")
    units = json.loads(partial.read_text()) if partial.exists() else []
    if not any(str(e.get("file", "")).endswith(".c") for e in units):
        partial.unlink(missing_ok=True)
        raise BuildError(f"build of {recipe.name} in {tree} compiled no C file, so there is nothing to "
                         "analyse (already built? pass a build command that rebuilds, e.g. "
                         "--build 'make clean all')")
    partial.replace(ccj)
    stamp.write_text(json.dumps({"configure": recipe.configure, "make": recipe.make}))
    return time.perf_counter() - t0


def _reusable(recipe: Recipe, ccj: Path) -> bool:
    if not ccj.exists() or ccj.stat().st_size < 10:
        return False
    stamp = ccj.with_name(ccj.name + ".stamp")
    if stamp.exists():
        return json.loads(stamp.read_text()) == {"configure": recipe.configure, "make": recipe.make}
    return "apt" in recipe.source      # a tree fetched and built before stamps existed


def build_ir(recipe: Recipe, workdir: Path, log=print) -> tuple[Path, dict]:
    """Build a recipe with bear, replay its compilations with clang-14 to IR, link. Returns the
    linked module and timings {build_s, ir_compile_s, link_s, units}."""
    from . import build as B
    workdir = Path(workdir).resolve()
    tree = fetch(recipe, workdir, log)
    t = {}
    ccj = ccj_path(recipe, tree, workdir)
    if not _reusable(recipe, ccj):
        t["build_s"] = round(record_build(recipe, tree, ccj, log), 2)
    lls, dt = B.compile_commands_to_ll(ccj, workdir / f"{recipe.name}-ir", recipe.include or None,
                                       recipe.exclude or None, log, root=tree)
    t["ir_compile_s"] = round(dt, 2)
    t["units"] = len(lls)
    t0 = time.perf_counter()
    linked = B.link(lls, workdir / f"{recipe.name}.ll")
    t["link_s"] = round(time.perf_counter() - t0, 2)
    return linked, t


def load_recipe_file(path: str | Path) -> Recipe:
    """A recipe from any file; a relative `source: {path: ...}` is relative to the file."""
    p = Path(path).resolve()
    try:
        d = yaml.safe_load(p.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ValueError(f"{p}: cannot read recipe: {e}") from e
    if not isinstance(d, dict):
        raise ValueError(f"{p}: expected a mapping of recipe fields")
    d.setdefault("name", p.stem)
    d.setdefault("kind", "middlebox")
    allowed = set(Recipe.__dataclass_fields__)
    bad = set(d) - allowed
    if bad:
        raise ValueError(f"{p}: unknown fields {sorted(bad)}; expected some of {sorted(allowed)}")
    src = d.get("source")
    if not isinstance(src, dict) or not any(k in src for k in ("apt", "url", "path")):
        raise ValueError(f"{p}: source: expected one of apt/url/path")
    if "path" in src:
        src["path"] = str((p.parent / src["path"]).resolve())
    for fld in ("configure", "make", "include", "exclude", "recv", "pkt_output", "log_output", "build_deps"):
        if fld in d and not (isinstance(d[fld], list) and all(isinstance(x, str) for x in d[fld])):
            raise ValueError(f"{p}: {fld}: expected a list of strings")
    return Recipe(**d)


def tree_recipe(path: str | Path, build: list[str], configure: list[str], receive: list[str],
                exclude: list[str]) -> Recipe:
    """An ad-hoc recipe for a source tree the user already has."""
    p = Path(path).resolve()
    if not p.is_dir():
        raise ValueError(f"{p}: not a directory")
    return Recipe(name=p.name, kind="user tree", source={"path": str(p)}, configure=list(configure),
                  make=list(build), exclude=list(exclude), recv=list(receive))
