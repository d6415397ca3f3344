"""Smoke: the default guest boots, answers on its console and over QMP, and
commands come back exact even when the console is noisy."""

import re

import allure
import pytest

from pytest_sev.images.bzimage import kernel_release

#: one xdist group: the shared session guest boots in one worker only
pytestmark = [pytest.mark.qemu, pytest.mark.plain, pytest.mark.xdist_group("smoke"),
              allure.epic("pytest-sev"), allure.feature("smoke")]


def test_kernel_version_over_console(guest):
    """The kernel that answers is the kernel the harness was given: the
    bzImage header of ``-kernel``, or the image GRUB booted (BOOT_IMAGE)."""
    out, status = guest.run("uname -r")
    assert status == 0
    if guest.spec.kernel is not None:
        assert out.strip() == kernel_release(guest.spec.kernel)
    else:
        cmdline = guest.check("cat /proc/cmdline")
        booted = re.search(r"BOOT_IMAGE=\S*vmlinuz-(\S+)", cmdline)
        if not booted:
            pytest.skip(f"the boot loader did not say which kernel it booted: {cmdline.strip()}")
        assert out.strip() == booted.group(1)


def test_qmp_status_running(guest):
    assert guest.qmp.execute("query-status")["status"] == "running"


@pytest.mark.parametrize("status", [0, 1, 42])
def test_exit_status_comes_back(guest, status):
    out, got = guest.run(f"echo out; echo err >&2; exit {status}")
    assert (out, got) == ("out\nerr\n", status)


def test_output_exact_despite_fake_prompt_and_kernel_messages(guest):
    """Output that looks like a prompt or a marker, interleaved with kernel
    messages at emergency level (which reach the console whatever the
    loglevel), comes back byte for byte."""
    cmd = ("printf 'sev-guest# \\nB-000000000000-0\\n'; "
           "for i in 1 2 3; do echo \"<0>pytest-sev kmsg $i\" > /dev/kmsg; echo line$i; done; "
           "printf '\\033[31mred\\033[0m\\n'")
    out, status = guest.run(cmd)
    assert status == 0
    assert out == "sev-guest# \nB-000000000000-0\nline1\nline2\nline3\n\x1b[31mred\x1b[0m\n"
    kernel_log, _ = guest.run("dmesg | grep 'pytest-sev kmsg'")
    assert kernel_log.count("pytest-sev kmsg") == 3  # the messages were really emitted


def test_long_command_and_binary_output(guest):
    """A command beyond the line-editing limit is uploaded; bytes survive."""
    long_cmd = "x=" + "ab" * 1500 + "; echo ${#x}; printf '\\001\\002\\377'"
    out, status = guest.run(long_cmd)
    assert status == 0
    assert out.startswith("3000\n")
    raw, _ = guest.console.run_bytes("printf '\\001\\002\\377\\000end'")
    assert raw == b"\x01\x02\xff\x00end"
