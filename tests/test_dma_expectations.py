"""pytest_sev.dma.expectations and fixtures/dma_expectations.toml."""

import json
import tomllib

import pytest

from pytest_sev.dma.expectations import DEFAULT_PATH, load_expectations, parse_expectations
from pytest_sev.dma.sizes import parse_size

S = parse_size


@pytest.fixture(scope="module")
def exp():
    return load_expectations()


def test_shipped_table_loads_and_covers_the_matrix(exp):
    for mode in ("plain-forced", "sev", "sev-es", "sev-snp"):
        for bus in ("virtio-blk", "virtio-scsi"):
            for size in ("256K", "1M", "8M", "64M", "512M", "auto"):
                assert exp.row(mode, bus, S(size)) is not None, (mode, bus, size)


def test_measured_rows_from_measured_here(exp):
    want = {"256K": "stall", "1M": "stall", "2M": "pressure", "8M": "pressure", "64M": "clean",
            "512M": "clean", "auto": "clean"}
    for size, outcome in want.items():
        assert exp.row("plain-forced", "virtio-blk", S(size)).outcome == outcome
    measured = {k for k, r in exp.rows.items() if r.measured}
    assert ("plain-forced", "virtio-blk", "8M") in measured
    assert all(k[0] == "plain-forced" for k in measured)  # nothing measured on SEV yet
    assert ("plain-forced", "virtio-scsi", "1M") in measured  # guest61-virtio-scsi-1M


def test_as_expected(exp):
    v = exp.check("plain-forced", "virtio-blk", S("1M"), "stall")
    assert v.ok and not v.fails


def test_measured_difference_fails_with_both_values(exp):
    v = exp.check("plain-forced", "virtio-blk", S("8M"), "clean")
    assert v.fails and "expected pressure" in v.message and "got clean" in v.message


def test_unmeasured_plain_difference_is_reported_only(exp):
    v = exp.check("plain-forced", "virtio-scsi", S("8M"), "stall")
    assert not v.ok and not v.fails
    assert "expected pressure, got stall" in v.message and "reported only" in v.message


@pytest.mark.parametrize("mode", ["sev", "sev-es", "sev-snp"])
def test_sev_rows_default_to_plain_forced_and_are_enforced(exp, mode):
    for bus, size, want in (("virtio-blk", "1M", "stall"), ("virtio-blk", "8M", "pressure"),
                            ("virtio-blk", "64M", "clean"), ("virtio-scsi", "8M", "pressure")):
        row = exp.row(mode, bus, S(size))
        assert row.outcome == want == exp.row("plain-forced", bus, S(size)).outcome
        v = exp.check(mode, bus, S(size), "io-error")
        assert v.fails and f"expected {want}" in v.message and "got io-error" in v.message  # both values


def test_baseline_recorded_then_compared(tmp_path, exp):
    from pytest_sev.dma import baseline
    path = tmp_path / "base.json"
    baseline.record(path, "sev-es", "virtio-blk", "8M", "stall", runner="epyc-01", reason="r")
    baseline.record(path, "sev-es", "virtio-blk", "1M", "unproven", runner="epyc-01")  # never recorded
    with_base = exp.with_baseline(baseline.load_baseline(path))
    assert with_base.check("sev-es", "virtio-blk", S("8M"), "stall").ok
    v = with_base.check("sev-es", "virtio-blk", S("8M"), "pressure")
    assert v.fails and "expected stall, got pressure" in v.message and "baseline recorded" in v.message
    assert with_base.row("sev-es", "virtio-blk", S("1M")).outcome == "stall"  # from plain-forced
    assert with_base.check("sev", "virtio-blk", S("8M"), "pressure").ok  # other kinds untouched


@pytest.mark.parametrize("outcome", ["unproven", "hung"])
@pytest.mark.parametrize("mode", ["plain-forced", "sev", "sev-es", "sev-snp"])
def test_unproven_and_hung_never_acceptable(exp, mode, outcome):
    v = exp.check(mode, "virtio-blk", S("8M"), outcome)
    assert v.fails and "never acceptable" in v.message
    w = exp.check(mode, "virtio-blk", S("1M"), outcome)  # not even where stall is expected
    assert w.fails and f"{outcome} is never acceptable (expected stall)" in w.message


def test_hung_is_never_recorded_nor_read_as_a_baseline(tmp_path):
    from pytest_sev.dma import baseline
    path = tmp_path / "base.json"
    baseline.record(path, "sev-es", "virtio-blk", "1M", "hung", runner="epyc-01", reason="no evidence")
    assert not path.exists() or baseline.load_baseline(path) == {}
    with pytest.raises(ValueError, match="cannot be a baseline"):
        baseline.parse_baseline({"schema": 1, "rows": {"sev-es/virtio-blk/1M": {"outcome": "hung"}}})


@pytest.mark.parametrize("mode", ["plain-forced", "sev", "sev-es", "sev-snp"])
@pytest.mark.parametrize("size", ["64M", "512M", "auto", "1G"])
def test_rule_big_pools_clean(exp, mode, size):
    v = exp.check(mode, "virtio-scsi", S(size), "pressure")
    assert v.fails and "expected clean" in v.message and "got pressure" in v.message


@pytest.mark.parametrize("outcome", ["corruption", "panic"])
def test_rule_never(exp, outcome):
    v = exp.check("sev", "virtio-blk", S("1M"), outcome)  # even where stall is expected
    assert v.fails and outcome in v.message and "expected stall" in v.message


def test_missing_row_is_reported(exp):
    v = exp.check("sev", "virtio-blk", S("4M"), "pressure")
    assert not v.ok and not v.fails and "no expectation" in v.message


def test_unknown_outcome(exp):
    with pytest.raises(ValueError):
        exp.check("sev", "virtio-blk", S("1M"), "slow")


def _doc(**row):
    return {"schema": 1, "sev": {"virtio-blk": {"8M": row}}}


@pytest.mark.parametrize(
    "doc, match",
    [
        (_doc(outcome="corruption", status="measured"), "can never be expected"),
        (_doc(outcome="hung", status="measured"), "can never be expected"),
        (_doc(outcome="stall", status="measured", accept=["hung"]), "can never be expected"),
        (_doc(outcome="stall", status="guessed"), "status"),
        (_doc(outcome="fast", status="measured"), "unknown outcome"),
        (_doc(outcome="stall", status="measured", accept=["panic"]), "can never be expected"),
        ({"schema": 1, "sev": {"virtio-blk": {"64M": {"outcome": "pressure", "status": "measured"}}}}, "must be clean"),
        ({"schema": 1, "sev": {"virtio-blk": {"32768": {"outcome": "clean", "status": "measured"}}}}, "'64M'"),
        ({"schema": 1, "sevsnp": {}}, "unknown mode"),
        ({"schema": 1, "sev": {"nvme": {}}}, "unknown bus"),
        ({"schema": 2}, "schema"),
    ],
)
def test_bad_tables_rejected(doc, match):
    with pytest.raises(ValueError, match=match):
        parse_expectations(doc)


def test_accept_list():
    e = parse_expectations(_doc(outcome="pressure", status="measured", accept=["clean"]))
    assert e.check("sev", "virtio-blk", S("8M"), "clean").ok
    assert e.check("sev", "virtio-blk", S("8M"), "stall").fails


def test_toml_marks_unmeasured_rows():
    data = tomllib.loads(DEFAULT_PATH.read_text())
    assert "sev" not in data and "sev-es" not in data  # they default to plain-forced
    assert data["plain-forced"]["virtio-scsi"]["256K"]["status"] == "unmeasured"


# -- SEV-SNP rows -----------------------------------------------------------------------------

def test_sev_snp_rows_are_enforced_like_sev_es(exp):
    """An SNP guest bounces every streaming DMA through the pool as SEV-ES does: its rows
    default to the plain-forced row, and even an unmeasured one fails on a difference
    (the plain control's own unmeasured row is only reported)."""
    plain = exp.row("plain-forced", "virtio-scsi", S("8M"))
    assert plain is not None and not plain.measured
    snp = exp.row("sev-snp", "virtio-scsi", S("8M"))
    assert snp is not None and snp.mode == "sev-snp" and snp.outcome == plain.outcome == "pressure"
    assert snp.note.startswith("as plain-forced (unmeasured there)")
    assert exp.enforced("sev-snp", snp) and not exp.enforced("plain-forced", plain)
    v = exp.check("sev-snp", "virtio-scsi", S("8M"), "stall")
    assert v.fails and "(sev-snp): expected pressure, got stall (as plain-forced (unmeasured there) row)" in v.message
    assert not exp.check("plain-forced", "virtio-scsi", S("8M"), "stall").fails


def test_a_sev_snp_table_row_overrides_the_default():
    e = parse_expectations({"schema": 1, "plain-forced": {"virtio-blk": {"8M": {"outcome": "pressure",
                                                                                "status": "measured"}}},
                            "sev-snp": {"virtio-blk": {"8M": {"outcome": "stall", "status": "unmeasured"}}}})
    assert e.row("sev-snp", "virtio-blk", S("8M")).outcome == "stall"
    assert e.row("sev-es", "virtio-blk", S("8M")).outcome == "pressure"  # the other kinds keep the default
    assert e.check("sev-snp", "virtio-blk", S("8M"), "pressure").fails  # enforced though unmeasured


def test_a_sev_snp_baseline_is_recorded_and_enforced(tmp_path, exp):
    from pytest_sev.dma import baseline
    path = tmp_path / "base.json"
    baseline.record(path, "sev-snp", "virtio-blk", "8M", "stall", runner="epyc-genoa-01", reason="r")
    doc = json.loads(path.read_text())
    assert list(doc["rows"]) == ["sev-snp/virtio-blk/8M"] and doc["rows"]["sev-snp/virtio-blk/8M"]["outcome"] == "stall"
    with_base = exp.with_baseline(baseline.load_baseline(path))
    assert with_base.check("sev-snp", "virtio-blk", S("8M"), "stall").ok
    v = with_base.check("sev-snp", "virtio-blk", S("8M"), "pressure")
    assert v.fails and "(sev-snp): expected stall, got pressure (baseline recorded" in v.message
    assert with_base.check("sev-es", "virtio-blk", S("8M"), "pressure").ok  # SEV-ES keeps its own default


@pytest.mark.parametrize(("k", "problem"), [
    ("plain-forced/virtio-blk/8M", "kind 'plain-forced' is not one of sev, sev-es, sev-snp"),
    ("snp/virtio-blk/8M", "kind 'snp' is not one of sev, sev-es, sev-snp"),
    ("sev-snp/nvme/8M", "bus 'nvme' is not one of virtio-blk, virtio-scsi"),
    ("sev-snp/virtio-blk/8m", "write the size as '8M'"),
    ("sev-snp/virtio-blk/lots", "invalid SWIOTLB pool size 'lots'"),
])
def test_a_baseline_key_that_no_row_can_match_is_refused(k, problem):
    from pytest_sev.dma import baseline
    with pytest.raises(ValueError) as err:
        baseline.parse_baseline({"schema": 1, "rows": {k: {"outcome": "stall"}}})
    assert str(err.value).startswith(f"dma baseline: {k}: {problem}")
    mode, bus, label = k.split("/")
    with pytest.raises(ValueError, match="dma baseline: "):
        baseline.add_entry(None, mode, bus, label, "stall", runner="r")
    assert baseline.key_problem("sev-snp", "virtio-scsi", "auto") == ""
