"""The folder tree is the layering: no module imports from a folder on a higher floor.

Why a test: docs/architecture.md promises "top may import from below, never
the reverse"; a promise only a reviewer checks decays.  This reads every
module's imports (``ast``, nothing executed) and fails naming the module and
the import that climbs.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "pytest_sev"

#: floor -> the top-level folders (or modules) on it, lowest first; the same
#: table as docs/architecture.md "The layers".
FLOORS: tuple[tuple[str, ...], ...] = (
    ("errors", "modes", "deadline", "cache", "sidelog", "kconfig"),  # 0 base
    ("sev", "dma", "attest", "model"),                                # 1 data, pure parsers, protocols
    ("console", "qemu"),                                              # 2 consoles, QEMU
    ("host", "images", "build", "config"),                            # 3 host, files, the run's config
    ("guest", "libvirt"),                                             # 4 guests
    ("proofs",),                                                      # 5 proofs
    ("reporting",),                                                   # 6 report
    ("plugin", "cli", "__main__", "__init__"),                        # 7 pytest, tools
)

#: within one floor, who may import whom (a DAG, checked for cycles below)
SAME_FLOOR: dict[str, set[str]] = {
    "model": {"sev"},       # the spec validates policies with sev/policy
    "attest": {"sev"},      # measurements and reports read the policy table in sev/policy
    "build": {"images"},    # the provisioned kernel and SNP QEMU are component sources
    "libvirt": {"guest"},   # the second launcher reuses the guest's behaviour
}


def floor_of(top: str) -> int:
    for n, names in enumerate(FLOORS):
        if top in names:
            return n
    raise AssertionError(f"pytest_sev/{top}: not on any floor of FLOORS (add it, and to docs/architecture.md)")


def _absolute(path: Path, package: Path, node: ast.ImportFrom) -> str:
    """The dotted module a ``from`` import names, relative ones (``from ..sev import x``) resolved."""
    if node.level == 0:
        return node.module or ""
    parts = ["pytest_sev", *path.relative_to(package).with_suffix("").parts]
    base = parts[:len(parts) - node.level]
    return ".".join(base + ([node.module] if node.module else []))


def imports(path: Path, package: Path = PACKAGE) -> list[tuple[int, str]]:
    """(line, top-level pytest_sev folder) of every pytest_sev import in *path*."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom):
            module = _absolute(path, package, node)
            if module == "pytest_sev":
                names = [f"pytest_sev.{a.name}" for a in node.names]
            elif module.startswith("pytest_sev."):
                names = [module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names if a.name.startswith("pytest_sev.")]
        out += [(node.lineno, n.split(".")[1]) for n in names]
    return out


def top_of(path: Path, package: Path = PACKAGE) -> str:
    rel = path.relative_to(package).parts
    return rel[0] if len(rel) > 1 else rel[0].removesuffix(".py")


def climbing_imports(package: Path = PACKAGE) -> list[str]:
    bad = []
    for path in sorted(package.rglob("*.py")):
        src = top_of(path, package)
        for line, dst in imports(path, package):
            if dst == src:
                continue
            up = floor_of(dst) > floor_of(src)
            sideways = floor_of(dst) == floor_of(src) and dst not in SAME_FLOOR.get(src, set())
            if up or sideways:
                bad.append(f"{path.relative_to(package.parent)}:{line}: {src} (floor {floor_of(src)}) "
                           f"imports {dst} (floor {floor_of(dst)})")
    return bad


def test_no_module_imports_a_higher_floor():
    assert climbing_imports() == []


def test_every_top_level_folder_has_a_floor():
    tops = {top_of(p) for p in PACKAGE.rglob("*.py")}
    for top in tops:
        floor_of(top)


def test_same_floor_allowances_have_no_cycle():
    import graphlib
    graphlib.TopologicalSorter(SAME_FLOOR).prepare()  # raises CycleError on a cycle


def test_a_climbing_import_is_caught(tmp_path):
    """The check can fail: a pure parser that imports the guests is named."""
    pkg = tmp_path / "pytest_sev"
    (pkg / "sev").mkdir(parents=True)
    (pkg / "sev" / "parser.py").write_text("from pytest_sev.guest.guest import Guest\n")
    (pkg / "dma").mkdir()
    (pkg / "dma" / "ok.py").write_text("from pytest_sev.errors import PytestSevError\n")
    assert climbing_imports(pkg) == ["pytest_sev/sev/parser.py:1: sev (floor 1) imports guest (floor 4)"]


def test_a_relative_import_is_resolved(tmp_path):
    pkg = tmp_path / "pytest_sev"
    (pkg / "attest").mkdir(parents=True)
    (pkg / "attest" / "x.py").write_text("from ..guest import guest\nfrom . import chain\n")
    assert climbing_imports(pkg) == ["pytest_sev/attest/x.py:1: attest (floor 1) imports guest (floor 4)"]


def test_a_sideways_import_not_allowed_is_caught(tmp_path):
    pkg = tmp_path / "pytest_sev"
    (pkg / "sev").mkdir(parents=True)
    (pkg / "sev" / "x.py").write_text("import pytest_sev.dma.bounce\n")
    assert climbing_imports(pkg) == ["pytest_sev/sev/x.py:1: sev (floor 1) imports dma (floor 1)"]


@pytest.mark.parametrize("doc_line", ["`model/`", "`proofs/`"])
def test_architecture_names_the_new_floors(doc_line):
    doc = (PACKAGE.parent / "docs" / "architecture.md").read_text()
    assert doc_line in doc
