"""``nfvlab kernel build``: a recipe -> .deb packages (make bindeb-pkg) and a bzImage, cached by hash.

build/kernel/<hash>/ holds the tree (``linux/``), ``build.log``, the .debs bindeb-pkg writes next to
the tree, and ``result.json``, written last: its presence means the build finished, so a second
build of the same recipe is a no-op.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from nfvlab.provenance import now_iso

from .recipe import REPO, Recipe, fragment_settings, load_recipe
from .relocate import relocate_tree
from .source import SourceError, apply_patches, base_tarball, unpack

BUILD_ROOT = REPO / "build" / "kernel"
PROGRESS_EVERY_S = 30.0


class BuildError(Exception):
    pass


@dataclass
class BuildResult:
    recipe: str
    recipe_hash: str
    release: str
    bzimage: str
    debs: list[str]
    seconds: float
    finished: str
    jobs: int
    seeded_from: str | None
    cached: bool = False

    @property
    def image(self) -> Path:
        return Path(self.bzimage)


def build_dir(recipe: Recipe) -> Path:
    return BUILD_ROOT / recipe.hash


def cached_result(recipe: Recipe) -> BuildResult | None:
    f = build_dir(recipe) / "result.json"
    if not f.is_file():
        return None
    data = json.loads(f.read_text())
    data["cached"] = True
    result = BuildResult(**data)
    return result if result.image.is_file() else None


def jobs() -> int:
    # Other work shares this machine's cores; NFVLAB_KERNEL_JOBS raises it on a machine of one's own.
    return int(os.environ.get("NFVLAB_KERNEL_JOBS", "2"))


def build(recipe: Recipe, log=print) -> BuildResult:
    """Build (or find cached) the recipe's kernel. Prints progress through `log`."""
    if (hit := cached_result(recipe)) is not None:
        log(f"{recipe.name}: cached build {hit.recipe_hash} ({hit.release}, built in {hit.seconds:.0f} s "
            f"on {hit.finished}): {hit.bzimage}")
        return hit
    out = build_dir(recipe)
    ready = out / "tree.ok"  # unpacked (or seeded) and patched: an interrupted build resumes from here
    seed_result, seed_tree, seeded_from = None, None, None
    if recipe.seed and not ready.is_file():
        seed = load_recipe(recipe.seed)
        seed_result = cached_result(seed)
        if seed_result is None and (build_dir(seed) / "tree.ok").is_file():
            # An unfinished seed's objects are as good as a finished one's (kbuild is incremental):
            # start from them rather than finishing the seed first.
            seed_tree, seeded_from = build_dir(seed) / "linux", f"{seed.hash} (unfinished)"
        else:
            seed_result = seed_result or build(seed, log)
            seed_tree, seeded_from = Path(seed_result.bzimage).parents[3], seed_result.recipe_hash
    elapsed_file = out / "elapsed.s"  # build seconds of earlier, interrupted sessions (kept by the ticker)
    earlier = float(elapsed_file.read_text()) if ready.is_file() and elapsed_file.is_file() else 0.0
    started = time.monotonic() - earlier
    logfile = out / "build.log"
    try:
        if ready.is_file():
            tree = out / "linux"
            log(f"{recipe.name}: resuming the unfinished build in {out} (make continues where it stopped)")
        else:
            if out.exists():
                log(f"{recipe.name}: removing a half-prepared tree in {out}")
                shutil.rmtree(out)
            out.mkdir(parents=True)
            tree = _prepare_tree(recipe, out, seed_tree, log)
            ready.write_text(f"{now_iso()} seeded_from={seeded_from}\n")
        _configure(recipe, tree, logfile, log)
        _make(tree, logfile, ["bindeb-pkg"], log, started, elapsed_file)
    except (SourceError, subprocess.CalledProcessError) as e:
        raise BuildError(f"{recipe.name}: {e} (log: {logfile})") from e
    release = (tree / "include" / "config" / "kernel.release").read_text().strip()
    bzimage = tree / "arch" / "x86" / "boot" / "bzImage"
    if not bzimage.is_file():
        raise BuildError(f"{recipe.name}: make finished but {bzimage} is missing (log: {logfile})")
    result = BuildResult(
        recipe=recipe.name, recipe_hash=recipe.hash, release=release, bzimage=str(bzimage),
        debs=sorted(str(p) for p in out.glob("*.deb")), seconds=round(time.monotonic() - started, 1),
        finished=now_iso(), jobs=jobs(), seeded_from=_seeded_from(ready),
    )
    data = asdict(result)
    data.pop("cached")
    (out / "result.json").write_text(json.dumps(data, indent=2) + "\n")
    log(f"{recipe.name}: built {release} in {result.seconds:.0f} s (-j{result.jobs}"
        f"{', seeded from ' + recipe.seed if recipe.seed else ''}); {len(result.debs)} .debs, {bzimage}")
    return result


def _seeded_from(ready: Path) -> str | None:
    text = ready.read_text() if ready.is_file() else ""
    m = re.search(r"seeded_from=(.+)$", text, re.M)
    return None if not m or m.group(1) == "None" else m.group(1)


def _prepare_tree(recipe: Recipe, out: Path, seed_tree: Path | None, log) -> Path:
    tree = out / "linux"
    if seed_tree is not None:
        # Objects included and mtimes kept: make then recompiles only what the patches and the
        # config change, exactly as kbuild would after editing those files.
        log(f"{recipe.name}: copying the build tree of {recipe.seed} ({seed_tree.parent.name})")
        subprocess.run(["nice", "-n", "19", "ionice", "-c3", "cp", "-a", "--reflink=auto", str(seed_tree),
                        str(tree)], check=True)
        # Without this the host tools (objtool) rebuild from their absolute paths and, being newer
        # than every object, make kbuild recompile the whole kernel (see relocate.py).
        n = relocate_tree(tree, seed_tree)
        log(f"{recipe.name}: relocated {n} tool build records from {seed_tree} to {tree}")
    else:
        tar = base_tarball(recipe.base, BUILD_ROOT / "downloads")
        log(f"{recipe.name}: unpacking {tar}")
        tree = unpack(tar, out)
    apply_patches(tree, [recipe.path(p) for p in recipe.patches], lambda m: log(f"{recipe.name}: {m}"))
    return tree


def _run(args: list[str], tree: Path, logfile: Path) -> None:
    with logfile.open("a") as f:
        f.write(f"$ {' '.join(args)}\n")
        f.flush()
        subprocess.run(args, cwd=tree, stdout=f, stderr=subprocess.STDOUT, check=True)


def _configure(recipe: Recipe, tree: Path, logfile: Path, log) -> None:
    fragments = [str(recipe.path(f)) for f in recipe.config.fragments]
    log(f"{recipe.name}: config = {recipe.config.start} + {', '.join(recipe.config.fragments)}")
    _run(["make", recipe.config.start], tree, logfile)
    _run(["scripts/kconfig/merge_config.sh", "-m", ".config", *fragments], tree, logfile)
    _run(["scripts/config", "--set-str", "LOCALVERSION", recipe.localversion], tree, logfile)
    _run(["make", "olddefconfig"], tree, logfile)
    problems = config_mismatches(tree / ".config", fragments)
    if problems:
        raise BuildError(f"{recipe.name}: olddefconfig did not keep these fragment settings "
                         f"(unmet dependencies?):\n  " + "\n  ".join(problems))


def config_mismatches(config: Path, fragments: list[str]) -> list[str]:
    have = fragment_settings(config)
    out = []
    for frag in fragments:
        for key, want in fragment_settings(Path(frag)).items():
            got = have.get(key, "n")
            # an empty string option whose menu is off is absent: that is "empty" too
            if got != want and not (want == '""' and key not in have):
                out.append(f"{Path(frag).name}: {key} wanted {want}, got {got}")
    return out


OBJ_LINE = re.compile(r"^\s+(CC|LD|AR|AS|BTF|CC \[M\]|LD \[M\]|GEN|BTFIDS)\s+(\S+)")


def _make(tree: Path, logfile: Path, targets: list[str], log, started: float, elapsed_file: Path) -> None:
    """nice'd make -jN; a progress line every PROGRESS_EVERY_S seconds (objects done, last step)."""
    args = ["nice", "-n", "19", "ionice", "-c3", "make", f"-j{jobs()}", *targets]
    state = {"objects": 0, "last": "starting"}
    done = threading.Event()

    def progress() -> None:
        while not done.wait(PROGRESS_EVERY_S):
            elapsed_file.write_text(f"{time.monotonic() - started:.1f}\n")
            log(f"  [{_mmss(time.monotonic() - started)}] {state['objects']} steps, last: {state['last']}")

    ticker = threading.Thread(target=progress, daemon=True)
    ticker.start()
    try:
        with logfile.open("a") as f:
            f.write(f"$ {' '.join(args)}\n")
            # gzip, not dpkg-deb's xz: the debug-info package is ~0.5 GB and xz would take minutes of CPU
            env = {**os.environ, "KDEB_COMPRESS": os.environ.get("KDEB_COMPRESS", "gzip")}
            proc = subprocess.Popen(args, cwd=tree, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                    env=env)
            assert proc.stdout is not None
            for line in proc.stdout:
                f.write(line)
                if m := OBJ_LINE.match(line):
                    state["objects"] += 1
                    state["last"] = f"{m.group(1)} {m.group(2)}"
            rc = proc.wait()
    finally:
        done.set()
    if rc != 0:
        tail = "".join(logfile.read_text().splitlines(keepends=True)[-25:])
        raise BuildError(f"make {' '.join(targets)} failed (exit {rc}); last lines:\n{tail}")


def _mmss(s: float) -> str:
    return f"{int(s) // 60:02d}:{int(s) % 60:02d}"
