"""The digest history decides: a changed launch digest must be explained by a changed input.

Pure: entries are made here; the decision (:func:`history.judge`) is the
one the attestation suite fails on.
"""

from __future__ import annotations

import json
from pathlib import Path

from pytest_sev.attest import history
from pytest_sev.attest.history import DigestChange, DigestEntry

A, B = "aa" * 32, "bb" * 32
INPUTS = {"ovmf_sha256": "f00d", "vcpus": "2"}


def _entry(expected: dict[str, str], inputs: dict[str, str] | None = None, reported: str = "",
           runner: str = "r1", kind: str = "expected") -> DigestEntry:
    return DigestEntry(runner, kind, expected, dict(INPUTS if inputs is None else inputs), reported, time=1.0)


def test_first_entry_and_unchanged_digests_decide_nothing() -> None:
    now = _entry({"sev": A})
    assert history.judge(None, now) == DigestChange()
    same = history.judge(_entry({"sev": A}, {"vcpus": "9"}), now)  # inputs moved, digest did not: fine
    assert not same.changed and not same.unexplained and same.lines == []
    assert same.describe() == "launch digests unchanged"


def test_changed_digest_with_unchanged_inputs_is_unexplained() -> None:
    c = history.judge(_entry({"sev": A, "sev-es (init2 VMSA)": A}), _entry({"sev": B, "sev-es (init2 VMSA)": A}))
    assert c.changed and c.unexplained
    assert c.digests == (f"expected sev digest changed: {A} -> {B}",) and c.inputs == ()
    assert c.describe() == f"launch digest changed with unchanged inputs: expected sev digest changed: {A} -> {B}"


def test_changed_digest_with_changed_inputs_is_explained_naming_them() -> None:
    before = _entry({"sev": A}, {"ovmf_sha256": "f00d", "vcpus": "2", "gone": "x"})
    now = _entry({"sev": B}, {"ovmf_sha256": "beef", "vcpus": "2", "new": "y"})
    c = history.judge(before, now)
    assert c.changed and not c.unexplained
    assert c.inputs == ("input gone: x -> None", "input new: None -> y", "input ovmf_sha256: f00d -> beef")
    assert c.lines == [f"expected sev digest changed: {A} -> {B}", *c.inputs]
    assert c.describe() == "launch digest changed with its inputs: " + "; ".join(c.lines)


def test_a_digest_that_appears_or_disappears_is_a_change() -> None:
    c = history.judge(_entry({"sev": A}), _entry({"sev": A, "sev-es (init2 VMSA)": B}))
    assert c.digests == (f"expected sev-es (init2 VMSA) digest changed: none -> {B}",) and c.unexplained
    c = history.judge(_entry({"sev": A, "x": B}), _entry({"sev": A}))
    assert c.digests == (f"expected x digest changed: {B} -> none",)


def test_firmware_match_that_moves_is_a_change() -> None:
    c = history.judge(_entry({"sev": A}, reported="sev-es (init2 VMSA)"), _entry({"sev": A}, reported="no-match"))
    assert c.digests == ("firmware's measurement matched 'sev-es (init2 VMSA)' before, now 'no-match'",)
    assert c.unexplained
    # not launched on one side: nothing to compare
    assert not history.judge(_entry({"sev": A}, reported=""), _entry({"sev": A}, reported="sev")).changed
    assert not history.judge(_entry({"sev": A}, reported="sev"), _entry({"sev": A}, reported="")).changed
    assert not history.judge(_entry({"sev": A}, reported="sev"), _entry({"sev": A}, reported="sev")).changed


def test_record_judges_against_the_same_runner_and_kind(tmp_path: Path) -> None:
    path = tmp_path / "attest" / "digest-history.jsonl"
    assert history.record_and_judge(path, _entry({"sev": A})) == DigestChange()
    assert history.record_and_judge(path, _entry({"sev": B}, runner="r2")) == DigestChange()
    assert history.record_and_judge(path, _entry({"sev": B}, kind="other")) == DigestChange()
    c = history.record_and_judge(path, _entry({"sev": B}))
    assert c.unexplained and c.digests == (f"expected sev digest changed: {A} -> {B}",)
    assert history.record(path, _entry({"sev": A}, {"vcpus": "4"})) == [
        f"expected sev digest changed: {B} -> {A}", "input ovmf_sha256: f00d -> None", "input vcpus: 2 -> 4"]
    lines = path.read_text().splitlines()
    assert len(lines) == 5 and json.loads(lines[0])["expected"] == {"sev": A}
    assert history.load(path)[1].runner == "r2" and history.load(tmp_path / "none.jsonl") == []
