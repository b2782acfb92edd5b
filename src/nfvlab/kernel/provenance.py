"""Which kernel a result ran on: the release, and the nfvlab recipe behind it if any.

Recipe builds put ``-nfvlab-<recipe>-<hash8>`` into the release (CONFIG_LOCALVERSION), so the
release alone identifies the recipe and its hash inside a guest too, without access to build/.
"""

from __future__ import annotations

import json
import platform
import re

from .build import BUILD_ROOT

RELEASE = re.compile(r"-nfvlab-(?P<recipe>[a-z0-9][a-z0-9-]*?)-(?P<hash8>[0-9a-f]{8})$")


def parse_release(release: str) -> dict[str, str | None]:
    m = RELEASE.search(release)
    return {"recipe": m.group("recipe") if m else None, "recipe_hash8": m.group("hash8") if m else None}


def kernel_provenance(release: str | None = None) -> dict[str, str | None]:
    """{'release', 'recipe', 'recipe_hash8', 'recipe_hash'}; recipe fields None on a stock kernel.

    ``recipe_hash`` (the full hash) is filled when this machine has the build in build/kernel/.
    """
    release = release or platform.release()
    out: dict[str, str | None] = {"release": release, **parse_release(release), "recipe_hash": None}
    if out["recipe_hash8"]:
        for f in BUILD_ROOT.glob(f"{out['recipe_hash8']}*/result.json"):
            try:
                data = json.loads(f.read_text())
            except (OSError, ValueError):
                continue
            if data.get("release") == release:
                out["recipe_hash"] = data.get("recipe_hash")
    return out
