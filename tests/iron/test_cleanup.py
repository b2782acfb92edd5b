"""unload_all on a plain directory tree shaped like /sys/fs/bpf/nfvlab (no BPF needed)."""

from __future__ import annotations

import os

from nfvlab.iron.cleanup import unload_all


def make(root, name):
    d = root / "pins" / name
    d.mkdir(parents=True)
    (d / "ct_stats").write_text("")
    (d / "link_iron_rx_skb").write_text("")
    (root / "meta").mkdir(exist_ok=True)
    (root / "meta" / f"{name}.json").write_text("{}")
    return d


def test_unload_all_skips_live_owners(tmp_path):
    dead = make(tmp_path, "iron-999999999-0")
    mine = make(tmp_path, f"iron-{os.getpid()}-3")
    live = make(tmp_path, "iron-1-0")  # pid 1 is always alive
    removed = unload_all(tmp_path / "pins", tmp_path / "meta")
    assert not dead.exists() and not mine.exists()
    assert live.exists() and (live / "ct_stats").exists()
    assert (tmp_path / "meta" / "iron-1-0.json").exists()
    assert str(dead) in removed and str(dead / "link_iron_rx_skb") in removed
    removed = unload_all(tmp_path / "pins", tmp_path / "meta", force=True)
    assert not live.exists() and not (tmp_path / "pins").exists()
    assert not list((tmp_path / "meta").glob("*.json"))
