"""Components: the QEMU, OVMF and guest kernel this run uses are what they claim.

Run with ``--components`` to check a prefix install or a fresh build
(``--components kernel=build``); every component's manifest is attached so
the report says which binaries a run used and where they came from.
"""

import json
import re
import subprocess

import allure
import pytest

from pytest_sev.cache import file_digest
from pytest_sev.images.bzimage import kernel_release

pytestmark = [allure.epic("pytest-sev"), allure.feature("components")]


def test_manifests_attached_and_hashes_match(components):
    for m in components.manifests:
        allure.attach(m.to_json(), name=f"{m.component} manifest", attachment_type=allure.attachment_type.JSON)
        assert m.artifacts, m.component
        for name, rec in m.artifacts.items():
            assert file_digest(__import__("pathlib").Path(rec["path"])) == rec["sha256"], (m.component, name)


def test_qemu_runs_and_knows_sev(components):
    out = subprocess.run([str(components.qemu), "-object", "help"], capture_output=True,
                         text=True, timeout=60).stdout
    assert "sev-guest" in out  # built with SEV support (x86_64-softmmu)


def test_ovmf_pair(components):
    assert components.ovmf_code.stat().st_size >= 1 << 20
    assert components.ovmf_vars.stat().st_size > 0


def test_kernel_is_a_bzimage(components):
    release = kernel_release(components.kernel)
    assert re.match(r"\d+\.\d+", release), release


def test_built_components_record_their_pin(components):
    built = [m for m in components.manifests if m.commit]
    if not built:
        pytest.skip("no component was built from source in this run (--components ...=build)")
    for m in built:
        assert re.fullmatch(r"[0-9a-f]{40}|sha256:[0-9a-f]{64}", m.commit), m.commit
        assert m.ref and m.build_seconds >= 0
        if m.component == "kernel":
            config = json.dumps(m.inputs)
            assert "LOCALVERSION" in config
            assert kernel_release(components.kernel).endswith("-sev-es")
