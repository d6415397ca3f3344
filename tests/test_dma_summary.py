"""pytest_sev.dma.summary: JSON round trip and a PNG that is really drawn."""

import json

import pytest

from pytest_sev.dma.summary import JSON_NAME, PNG_NAME, SizeResult, from_json, to_json, write_summary


def results():
    rows = []
    table = {
        "virtio-blk": [("1M", None, "stall"), ("8M", 41.0, "pressure"), ("64M", 57.5, "clean"),
                       ("512M", 60.2, "clean"), ("auto", 61.0, "clean")],
        "virtio-scsi": [("1M", 20.0, "pressure"), ("8M", 38.0, "pressure"), ("64M", 50.1, "clean"),
                        ("512M", 52.0, "clean"), ("auto", 53.3, "clean")],
    }
    for bus, entries in table.items():
        for size, mib, outcome in entries:
            rows.append(SizeResult(size=size, bus=bus, mode="plain-forced", outcome=outcome, reason="r",
                                   mib_s=mib, iops=None if mib is None else mib * 10, full_messages=3,
                                   reported_pool_bytes=None, peak_used_slots=100, hiwater_slots=None, duration_s=12.5))
    return rows


def test_json_round_trip_and_order(tmp_path):
    rs = list(reversed(results()))
    data = to_json(rs)
    assert data["schema"] == 1
    assert [r["size"] for r in data["results"][:2]] == ["1M", "1M"]
    assert [r["size"] for r in data["results"][-2:]] == ["auto", "auto"]
    back = from_json(json.loads(json.dumps(data)))
    assert sorted(map(repr, back)) == sorted(map(repr, rs))


def test_write_summary(tmp_path):
    j, p = write_summary(results(), tmp_path / "out")
    assert j.name == JSON_NAME and p.name == PNG_NAME
    assert json.loads(j.read_text())["results"][0]["bus"] == "virtio-blk"
    assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 10_000


def test_two_modes_and_empty(tmp_path):
    rs = results() + [SizeResult("1M", "virtio-blk", "sev-es", "panic", "kernel panic"),
                      SizeResult("256K", "virtio-blk", "sev-es", "hung", "no SWIOTLB evidence")]
    _, p = write_summary(rs, tmp_path)
    assert p.stat().st_size > 10_000
    _, p = write_summary([], tmp_path / "empty")
    assert p.exists()


def test_bad_outcome():
    with pytest.raises(ValueError):
        SizeResult("1M", "virtio-blk", "sev", "slow", "")


def test_every_outcome_has_a_colour():
    from pytest_sev.dma.classify import OUTCOMES
    from pytest_sev.dma.summary import OUTCOME_COLOURS
    assert set(OUTCOME_COLOURS) == set(OUTCOMES)
