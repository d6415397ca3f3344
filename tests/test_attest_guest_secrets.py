"""Reading the launch secret back from a guest (pytest_sev.proofs.guest_secrets).

The parsers run on the outputs captured on this machine from a real guest
(fixtures/recorded/guest/efi-secret, see its README: AmdSev OVMF + a kernel
with efi_secret, the table preloaded); the I/O half runs against a guest
double whose commands fail the ways a real one can.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_sev.proofs.guest_secrets import (
    READ_COMMAND,
    SECRETS_DIR,
    GuestSecrets,
    delivery_problems,
    kernel_secret_lines,
    parse_listing,
    read_guest_secrets,
)

REC = Path(__file__).resolve().parents[1] / "fixtures" / "recorded" / "guest" / "efi-secret"
HARNESS = "5e5e0001-7e57-4a7e-8d5e-c0c0a11ce5ed"
SECOND = "736869e5-84f0-4973-92ec-06879ce3da0b"
SENT = {HARNESS: bytes(range(32)), SECOND: b"pytest-sev second secret\n"}


def test_captured_listing_reads_both_entries_byte_for_byte():
    status, entries, _ = parse_listing((REC / "good-listing.txt").read_text())
    assert status == "read" and entries == SENT
    assert delivery_problems(SENT, GuestSecrets(status, entries)) == []


def test_captured_control_has_no_secrets_area():
    status, entries, reason = parse_listing((REC / "bad-listing.txt").read_text())
    assert (status, entries) == ("no-area", {}) and SECRETS_DIR in reason


def test_kernel_lines_of_the_captured_boots():
    good = kernel_secret_lines((REC / "good-dmesg.txt").read_text())
    assert "efi_secret efi_secret.0: Created 2 entries in securityfs secrets/coco" in good
    assert any(line.startswith("efi: CocoSecret=0x") for line in good)
    bad = kernel_secret_lines((REC / "bad-dmesg.txt").read_text())
    # OVMF published the page in both boots; only the good table made efi_secret list entries
    assert any("CocoSecret" in line for line in bad) and not any("efi_secret" in line for line in bad)


@pytest.mark.parametrize("text", ["garbage here\n", f"{HARNESS} zz\n", "not-a-guid-but-36-characters-long!!! 00\n"])
def test_an_unexpected_listing_is_unknown_not_empty(text):
    status, entries, reason = parse_listing(text)
    assert status == "unknown" and entries == {} and reason


def test_an_empty_directory_reads_as_no_entries():
    assert parse_listing("") == ("read", {}, "")


@pytest.mark.parametrize("got,expect", [
    (GuestSecrets("read", {HARNESS: SENT[HARNESS]}), [f"{SECOND}: missing in the guest"]),
    (GuestSecrets("read", {**SENT, HARNESS: b"x"}), [f"{HARNESS}: 1 bytes differ from the 32 sent"]),
    (GuestSecrets("read", {**SENT, "00000000-0000-0000-0000-000000000001": b""}),
     ["00000000-0000-0000-0000-000000000001: in the guest but never sent"]),
])
def test_delivery_problems_name_each_entry(got, expect):
    assert delivery_problems(SENT, got) == expect


def test_delivery_with_no_read_is_a_problem_not_a_pass():
    problems = delivery_problems(SENT, GuestSecrets("unknown", reason="listing exited 1"))
    assert len(problems) == 1 and "unknown: listing exited 1" in problems[0]


class GuestDouble:
    """Answers READ_COMMAND from a capture, or fails as told."""

    def __init__(self, listing: str, status: int = 0, klog: str = "") -> None:
        self.listing, self.status, self.klog = listing, status, klog
        self.commands: list[str] = []

    def run(self, cmd: str, timeout: float = 60.0) -> tuple[str, int]:
        self.commands.append(cmd)
        return self.listing, self.status

    def kernel_log(self) -> str:
        return self.klog


def test_read_guest_secrets_on_the_capture():
    g = GuestDouble((REC / "good-listing.txt").read_text(), klog=(REC / "good-dmesg.txt").read_text())
    got = read_guest_secrets(g)  # type: ignore[arg-type]
    assert got.status == "read" and got.entries == SENT and g.commands == [READ_COMMAND]
    assert "Created 2 entries" in got.describe()


def test_a_failed_listing_is_unknown_even_with_output():
    g = GuestDouble("mount: permission denied\n", status=1)
    got = read_guest_secrets(g)  # type: ignore[arg-type]
    assert got.status == "unknown" and "exited 1" in got.reason and "permission denied" in got.reason


def test_a_denied_kernel_log_does_not_decide():
    g = GuestDouble((REC / "good-listing.txt").read_text(), klog="dmesg: klogctl: Operation not permitted\n")
    got = read_guest_secrets(g)  # type: ignore[arg-type]
    assert got.status == "read" and got.entries == SENT and got.kernel_lines == ()
