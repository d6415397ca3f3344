"""Writes fixtures/recorded/attest/sev-es-launch.json: a RECONSTRUCTED SEV-ES
launch for suites/test_attestation.py (not a capture: no SEV machine was used).

The platform is the firmware double of tests/attest_firmware.py (its own
OCA/CEK/PEK/PDH keys, API 1.49 build 6); the guest owner's session is made by
pytest_sev.attest; the launched inputs are the KAT's AmdSev OVMF with 4 vCPUs
EPYC-v4 and empty kernel/initrd, whose SEV-ES digest is the known answer
0dccbcab...de91 (fixtures/sev-kat/kat.json, virtee/sev). The firmware double
computes the QMP replies (query-sev, query-sev-launch-measure,
query-sev-attestation-report) from that digest. The owner's TEK/TIK are kept
in the recording: they are throwaway keys of a reconstructed launch.

Run once from the checkout: .venv/bin/python tests/make_recorded_attest_launch.py
"""

from __future__ import annotations

import base64
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from attest_firmware import FirmwareDouble  # noqa: E402

from pytest_sev.attest.session import new_launch_start  # noqa: E402
from pytest_sev.attest.sevcert import parse_sev_cert  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "fixtures" / "recorded" / "attest" / "sev-es-launch.json"
DIGEST = bytes.fromhex("0dccbcaba8e90b261bd0d2e1863a2f9da714768b7b2a19363cd6ae35aa90de91")
POLICY = 0x5


def main() -> int:
    fw = FirmwareDouble()
    caps = fw.capabilities()
    pdh = parse_sev_cert(base64.b64decode(caps["pdh"]), "PDH")
    start, _key = new_launch_start(pdh, POLICY)
    ctx = fw.launch_start(start.dh_cert_b64(), start.session_b64(), POLICY)
    mnonce = os.urandom(16)
    measure = fw.launch_measure(ctx, DIGEST, mnonce)
    report_nonce = os.urandom(16)
    doc = {
        "provenance": "reconstructed",
        "how": (__doc__ or "").strip(),
        "inputs": {"ovmf": "fixtures/sev-kat/sev-crate/measurement/ovmf_AmdSev_suffix.bin", "vcpus": 4,
                   "vcpu_type": "EPYC-v4", "kernel": "/dev/null", "initrd": "/dev/null", "append": None},
        "policy": POLICY,
        "owner": {"tek": start.tek.hex(), "tik": start.tik.hex(),
                  "dh_cert_b64": start.dh_cert_b64(), "session_b64": start.session_b64()},
        "qmp": {
            "query-sev-capabilities": {**caps, "cbitpos": 51, "reduced-phys-bits": 1},
            "query-sev": {"enabled": True, "api-minor": fw.api[1], "api-major": fw.api[0], "build-id": fw.build,
                          "policy": POLICY, "state": "launch-secret", "handle": 1},
            "query-sev-launch-measure": {"data": measure},
            "query-sev-attestation-report": {"mnonce": base64.b64encode(report_nonce).decode(),
                                             "data": fw.attestation_report(DIGEST, POLICY, report_nonce)},
        },
    }
    with tempfile.NamedTemporaryFile("w", dir=OUT.parent, delete=False) as f:
        json.dump(doc, f, indent=1)
    os.replace(f.name, OUT)
    print(OUT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
