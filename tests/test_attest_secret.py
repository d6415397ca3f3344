"""Launch secret for ``sev-inject-launch-secret``.

Known-answer cases are in test_attest_kat.py (secret_build). Here,
self-consistency: the firmware double checks the MAC against the launch
measurement and decrypts the table, which parses back to the secrets the
way ``efi_secret`` reads them.
"""

from __future__ import annotations

import base64
import os
import uuid
from pathlib import Path

import pytest
from attest_firmware import FirmwareDouble, LaunchRejected

from pytest_sev.attest.errors import SecretError
from pytest_sev.attest.measure import LaunchInputs, candidate_digests, ovmf_facts
from pytest_sev.attest.secret import build_secret_table, new_launch_secret, parse_secret_table
from pytest_sev.attest.session import new_launch_start
from pytest_sev.attest.sevcert import parse_sev_cert

AMDSEV = str(Path(__file__).resolve().parents[1] / "fixtures" / "sev-kat" / "sev-crate" / "measurement"
             / "ovmf_AmdSev_suffix.bin")
G1, G2 = uuid.UUID("736869e5-84f0-4973-92ec-06879ce3da0b"), uuid.UUID("736869e5-aaaa-4973-92ec-06879ce3da0b")


def test_secret_round_trip_through_firmware_double() -> None:
    fw = FirmwareDouble()
    start, _ = new_launch_start(parse_sev_cert(fw.pdh), 0x5)
    ctx = fw.launch_start(start.dh_cert_b64(), start.session_b64(), 0x5)
    measure = fw.launch_measure(ctx, candidate_digests(LaunchInputs(AMDSEV, 1, "EPYC-v4"))[1].digest, os.urandom(16))
    facts = ovmf_facts(AMDSEV)
    assert facts.secret_area is not None
    table = build_secret_table([(G1, b"disk-key"), (G2, b"\0\1\2")])
    sec = new_launch_secret(table, start.tek, start.tik, base64.b64decode(measure), area_size=facts.secret_area[1])
    args = sec.qmp_arguments(facts.secret_area[0])
    assert set(args) == {"packet-header", "secret", "gpa"} and args["gpa"] == facts.secret_area[0]
    plain = fw.launch_secret(ctx, measure, args["packet-header"], args["secret"])  # type: ignore[arg-type]
    assert parse_secret_table(plain) == {G1: b"disk-key", G2: b"\0\1\2"}
    # bound to the measurement: another launch's measurement is refused
    other = fw.launch_measure(ctx, b"\0" * 32, os.urandom(16))
    with pytest.raises(LaunchRejected):
        fw.launch_secret(ctx, other, args["packet-header"], args["secret"])  # type: ignore[arg-type]


def test_table_rules() -> None:
    t = build_secret_table([(G1, b"x" * 5)])
    assert len(t) % 16 == 0 and int.from_bytes(t[16:20], "little") == 20 + 20 + 5
    with pytest.raises(SecretError, match="twice"):
        build_secret_table([(G1, b"a"), (G1, b"b")])
    with pytest.raises(SecretError, match="not a GUID"):
        build_secret_table([("nope", b"a")])
    with pytest.raises(SecretError, match="does not fit"):
        new_launch_secret(build_secret_table([(G1, b"x" * 4000)]), b"\0" * 16, b"\0" * 16, b"\0" * 48, area_size=0xC00)
