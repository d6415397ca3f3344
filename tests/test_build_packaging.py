"""bindeb-pkg or binrpm-pkg, on recorded os-release files.

AMD's build.sh tests only ID_LIKE, so Debian 12 (ID=debian, no ID_LIKE)
wrongly gets rpms; ID or ID_LIKE decide here.
"""

from pathlib import Path

import pytest

from pytest_sev.build.packaging import is_debian_family, package_target, parse_os_release

RECORDED = Path(__file__).parents[1] / "fixtures" / "kernel" / "os-release"


@pytest.mark.parametrize("name, target", [
    ("debian-12", "bindeb-pkg"),
    ("ubuntu-22.04", "bindeb-pkg"),
    ("linuxmint-21", "bindeb-pkg"),
    ("fedora-39", "binrpm-pkg"),
    ("rhel-9.3", "binrpm-pkg"),
])
def test_package_target(name, target):
    assert package_target((RECORDED / name).read_text()) == target


def test_debian_has_no_id_like_the_amd_script_bug():
    fields = parse_os_release((RECORDED / "debian-12").read_text())
    assert fields["ID"] == "debian" and "ID_LIKE" not in fields
    assert is_debian_family(fields)


def test_parse_quoted_and_multiword():
    fields = parse_os_release('ID="rhel"\nID_LIKE="centos rhel fedora"\n# c\nBROKEN\n')
    assert fields == {"ID": "rhel", "ID_LIKE": "centos rhel fedora"}
    assert not is_debian_family(fields)
    assert package_target("") == "binrpm-pkg"  # unknown host: build.sh's default
