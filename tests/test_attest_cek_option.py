"""``--sev-cek FILE``: AMD's signed CEK for attested launches, checked at start-up."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_attest_chain import CERTS

from pytest_sev.attest.amdroots import read_cek_file
from pytest_sev.attest.errors import ChainError, FormatError
from pytest_sev.config import build_config
from pytest_sev.errors import ConfigError


def _config(cek: str | None):
    return build_config(lambda dest: cek if dest == "sev_cek" else None)


def test_a_cek_file_is_taken(tmp_path: Path) -> None:
    cfg = _config(str(CERTS / "rome" / "cek.cert"))
    assert cfg.sev_cek == (CERTS / "rome" / "cek.cert").resolve()
    assert read_cek_file(cfg.sev_cek).name == "CEK"
    assert _config(None).sev_cek is None


@pytest.mark.parametrize("content,why", [(None, "no such file"), (b"x" * 10, "CEK file .*: 10 bytes"),
                                         ("pek", "holds a PEK certificate, not a CEK")])
def test_a_bad_cek_file_is_one_config_error(tmp_path: Path, content, why: str) -> None:
    path = tmp_path / "cek.cert"
    if content == "pek":
        path.write_bytes((CERTS / "rome" / "pek.cert").read_bytes())
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(ConfigError, match=f"--sev-cek {path}: .*{why}") as err:
        _config(str(path))
    assert "\n" not in str(err.value)


def test_read_cek_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ChainError, match="cannot read the CEK file"):
        read_cek_file(tmp_path / "none")
    (tmp_path / "short").write_bytes(b"x")
    with pytest.raises(FormatError):
        read_cek_file(tmp_path / "short")
