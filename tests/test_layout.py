"""The layout's promises, checked on the source tree (docs/architecture.md):
one module starts QEMU, only the plugin layer imports pytest, and the launch
tool prints byte for byte the argv it printed before the refactor."""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import pytest
from test_launch import esp_disk

from pytest_sev.cli.launch import main as launch_main
from pytest_sev.cli.launch import socket_path, state_dir
from pytest_sev.qemu.firmware import find_ovmf

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "pytest_sev"
GOLDEN = REPO / "fixtures" / "recorded" / "launch-argv"
READY = REPO / "fixtures" / "hosts" / "epyc-milan-6.8-ready"

#: how a module would start a process of QEMU's (or any) kind
STARTS_PROCESS = re.compile(r"subprocess\.Popen\(|pexpect\.spawn\(|\bspawn\(|os\.exec[lv]p?e?\(|os\.posix_spawn")


def _sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_exactly_one_module_starts_qemu():
    starters = [p.relative_to(PACKAGE).as_posix() for p in _sources() if STARTS_PROCESS.search(p.read_text())]
    assert starters == ["qemu/process.py"]


def test_only_the_plugin_layer_imports_pytest():
    importers = {p.relative_to(PACKAGE).as_posix() for p in _sources()
                 if re.search(r"^\s*(import pytest\b|from _?pytest\b)", p.read_text(), re.M)}
    assert importers and all(name.startswith("plugin/") for name in importers), sorted(importers)


def test_every_error_class_has_the_one_root():
    import pytest_sev.errors as errors
    from pytest_sev.attest import errors as attest_errors
    classes = [c for mod in (errors, attest_errors) for c in vars(mod).values()
               if isinstance(c, type) and issubclass(c, BaseException)]
    assert len(classes) > 10
    assert all(issubclass(c, errors.PytestSevError) for c in classes)


@pytest.mark.parametrize("case", sorted(p.stem for p in GOLDEN.glob("*.args")))
def test_launch_print_argv_is_unchanged(case, tmp_path, capsys):
    ovmf = find_ovmf(Path("/nonexistent"))
    qemu = shutil.which("qemu-system-x86_64")
    if ovmf is None or qemu is None:
        pytest.skip("needs qemu-system-x86_64 and OVMF installed (scripts/setup.sh)")
    image = esp_disk(tmp_path, "X.qcow2")  # launch -hda takes only what --guest-image takes
    state = state_dir("X", image.resolve())  # the image's derived files live in a private directory
    args = [a.replace("X.qcow2", str(tmp_path / "X.qcow2"))
            for a in shlex.split((GOLDEN / f"{case}.args").read_text())]
    extra = ["--host-recorded", str(READY)] if "-sev" in args or "-sev-es" in args else ["--accel", "tcg"]
    assert launch_main([*args, *extra, "--print-argv", "-execpath", str(tmp_path / "no-prefix")]) == 0
    printed = capsys.readouterr().out.strip()
    expected = ((GOLDEN / f"{case}.txt").read_text().strip()
                .replace("{qemu}", qemu).replace("{ovmf_code}", str(ovmf[0]))
                .replace("{dir}/X.fd", str(state / "X.fd")).replace("{dir}/X.qmp", str(socket_path(state, "X")))
                .replace("{dir}", str(tmp_path)))
    assert printed == expected
