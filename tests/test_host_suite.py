"""suites/test_host.py, run by pytester against recorded hosts in each mode:
one row per check, and each mode turns a missing prerequisite into the
right outcome (fail under --sev-es/--sev, skip under auto/off)."""

from pathlib import Path

import pytest

from pytest_sev.host import CHECK_NAMES

pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parent.parent
SUITE = REPO / "suites" / "test_host.py"

CONFTEST = """
import types, pytest
from pathlib import Path
from pytest_sev.host.recorded import load_recorded

@pytest.fixture(scope="session")
def host(tmp_path_factory):
    return load_recorded(Path({host!r}), tmp_path_factory.mktemp("host")).probe()

@pytest.fixture(scope="session")
def run_config():
    return types.SimpleNamespace(mode={mode!r})
"""


def run_suite(pytester, host: str, mode: str):
    pytester.makeconftest(CONFTEST.format(host=str(REPO / "fixtures" / "hosts" / host), mode=mode))
    pytester.makepyfile(test_host=SUITE.read_text())
    # -p no:sev: the suite needs only these two fixtures, not the whole plugin.
    return pytester.runpytest_inprocess("-p", "no:sev", "-p", "no:cacheprovider", "-rfs")


# Rows only SEV-SNP needs that do not pass on these SEV-ES hosts (6.8 and 6.1 kernels without SNP
# host support, QEMU < 9.1): syscfg_snpen, rmp_table, snp_iommu, snp_firmware, kvm_amd_sev_snp,
# kernel_log_snp, qemu_snp. A --sev-es or --sev run skips them, naming sev-snp as the mode that needs them.
SNP_ROWS_NOT_PASSING = 7


def test_ready_host_under_sev_es(pytester):
    # every check SEV-ES needs passes or is info; SYSCFG unread, but the kernel kept its 'sev' flag (SMEE on)
    result = run_suite(pytester, "epyc-milan-6.8-ready", "sev-es")
    result.assert_outcomes(passed=len(CHECK_NAMES) - SNP_ROWS_NOT_PASSING, skipped=SNP_ROWS_NOT_PASSING)
    result.stdout.fnmatch_lines(["*host check qemu_snp failed: SEV-SNP needs QEMU >= 9.1 (this one is 8.2.2)*"
                                 "(needed for sev-snp; mode sev-es does not require it)*"])


def test_sev_only_host_under_sev_es_fails_with_remedies(pytester):
    result = run_suite(pytester, "epyc-milan-sev-only", "sev-es")
    # sev_es_asids, kvm_amd_sev_es, kernel_log_sev_es; virsh is absent (skip), and the SNP rows
    result.assert_outcomes(passed=len(CHECK_NAMES) - 4 - SNP_ROWS_NOT_PASSING, failed=3,
                           skipped=1 + SNP_ROWS_NOT_PASSING)
    result.stdout.fnmatch_lines([
        "*test_host_check?sev_es_asids?*",
        "*--sev-es needs it: host check sev_es_asids failed: 0 (CPUID 0x8000001F EDX=1*SEV-ES ASID Space Limit*",
    ])


def test_sev_only_host_under_sev_skips_the_sev_es_rows(pytester):
    result = run_suite(pytester, "epyc-milan-sev-only", "sev")
    result.assert_outcomes(passed=len(CHECK_NAMES) - 4 - SNP_ROWS_NOT_PASSING, skipped=4 + SNP_ROWS_NOT_PASSING)


@pytest.mark.parametrize("mode", ["auto", "off"])
def test_no_sev_host_never_fails_in_auto_or_off(pytester, mode):
    result = run_suite(pytester, "dev-machine-no-sev", mode)
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) == 0 and outcomes["skipped"] >= 8
    result.stdout.fnmatch_lines(["*host check cpu_vendor failed: GenuineIntel; remedy: *"])


def test_no_sev_host_under_sev_es_fails_each_needed_check(pytester):
    result = run_suite(pytester, "dev-machine-no-sev", "sev-es")
    # 8 needed checks failed; 7 needed ones could not be answered (n/a without the CPUID leaf,
    # no kernel-log line): not a pass either. Skipped: reduced_phys_bits (an info row whose value
    # is "n/a"), virsh_sev (needed by nothing) and the 8 rows only SEV-SNP needs (snp and the 7 SNP rows).
    result.assert_outcomes(passed=7, failed=15, skipped=2 + 1 + SNP_ROWS_NOT_PASSING)
    result.stdout.fnmatch_lines(["*qmp_sev_capabilities failed: GenericError: KVM not enabled*remedy*dev_kvm*"])
    result.stdout.fnmatch_lines(["*--sev-es needs it: sev_es_asids not determined: n/a (leaf 0x8000001F not implemented*"])


def test_rows_are_named_after_the_checks(pytester):
    pytester.makeconftest(CONFTEST.format(host=str(REPO / "fixtures" / "hosts" / "intel-xeon-icelake"),
                                          mode="auto"))
    pytester.makepyfile(test_host=SUITE.read_text())
    result = pytester.runpytest_inprocess("-p", "no:sev", "-p", "no:cacheprovider", "--collect-only", "-q")
    result.stdout.fnmatch_lines([f"test_host.py::test_host_check[[]{name}[]]" for name in CHECK_NAMES])
