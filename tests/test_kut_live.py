"""kvm-unit-tests' amd_sev built and booted for real, where a tree is given.

No package registry carries kvm-unit-tests, so these run only when
``PYTEST_SEV_KUT_TREE`` names a kvm-unit-tests git repository (a clone, or a
bare mirror); elsewhere they skip saying so.  The parser's rules are tested
on recorded outputs in tests/test_kut.py, and the runner with OVMF's shell in
tests/test_efi_app.py, on every machine.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from pytest_sev.build import kut as kut_build
from pytest_sev.build.sources import parse_source
from pytest_sev.config import RunConfig
from pytest_sev.guest.efi_app import esp_disk, make_esp, run_efi_program
from pytest_sev.guest.specs import efi_program_spec
from pytest_sev.qemu.accel import choose_accel
from pytest_sev.sev import kut

TREE = os.environ.get("PYTEST_SEV_KUT_TREE")
pytestmark = pytest.mark.skipif(not TREE, reason="set PYTEST_SEV_KUT_TREE to a kvm-unit-tests git repository "
                                                 "to build and boot amd_sev.efi (no registry carries one)")


@pytest.fixture(scope="module")
def built():
    assert TREE is not None
    head = subprocess.run(["git", "-C", TREE, "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()
    source = parse_source(kut_build.COMPONENT, {"url": TREE, "ref": head}, Path("."))
    first = kut_build.build_amd_sev(source)
    again = kut_build.build_amd_sev(source)
    return first, again


def test_built_once_then_a_cache_hit(built):
    first, again = built
    assert first.entry == again.entry and first.key == again.key
    program = kut_build.program_of(first)
    assert program.read_bytes()[:2] == b"MZ"  # a PE image, what OVMF loads
    assert first.inputs == {"configure": ["--enable-efi"], "targets": ["x86/amd_sev.efi"]}


def test_the_plain_control_says_no_sev(built, tmp_path):
    first, _ = built
    esp = make_esp(tmp_path, kut_build.program_of(first))
    spec = efi_program_spec(RunConfig(), "plain", esp_disk(esp), None)
    run = run_efi_program(spec, program="amd_sev", workdir=tmp_path / "run", qemu="qemu-system-x86_64",
                          accel=choose_accel("auto"), timeout=120)
    verdict = kut.judge(run.output, run.exit_code, timed_out=run.timed_out, timeout=run.timeout, stderr=run.stderr)
    assert (run.exit_code, verdict.outcome, verdict.reason) == (kut.EXIT_SKIP, "skip", kut.SEV_NOT_ENABLED)
    assert kut.against_launch(verdict, "plain").outcome == "pass"
