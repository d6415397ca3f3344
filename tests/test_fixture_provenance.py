"""Every recorded fixture says whether it was captured or reconstructed, and from what."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

FIX = Path(__file__).resolve().parents[1] / "fixtures"
LABELS = ("captured", "reconstructed")


@pytest.mark.parametrize("host", sorted(p.name for p in (FIX / "hosts").iterdir() if p.is_dir()))
def test_every_recorded_host_is_labelled(host):
    meta = json.loads((FIX / "hosts" / host / "meta.json").read_text())
    assert meta.get("provenance") in LABELS, host
    assert len(meta.get("from", "")) > 20, f"{host}: say from what"
    if host.startswith("epyc-") or host.startswith("intel-"):
        # none of these came from a machine: they must not read as captures
        assert meta["provenance"] == "reconstructed", host


@pytest.mark.parametrize("sub", ["guest", "dma", "grub"])
def test_every_recorded_file_is_labelled(sub):
    d = FIX / "recorded" / sub
    labels = json.loads((d / "provenance.json").read_text())["files"]
    files = {str(p.relative_to(d)) for p in d.rglob("*") if p.is_file()
             and p.name not in ("README.md", "provenance.json")}
    assert files == set(labels), f"unlabelled: {sorted(files - set(labels))}, stale: {sorted(set(labels) - files)}"
    for name, label in labels.items():
        assert label["provenance"] in LABELS and label["from"], name


def test_capture_bundles_are_labelled_captured():
    for meta in (FIX / "recorded").glob("capture-*/meta.json"):
        assert json.loads(meta.read_text())["provenance"] == "captured", meta


@pytest.mark.parametrize("toml,key", [("host-logs/corpus.toml", "log"), ("host-logs/domcaps/domcaps.toml", "caps")])
def test_host_log_corpora_are_labelled(toml, key):
    data = tomllib.loads((FIX / toml).read_text())
    # "fragment": captured message text without its prefixes; "documentation": a documented example
    for entry in data[key]:
        assert entry.get("provenance") in (*LABELS, "documentation", "fragment"), entry.get("name")
