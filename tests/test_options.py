"""Options and ini keys: good values reach RunConfig, bad ones stop the run
at start-up with one line (pytest.UsageError), before anything boots."""

import pytest

BAD = [
    (["--sev-mode=bogus"], "--sev-mode 'bogus' is not one of"),
    (["--sev-es", "--sev"], "exclusive"),
    (["--sev-es", "--sev-mode=off"], "contradicts"),
    (["--sev-snp", "--sev-es"], "--sev-snp and --sev-es are exclusive"),
    (["--sev-snp", "--sev-mode=sev-es"], "--sev-snp contradicts --sev-mode=sev-es"),
    (["--qemu=/nonexistent/qemu"], "--qemu /nonexistent/qemu: not an executable QEMU binary"),
    (["--ovmf-code=/nonexistent/OVMF_CODE.fd"], "--ovmf-code /nonexistent/OVMF_CODE.fd: no such file"),
    (["--ovmf-vars=/nonexistent/VARS.fd"], "--ovmf-vars /nonexistent/VARS.fd: no such file"),
    (["--guest-kernel=/nonexistent/vmlinuz"], "--guest-kernel /nonexistent/vmlinuz: no such file"),
    (["--guest-image=/nonexistent/x.qcow2"], "--guest-image /nonexistent/x.qcow2: no such file"),
    (["--guest-timeout=soon"], "not a number of seconds"),
    (["--guest-timeout=-5"], "must be positive"),
    (["--accel=hvf"], "--accel 'hvf' is not one of"),
    (["--guest-firmware=coreboot"], "--guest-firmware 'coreboot'"),
    (["--sev-es", "--sev-policy=0x1"], "lacks the ES bit"),
    (["--sev", "--sev-policy=0x5"], "sets the ES bit"),
    (["--sev-policy=banana"], "not a number"),
    (["--dma-sizes=-1"], "--dma-sizes"),
    (["--dma-sizes=1M,abc"], "--dma-sizes"),
]


@pytest.mark.parametrize("args,message", BAD, ids=lambda v: str(v))
def test_bad_values_stop_at_start_up(pytester, args, message):
    pytester.makepyfile("def test_never(): raise AssertionError('must not run')")
    result = pytester.runpytest_subprocess(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.errlines if line.startswith("ERROR:")]
    assert len(errors) == 1, result.errlines
    assert message in errors[0]
    assert "Traceback" not in result.stderr.str()
    assert "must not run" not in result.stdout.str()


def test_ini_values_are_read_and_command_line_wins(pytester):
    pytester.makeini("[pytest]\nsev_mode = off\nguest_timeout = 77\ndma_sizes = 1M 64M\n")
    pytester.makepyfile("""
        def test_cfg(run_config, pytestconfig):
            assert run_config.guest_timeout == 77
            assert run_config.dma_sizes == ("1M", "64M")
            assert run_config.mode == pytestconfig.getoption("sev_mode", default=None) or "off"
    """)
    assert pytester.runpytest_subprocess().ret == 0
    result = pytester.runpytest_subprocess("--sev-mode=auto", "-p", "no:cacheprovider")
    assert result.ret == 0


def test_ini_mode_reaches_config(pytester):
    pytester.makeini("[pytest]\nsev_mode = off\n")
    pytester.makepyfile("def test_cfg(run_config): assert run_config.mode == 'off'")
    assert pytester.runpytest_subprocess().ret == 0


def test_bad_ini_value_is_a_usage_error(pytester):
    pytester.makeini("[pytest]\nsev_mode = sometimes\n")
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest_subprocess()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--sev-mode 'sometimes' is not one of" in result.stderr.str()


def test_header_names_mode_and_host_verdict(pytester):
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest_subprocess("--sev-mode=auto")
    result.stdout.re_match_lines([r"pytest-sev: mode auto; sev-es: (READY|NOT READY \(.+\)|UNDETERMINED \(could not answer: .+\)); sev: .*",
                                  r"pytest-sev: accelerator (kvm|tcg) \(.+\)"])


def test_guest_without_qemu_on_path_fails_the_test_clearly(pytester, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    pytester.makepyfile("def test_boot(guest_factory): guest_factory()")
    result = pytester.runpytest_subprocess("--sev-mode=off")
    # the components fixture resolves QEMU before any guest is made: a setup error
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*qemu-system-x86_64 is not on PATH (install qemu-system-x86)*"])


def test_resolve_mode_knows_sev_snp():
    from pytest_sev.config import resolve_mode
    assert resolve_mode(False, False, None, sev_snp=True) == "sev-snp"
    assert resolve_mode(False, False, "sev-snp") == "sev-snp"
    assert resolve_mode(False, False, "sev-snp", sev_snp=True) == "sev-snp"
    assert resolve_mode(False, False, None) == "auto"
