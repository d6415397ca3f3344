"""Guest kernel log: every era's memory-encryption line, on recorded text."""

import pathlib

import pytest

from pytest_sev.sev import guestlog as G

REC = pathlib.Path(__file__).resolve().parent.parent / "fixtures" / "recorded" / "guest"


def parse(name):
    return G.parse_guest_log((REC / name).read_bytes().decode("utf-8", "replace"))


@pytest.mark.parametrize(
    "name,features,eras",
    [
        ("plain-6.1-tcg-serial.log", set(), ()),
        ("sev-4.19-guest.log", {"SEV"}, (G.ERA_OLD,)),
        ("sev-es-amd-4.19-out-of-tree.log", {"SEV", "SEV-ES"}, (G.ERA_OUT_OF_TREE,)),
        ("sev-es-5.15-guest.log", {"SEV", "SEV-ES"}, (G.ERA_510,)),
        ("sev-es-6.1-guest.log", {"SEV", "SEV-ES"}, (G.ERA_519,)),
        ("snp-6.9-guest.log", {"SEV", "SEV-ES", "SEV-SNP"}, (G.ERA_519, G.ERA_STATUS)),
        ("tdx-6.8-guest.log", set(), (G.ERA_TDX,)),
        ("plain-shell-grep-echo.log", set(), ()),
    ],
)
def test_recorded_eras(name, features, eras):
    r = parse(name)
    assert r.features == frozenset(features)
    assert r.eras == eras
    assert r.disagreements == ()


def test_plain_recorded_log_has_two_boot_lines_and_no_evidence():
    r = parse("plain-6.1-tcg-serial.log")
    assert r.boots == 2 and not r.found and not r.sev
    assert "no memory-encryption line" in r.describe()


def test_tdx_is_not_sev():
    r = parse("tdx-6.8-guest.log")
    assert r.tdx and not r.sev and r.found


def test_bounce_line():
    assert parse("sev-es-5.15-guest.log").bounce_line.endswith(G.BOUNCE_TEXT)
    assert parse("sev-4.19-guest.log").bounce_line is not None
    assert parse("sev-es-6.1-guest.log").bounce_line is None


def test_status_tokens_and_evidence_lines():
    r = parse("snp-6.9-guest.log")
    assert r.status_tokens == ("SEV", "SEV-ES", "SEV-SNP", "DebugSwap")
    assert [e.line for e in r.evidence] == [
        "[    0.542753] Memory Encryption Features active: AMD SEV SEV-ES SEV-SNP",
        "[    0.544425] SEV: Status: SEV SEV-ES SEV-SNP DebugSwap",
    ]


def test_ansi_and_crlf_removed_from_evidence():
    r = parse("sev-es-6.1-guest.log")
    (ev,) = r.evidence
    assert ev.line == "[    0.214562] Memory Encryption Features active: AMD SEV SEV-ES"
    assert "\r" not in ev.line and "\x1b" not in ev.line


@pytest.mark.parametrize(
    "line,features",
    [
        ("AMD Memory Encryption Features active: SEV", {"SEV"}),
        ("AMD Memory Encryption Features active: SME", set()),
        ("Memory Encryption Features active: AMD SEV", {"SEV"}),
        ("Memory Encryption Features active: AMD SME", set()),
        ("<6>[    0.2] Memory Encryption Features active: AMD SEV SEV-ES", {"SEV", "SEV-ES"}),
        ("Nov 26 22:43:01 guest kernel: AMD Memory Encryption Features active: SEV SEV-ES",
         {"SEV", "SEV-ES"}),
        ("[Tue Nov 26 22:43:01 2024] AMD Secure Encrypted Virtualization (SEV) active", {"SEV"}),
        ("\x1b[0m[    0.1] AMD Secure Encrypted Virtualization (SEV) active\r", {"SEV"}),
        ("SEV: Status: SEV SEV-ES ", {"SEV", "SEV-ES"}),
        ("AMD Secure Memory Encryption (SME) active", set()),
        ("# dmesg | grep 'AMD Secure Encrypted Virtualization (SEV) active'", set()),
        ("Freeing unused decrypted memory: 2036K", set()),
    ],
)
def test_single_lines(line, features):
    assert G.parse_guest_log(line + "\n").features == frozenset(features)


def test_last_boot_wins():
    sev = (REC / "sev-es-5.15-guest.log").read_text()
    plain = (REC / "plain-6.1-tcg-serial.log").read_text()
    assert G.parse_guest_log(sev + plain).features == frozenset()
    assert G.parse_guest_log(plain + sev).features == {"SEV", "SEV-ES"}
    assert G.parse_guest_log(sev + plain, last_boot_only=False).features == {"SEV", "SEV-ES"}


def test_disagreement_reported():
    text = ("[ 0.1] Memory Encryption Features active: AMD SEV SEV-ES\n"
            "[ 0.2] SEV: Status: SEV \n")
    r = G.parse_guest_log(text)
    assert r.disagreements and "different features" in r.disagreements[0]
    assert "DISAGREE" in r.describe()


def test_unknown_status_tokens_kept_visible():
    r = G.parse_guest_log("SEV: Status: SEV SEV-ES SEV-SNP IBPBOnEntry \n")
    assert r.status_tokens == ("SEV", "SEV-ES", "SEV-SNP", "IBPBOnEntry", "?IBPBOnEntry")
