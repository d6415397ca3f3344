"""KNOWN-ANSWER tests: every case of fixtures/sev-kat/kat.json, reproduced exactly.

The expected values were produced by independent implementations (virtee's
sevctl and sev crate, Rust + OpenSSL) and are read from kat.json here, never
recomputed by the code under test. One test per kat.json section; each is
parametrised over that section's cases, and ``test_every_case_is_covered``
fails if kat.json grows a case this file does not run.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from pytest_sev.attest.amdroots import GENERATIONS, load_roots
from pytest_sev.attest.cacert import parse_ca_cert
from pytest_sev.attest.chain import verify_chain
from pytest_sev.attest.errors import MeasureError
from pytest_sev.attest.launch_verify import expected_blob, parse_measure_blob
from pytest_sev.attest.measure import LaunchInputs, launch_digest, signature_of, vmsa_pages
from pytest_sev.attest.secret import build_secret_table, seal_secret
from pytest_sev.attest.sevcert import parse_sev_cert

KAT_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "sev-kat"
KAT = json.loads((KAT_DIR / "kat.json").read_text())
CERTS = KAT_DIR / "certs"


def _p(rel: str | None) -> str | None:
    """kat.json paths are relative to its folder; /dev/null stays as is."""
    if rel is None:
        return None
    return rel if rel.startswith("/") else str(KAT_DIR / rel)


def _ids(cases: list[dict], key: str = "id") -> list[str]:
    return [str(c.get(key, i)) for i, c in enumerate(cases)]


# ---------------------------------------------------------------- measurement_hmac

HMAC_CASES = KAT["measurement_hmac"]["cases"]


@pytest.mark.parametrize("case", HMAC_CASES, ids=_ids(HMAC_CASES))
def test_measurement_hmac(case: dict) -> None:
    """Known-answer: the LAUNCH_MEASURE blob from TIK, platform data, policy and digest.

    Where the case gives firmware instead of a digest, the digest is computed
    from the firmware (and kernel table / VMSAs): SEV-ES with sevctl's
    pre-KVM_SEV_INIT2 VMSA (``vmsa="legacy"``) on the Milan signature
    (family 25, model 1, stepping 1) that kat.json's vmsa_build cases name.
    """
    expected = base64.b64decode(case["expected_blob_b64"])
    tik = (KAT_DIR / case["tik"]).read_bytes()
    policy = int(case["policy"], 16)
    nonce = base64.b64decode(case["nonce_b64"]) if "nonce_b64" in case else parse_measure_blob(expected).mnonce
    if "launch_digest_b64" in case:
        digest = base64.b64decode(case["launch_digest_b64"])
    else:
        mode = "sev-es" if policy & 0x4 else "sev"
        inputs = LaunchInputs(_p(case["firmware"]), case.get("num_cpus", 1), "EPYC-Milan",  # type: ignore[arg-type]
                              _p(case.get("kernel")), _p(case.get("initrd")), case.get("cmdline"),
                              vmsa="legacy")
        digest = launch_digest(inputs, mode)
    blob = expected_blob(tik, case["api_major"], case["api_minor"], case["build_id"], policy, digest, nonce)
    assert base64.b64encode(blob).decode() == case["expected_blob_b64"]


# ---------------------------------------------------------------- vmsa_build

VMSA_CASES = KAT["vmsa_build"]["cases"]


@pytest.mark.parametrize("case", VMSA_CASES, ids=_ids(VMSA_CASES, "cpu"))
def test_vmsa_build(case: dict) -> None:
    """Known-answer: sevctl's VMSA page per vCPU equals sev-snp-measure's QEMU VMSA
    with KVM's x87/SSE reset values left zero (``vmsa="legacy"``)."""
    assert case["userspace"] == "qemu"
    sig = signature_of(case["family"], case["model"], case["stepping"])
    pages = vmsa_pages(_p(case["firmware"]), case["cpu"] + 1, sig, "legacy")  # type: ignore[arg-type]
    assert pages[case["cpu"]] == (KAT_DIR / case["expected_file"]).read_bytes()


def test_vmsa_init2_differs_only_in_fpu_reset_values() -> None:
    """Known-answer (derived): the init2 VMSA is sevctl's page plus MXCSR 0x1f80 at
    byte 1032 and FCW 0x37f at byte 1040 (the KVM_SEV_INIT2 change)."""
    case = VMSA_CASES[0]
    sig = signature_of(case["family"], case["model"], case["stepping"])
    init2 = vmsa_pages(_p(case["firmware"]), 1, sig, "init2")[0]  # type: ignore[arg-type]
    legacy = bytearray((KAT_DIR / case["expected_file"]).read_bytes())
    legacy[1032:1034] = b"\x80\x1f"
    legacy[1040:1042] = b"\x7f\x03"
    assert init2 == bytes(legacy)


# ---------------------------------------------------------------- secret_build

SECRET_CASES = KAT["secret_build"]["cases"]


def _seal(case: dict, secrets: list[list[str]]) -> tuple[bytes, bytes, bytes]:
    table = build_secret_table([(g, (KAT_DIR / f).read_bytes()) for g, f in secrets])
    s = seal_secret(table, (KAT_DIR / case["tek"]).read_bytes(), (KAT_DIR / case["tik"]).read_bytes(),
                    base64.b64decode(case["launch_measure_blob_b64"]), base64.b64decode(case["iv_b64"]))
    return table, s.header, s.payload


@pytest.mark.parametrize("case", [c for c in SECRET_CASES if "expected_header_b64" in c],
                         ids=[c["id"] for c in SECRET_CASES if "expected_header_b64" in c])
def test_secret_build(case: dict) -> None:
    """Known-answer: LAUNCH_SECRET packet header and encrypted secret table."""
    _table, header, payload = _seal(case, case["secrets"])
    assert base64.b64encode(header).decode() == case["expected_header_b64"]
    assert base64.b64encode(payload).decode() == case["expected_payload_b64"]


def test_secret_build_max_size_padding() -> None:
    """Known-answer (kat.json 'max-size-padding'): secret3.txt (16343 B) and secret4.txt
    (16344 B) each under one GUID give payloads <= 16384 bytes, multiples of 16, equal length."""
    case = next(c for c in SECRET_CASES if c["id"] == "max-size-padding")
    assert "secret3.txt" in case["note"] and "secret4.txt" in case["note"]
    base = SECRET_CASES[0]
    guid = base["secrets"][0][0]
    p3 = _seal(base, [[guid, "sevctl/secret/secret3.txt"]])[2]
    p4 = _seal(base, [[guid, "sevctl/secret/secret4.txt"]])[2]
    assert len(p3) == len(p4) <= 16384 and len(p3) % 16 == 0


# ---------------------------------------------------------------- launch_digest

DIGEST_CASES = KAT["launch_digest"]["cases"]


def _digest_id(c: dict) -> str:
    return f"{c['mode']}-{c.get('vcpus', '-')}cpu-{Path(c['ovmf']).stem}-k{bool(c['kernel'])}-i{bool(c['initrd'])}-a{bool(c['append'])}"


@pytest.mark.parametrize("case", DIGEST_CASES, ids=[_digest_id(c) for c in DIGEST_CASES])
def test_launch_digest(case: dict) -> None:
    """Known-answer: virtee/sev's launch digests (vcpu_type EpycV4 = QEMU EPYC-v4), or its error."""
    inputs = LaunchInputs(_p(case["ovmf"]), case.get("vcpus", 1), case.get("vcpu_type", "EPYC-v4"),  # type: ignore[arg-type]
                          _p(case["kernel"]), _p(case["initrd"]), case["append"])
    if "expected_error" in case:
        with pytest.raises(MeasureError, match=case["expected_error"]):
            launch_digest(inputs, case["mode"])
    else:
        assert launch_digest(inputs, case["mode"]).hex() == case["expected_hex"]


# ---------------------------------------------------------------- cert_chains


@pytest.mark.parametrize("gen", KAT["cert_chains"]["generations"])
def test_amd_roots_per_generation(gen: str) -> None:
    """Known-answer: AMD's published ARK is self-signed and signs its generation's ASK."""
    ark, ask = load_roots(gen, CERTS)
    from pytest_sev.attest.sigverify import verify_ca_by_ca
    assert verify_ca_by_ca(ark, ark) is None
    assert verify_ca_by_ca(ark, ask) is None
    assert (ark.name, ask.name) == ("ARK", "ASK")


def _platform(gen: str) -> dict:
    return {n: parse_sev_cert((CERTS / gen / f"{n}.cert").read_bytes(), n) for n in ("pdh", "pek", "oca", "cek")}


@pytest.mark.parametrize("gen", KAT["cert_chains"]["platform_chains"])
def test_platform_chain_verifies_to_ark(gen: str) -> None:
    """Known-answer: a real platform chain verifies to its generation's ARK, every link
    checked, and the generation is found from the CEK alone."""
    c = _platform(gen)
    roots = {g: load_roots(g, CERTS) for g in GENERATIONS}
    v = verify_chain(c["pdh"], [c["pek"], c["oca"], c["cek"]], roots, cek=c["cek"])
    assert v.fully_anchored, v.describe()
    assert v.generation == gen
    assert all(link.ok for link in v.links), v.describe()
    assert {link.name for link in v.links} == {"ARK (self-signed)", "ARK -> ASK", "ASK -> CEK",
                                               "OCA (self-signed)", "OCA -> PEK", "CEK -> PEK", "PEK -> PDH"}


@pytest.mark.parametrize("gen", KAT["cert_chains"]["platform_chains"])
def test_platform_chain_reaches_ark_with_its_own_cek(gen: str) -> None:
    """Known-answer: without a CEK file the chain's own (ASK-signed) CEK is tried against the
    ASKs: the chain reaches its generation's ARK; without any CEK it is refused at ASK -> CEK."""
    c = _platform(gen)
    v = verify_chain(c["pdh"], [c["pek"], c["oca"], c["cek"]], {gen: load_roots(gen, CERTS)})
    assert v.ok and v.fully_anchored and v.generation == gen, v.describe()
    none = verify_chain(c["pdh"], [c["pek"], c["oca"]], {gen: load_roots(gen, CERTS)})
    assert not none.ok and none.failed is not None and none.failed.name == "ASK -> CEK"


@pytest.mark.parametrize("gen", KAT["cert_chains"]["platform_chains"])
def test_platform_chain_rejects_other_generation(gen: str) -> None:
    """Known-answer: the other generation's roots do not sign this CEK."""
    other = next(g for g in KAT["cert_chains"]["platform_chains"] if g != gen)
    c = _platform(gen)
    v = verify_chain(c["pdh"], [c["pek"], c["oca"], c["cek"]], {other: load_roots(other, CERTS)},
                     cek=c["cek"], generation=other)
    assert not v.ok and v.failed is not None and v.failed.name == "ASK -> CEK"


def test_naples_ark_bad_encoding_decodes_to_same_certificate() -> None:
    """Known-answer: certs/naples/ark.cert.bad (no signature) decodes to the same ARK,
    and a chain anchored on it still verifies, the missing self-signature reported."""
    good = parse_ca_cert((CERTS / "naples" / "ark.cert").read_bytes())
    bad = parse_ca_cert((CERTS / "naples" / "ark.cert.bad").read_bytes())
    assert (bad.key_id, bad.usage, bad.body) == (good.key_id, good.usage, good.body)
    assert bad.signature is None and good.signature is not None
    c = _platform("naples")
    _ark, ask = load_roots("naples", CERTS)
    v = verify_chain(c["pdh"], [c["pek"], c["oca"], c["cek"]], {"naples": (bad, ask)}, cek=c["cek"])
    assert v.fully_anchored, v.describe()
    assert v.links[0].name == "ARK (self-signed)" and v.links[0].ok is None


def test_every_case_is_covered() -> None:
    """kat.json has exactly the sections and case counts this file runs."""
    assert set(KAT) == {"about", "measurement_hmac", "vmsa_build", "secret_build", "launch_digest", "cert_chains"}
    assert len(HMAC_CASES) == 4 and len(VMSA_CASES) == 2 and len(SECRET_CASES) == 3 and len(DIGEST_CASES) == 6
    assert KAT["cert_chains"]["generations"] == list(GENERATIONS)
