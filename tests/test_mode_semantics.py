"""The mode table has no holes (issue 21, items 7 and 8), in real pytest runs
against recorded hosts: every way a test can ask for an SEV-ES guest ends
the same way, with the same reason text.

The paths: a marked function; a marked non-function item (a plugin's own
item type); a test requesting the ``sev_es_guest`` fixture; ``guest_factory``
given an SEV-ES spec or ``kind="sev-es"`` in the test body; a module-scoped
fixture handing an SEV-ES spec to ``scoped_guest``.  Under --sev-es on an
unready or undetermined host each fails in its call phase (no fixture set
up, no guest made) naming the host check; under auto each skips with that
reason; under off each skips.  On a ready host each path reaches the
launcher with the SEV-ES spec (the launcher is a double here).

Runs are inline (pytester in this process), so mutation testing sees the
plugin's code; no QEMU starts.  The real suites under the same modes are in
test_mode_live.py (this host, real guests) and test_sev_modes_recorded.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_host_undetermined import rotated_log_host

import pytest_sev.plugin.fixtures as plugin_fixtures
from pytest_sev.errors import PytestSevError
from pytest_sev.host import Decision, decide
from pytest_sev.host.decide import OFF_REASON
from pytest_sev.host.recorded import load_recorded
from pytest_sev.model.spec import Firmware as Firmware_
from pytest_sev.model.spec import GuestSpec as GuestSpec_
from pytest_sev.plugin.mode_table import ModeTableRefusal, decision_for, strictest, wants_of

REPO = Path(__file__).resolve().parents[1]
HOSTS = REPO / "fixtures" / "hosts"

CONFTEST = """
import tempfile
from pathlib import Path
import pytest
from pytest_sev.host.recorded import load_recorded
from pytest_sev.plugin.state import HOST_REPORT

def pytest_configure(config):
    config.stash[HOST_REPORT] = load_recorded(Path({host!r}), Path(tempfile.mkdtemp())).probe()


class SevItem(pytest.Item):
    def runtest(self):
        pass  # a plugin's own test: it passes when it runs

    def reportinfo(self):
        return self.path, 0, self.name


class SevFile(pytest.File):
    def collect(self):
        item = SevItem.from_parent(self, name="custom_item")
        item.add_marker({marker!r})
        yield item


def pytest_collect_file(file_path, parent):
    if file_path.suffix == ".sevtest":
        return SevFile.from_parent(parent, path=file_path)
"""

TESTS = """
from pathlib import Path
import pytest
from pytest_sev.model.spec import Firmware, GuestSpec, SevLaunch
from pytest_sev.plugin.fixtures import scoped_guest

HERE = Path(__file__)
SPEC = GuestSpec(kernel=HERE, firmware=Firmware("ovmf", HERE, HERE), sev=SevLaunch("sev-es", 0x5, 51), name="sev-es")


@pytest.fixture
def set_up():
    raise AssertionError("a fixture was set up for a test the mode table decided")


@pytest.mark.sev_es
def test_marked(set_up):
    pass


def test_fixture(set_up, sev_es_guest):
    pass


def test_fixture_only(sev_es_guest):
    pass


def test_factory_kind(guest_factory):
    guest_factory(kind="sev-es")


def test_factory_spec(guest_factory):
    guest_factory(SPEC)


@pytest.fixture(scope="module")
def module_guest(request, run_config):
    with scoped_guest(request, run_config, "module-sev-es", SPEC) as guest:
        yield guest


def test_module_fixture(module_guest):
    pass


def test_module_fixture_again(module_guest):
    pass
"""

PATHS = ("test_marked", "test_fixture", "test_fixture_only", "test_factory_kind", "test_factory_spec",
         "test_module_fixture", "test_module_fixture_again", "custom_item")


class WouldBoot(Exception):
    """The launcher double: a guest the mode table let through."""


@pytest.fixture(autouse=True)
def no_launcher(monkeypatch, tmp_path):
    """No QEMU: a guest that gets as far as the launcher stops there, naming its spec."""
    def launcher(cfg, spec, workdir):
        launch = spec.snp or spec.sev
        raise WouldBoot(f"would boot {launch.mode if launch else 'plain'} "
                        f"policy={launch.policy if launch else '-'} cbitpos={launch.cbitpos if launch else '-'}"
                        + (f" reduced-phys-bits={spec.snp.reduced_phys_bits}" if spec.snp else ""))

    def snp_spec_double(cfg, cbitpos, reduced_phys_bits=None, **fields):
        from pytest_sev.guest.specs import snp_launch
        here = Path(__file__)
        return GuestSpec_(kernel=here, firmware=Firmware_("bios", here), snp=snp_launch(cfg, cbitpos, reduced_phys_bits),
                          **fields)

    def spec_double(cfg, mode, cbitpos, **fields):
        from pytest_sev.model.spec import Firmware, GuestSpec, SevLaunch
        here = Path(__file__)
        return GuestSpec(kernel=here, firmware=Firmware("ovmf", here, here), sev=SevLaunch(mode, 0x5, cbitpos), **fields)

    monkeypatch.setattr(plugin_fixtures, "make_guest", launcher)
    monkeypatch.setattr(plugin_fixtures, "sev_spec", spec_double)  # the default guest's files are not needed here
    monkeypatch.setattr(plugin_fixtures, "snp_spec", snp_spec_double)
    monkeypatch.setenv("PYTEST_SEV_BUDGET_DIR", str(tmp_path / "budget"))


def run(pytester, host: Path, *args: str, tests: str = TESTS, marker: str = "sev_es"):
    pytester.makeconftest(CONFTEST.format(host=str(host), marker=marker))
    pytester.makepyfile(test_paths=tests)
    pytester.makefile(".sevtest", custom="")
    return pytester.runpytest_inprocess("-p", "no:cacheprovider", "-p", "no:randomly", "-o", "sev_allure=false",
                                        f"--guest-log-dir={pytester.path / 'logs'}", "-rA", *args)


def outcomes(result) -> dict[str, tuple[str, str, str]]:
    """test name -> (outcome, phase, message) of the report that decided it."""
    found: dict[str, tuple[str, str, str]] = {}
    for rep in result.reprec.getreports("pytest_runtest_logreport"):
        name = rep.nodeid.rsplit("::", 1)[-1]
        if rep.skipped:
            found[name] = ("skipped", rep.when, rep.longrepr[2].removeprefix("Skipped: "))
        elif rep.failed:
            found[name] = ("failed", rep.when, rep.longreprtext)
        elif rep.when == "call":
            found[name] = ("passed", "call", "")
    return found


def reason(host: Path, tmp_path: Path, mode: str) -> str:
    return decide(mode, load_recorded(host, tmp_path / "probe").probe(), "sev-es").reason


@pytest.mark.parametrize("host", ["epyc-milan-sev-only", "undetermined"])
def test_sev_es_mode_fails_every_path_alike(pytester, tmp_path, host):
    """Not ready (a failed check) or undetermined (unanswerable ones): every
    path fails in its call phase, nothing set up, with the table's reason."""
    path = rotated_log_host(tmp_path) if host == "undetermined" else HOSTS / host
    expected = reason(path, tmp_path, "sev-es")
    result = run(pytester, path, "--sev-es")
    assert outcomes(result) == {name: ("failed", "call", expected) for name in PATHS}
    assert not (pytester.path / "logs").exists() or not any((pytester.path / "logs").rglob("harness.log"))


def test_the_undetermined_reason_names_the_checks(pytester, tmp_path):
    result = run(pytester, rotated_log_host(tmp_path), "--sev-es")
    text = outcomes(result)["test_factory_kind"][2]
    assert text.startswith("--sev-es but host readiness for sev-es undetermined: sev_firmware (unknown (")
    assert "kernel_log_sev (unknown (" in text and "kernel_log_sev_es (unknown (" in text


def test_auto_mode_skips_every_path_alike(pytester, tmp_path):
    path = rotated_log_host(tmp_path)
    expected = reason(path, tmp_path, "auto")
    result = run(pytester, path)
    in_the_body = ("test_factory_kind", "test_factory_spec")  # skipped where the test asked for the guest
    assert outcomes(result) == {name: ("skipped", "call" if name in in_the_body else "setup", expected)
                                for name in PATHS}
    assert expected.startswith("host readiness for sev-es undetermined: ")


def test_off_mode_skips_every_path(pytester):
    result = run(pytester, HOSTS / "epyc-milan-6.8-ready", "--sev-mode=off")
    found = outcomes(result)
    assert {name: (outcome, text) for name, (outcome, _, text) in found.items()} == {
        name: ("skipped", OFF_REASON) for name in PATHS}


def test_a_ready_host_lets_every_path_through_to_the_launcher(pytester):
    result = run(pytester, HOSTS / "epyc-rome-5.15-ready", "--sev-es")
    found = outcomes(result)
    for name in ("test_marked", "test_fixture"):  # let through: their fixtures were set up
        assert found[name][:2] == ("failed", "setup") and "a fixture was set up" in found[name][2]
    assert found["custom_item"] == ("passed", "call", "")
    for name in ("test_fixture_only", "test_factory_kind"):  # built from the host: its C-bit, policy 0x5
        assert "WouldBoot: would boot sev-es policy=5 cbitpos=47" in found[name][2], found[name]
    for name in ("test_factory_spec", "test_module_fixture", "test_module_fixture_again"):
        assert "WouldBoot: would boot sev-es policy=5 cbitpos=51" in found[name][2], found[name]


SEVERAL = """
import pytest

@pytest.mark.sev
@pytest.mark.sev_es
def test_both():
    pass

@pytest.mark.sev_es
@pytest.mark.sev
def test_both_other_order():
    pass

def test_two_fixtures(sev_guest, sev_es_guest):
    pass

@pytest.mark.plain
def test_plain():
    pass
"""


def test_the_strictest_answer_wins(pytester, tmp_path):
    """--sev on a host not ready for SEV: SEV fails, SEV-ES skips ("--sev does
    not ask for SEV-ES"); a test wanting both must fail, whatever the order."""
    host = HOSTS / "intel-xeon-icelake"
    report = load_recorded(host, tmp_path / "probe").probe()
    failure = decide("sev", report, "sev").reason
    assert decide("sev", report, "sev-es").action == "skip"
    result = run(pytester, host, "--sev", tests=SEVERAL)
    found = outcomes(result)
    for name in ("test_both", "test_both_other_order", "test_two_fixtures"):
        assert found[name] == ("failed", "call", failure)
    assert found["test_plain"] == ("passed", "call", "")


def test_sev_mode_skips_sev_es_tests_and_runs_sev_ones(pytester):
    host = HOSTS / "epyc-milan-sev-only"
    result = run(pytester, host, "--sev", tests=SEVERAL)
    found = outcomes(result)
    assert found["test_both"] == ("skipped", "setup", "--sev does not ask for SEV-ES (use --sev-es)")
    assert found["test_plain"] == ("passed", "call", "")


def test_factory_refuses_an_unknown_kind_or_both_a_spec_and_a_kind(pytester):
    tests = TESTS + """

def test_bad_kind(guest_factory):
    with pytest.raises(ValueError, match="guest kind 'snp'"):
        guest_factory(kind="snp")

def test_spec_and_kind(guest_factory):
    with pytest.raises(ValueError, match="a spec or a kind, not both"):
        guest_factory(SPEC, kind="sev-es")
"""
    result = run(pytester, HOSTS / "epyc-rome-5.15-ready", "--sev-es", "-k", "bad_kind or spec_and_kind", tests=tests)
    result.assert_outcomes(passed=2)


PLAIN = """
def test_plain_factory(guest_factory):
    guest_factory(name="plain-one")
"""


def test_a_plain_guest_is_never_decided(pytester):
    """--sev-es on an unready host: a plain guest still goes to the launcher."""
    result = run(pytester, HOSTS / "epyc-milan-sev-only", "--sev-es", "-k", "plain_factory", tests=PLAIN)
    found = outcomes(result)
    assert found["test_plain_factory"][0] == "failed"
    assert "WouldBoot: would boot plain policy=- cbitpos=-" in found["test_plain_factory"][2]


@pytest.mark.parametrize("host, header", [
    ("undetermined", "pytest-sev: mode sev-es; "
                     "sev-es: UNDETERMINED (could not answer: sev_firmware, kernel_log_sev, kernel_log_sev_es); "
                     "sev: UNDETERMINED (could not answer: sev_firmware, kernel_log_sev)"),
    ("epyc-milan-sev-only", "pytest-sev: mode sev-es; sev-es: NOT READY (sev_es_asids: 0 (CPUID 0x8000001F EDX=1: "
                            "no ASID below the minimum SEV ASID)); sev: READY"),
])
def test_run_header_says_ready_not_ready_or_undetermined(pytester, tmp_path, host, header):
    path = rotated_log_host(tmp_path) if host == "undetermined" else HOSTS / host
    result = run(pytester, path, "--sev-es", "-k", "nothing_matches")
    # then the host's sev-snp readiness (what --sev-snp would demand)
    assert any(line.startswith(header + "; sev-snp: NOT READY (") for line in result.outlines), result.outlines


# -- SEV-SNP: the same paths, the same answers (issue 22, item 1) -------------------------------

SNP_TESTS = (TESTS.replace("SevLaunch", "SnpLaunch")
             .replace('SPEC = GuestSpec(kernel=HERE, firmware=Firmware("ovmf", HERE, HERE), sev=SnpLaunch("sev-es", 0x5, 51), '
                      'name="sev-es")',
                      'SPEC = GuestSpec(kernel=HERE, firmware=Firmware("bios", HERE), snp=SnpLaunch(51), name="sev-snp")')
             .replace("pytest.mark.sev_es", "pytest.mark.sev_snp").replace("sev_es_guest", "sev_snp_guest")
             .replace('kind="sev-es"', 'kind="sev-snp"'))


def snp_reason(host: Path, tmp_path: Path, mode: str) -> str:
    return decide(mode, load_recorded(host, tmp_path / "probe").probe(), "sev-snp").reason


def run_snp(pytester, host: Path, *args: str):
    return run(pytester, host, *args, tests=SNP_TESTS, marker="sev_snp")


def test_the_snp_tests_ask_for_snp_only():
    assert "SnpLaunch(51)" in SNP_TESTS and "sev_es" not in SNP_TESTS and '"sev-es"' not in SNP_TESTS


@pytest.mark.parametrize("host", ["epyc-milan-snp-iommu-pt", "epyc-milan-6.8-ready", "intel-xeon-icelake"])
def test_sev_snp_mode_fails_every_snp_path_alike(pytester, tmp_path, host):
    expected = snp_reason(HOSTS / host, tmp_path, "sev-snp")
    assert expected.startswith("--sev-snp but host not ready for sev-snp: host check ")
    result = run_snp(pytester, HOSTS / host, "--sev-snp")
    assert outcomes(result) == {name: ("failed", "call", expected) for name in PATHS}


def test_sev_mode_option_spelling_fails_alike(pytester, tmp_path):
    host = HOSTS / "epyc-milan-snp-iommu-pt"
    result = run_snp(pytester, host, "--sev-mode=sev-snp")
    assert outcomes(result)["test_factory_kind"] == ("failed", "call", snp_reason(host, tmp_path, "sev-snp"))
    assert "host check snp_iommu failed" in outcomes(result)["test_marked"][2]


def test_auto_mode_skips_every_snp_path_alike(pytester, tmp_path):
    host = HOSTS / "epyc-milan-snp-iommu-pt"
    expected = snp_reason(host, tmp_path, "auto")
    result = run_snp(pytester, host)
    in_the_body = ("test_factory_kind", "test_factory_spec")
    assert outcomes(result) == {name: ("skipped", "call" if name in in_the_body else "setup", expected)
                                for name in PATHS}
    assert expected.startswith("host not ready for sev-snp: host check snp_iommu failed")


@pytest.mark.parametrize("args, expected", [
    (("--sev-mode=off",), OFF_REASON),
    (("--sev-es",), "--sev-es does not ask for SEV-SNP (use --sev-snp)"),
    (("--sev",), "--sev does not ask for SEV-SNP (use --sev-snp)"),
])
def test_other_modes_skip_every_snp_path(pytester, args, expected):
    result = run_snp(pytester, HOSTS / "epyc-milan-snp-ready", *args)
    found = outcomes(result)
    assert {name: (outcome, text) for name, (outcome, _, text) in found.items()} == {
        name: ("skipped", expected) for name in PATHS}


def test_a_snp_ready_host_lets_every_snp_path_through_to_the_launcher(pytester):
    result = run_snp(pytester, HOSTS / "epyc-milan-snp-ready", "--sev-snp")
    found = outcomes(result)
    for name in ("test_marked", "test_fixture"):
        assert found[name][:2] == ("failed", "setup") and "a fixture was set up" in found[name][2]
    assert found["custom_item"] == ("passed", "call", "")
    cbit = load_recorded(HOSTS / "epyc-milan-snp-ready", Path(pytester.path / "probe")).probe().facts["cbitpos"]
    for name in ("test_fixture_only", "test_factory_kind"):  # built from the host: its C-bit, policy 0x30000
        assert f"WouldBoot: would boot sev-snp policy={0x30000} cbitpos={cbit} reduced-phys-bits=" in found[name][2], \
            found[name]
    for name in ("test_factory_spec", "test_module_fixture", "test_module_fixture_again"):
        assert f"WouldBoot: would boot sev-snp policy={0x30000} cbitpos=51" in found[name][2], found[name]


SNP_AND_OTHERS = """
import pytest

@pytest.mark.sev_snp
def test_snp():
    pass

@pytest.mark.sev_es
def test_sev_es():
    pass

@pytest.mark.sev
def test_sev():
    pass

@pytest.mark.sev_snp
@pytest.mark.sev_es
def test_snp_and_es():
    pass

@pytest.mark.plain
def test_plain():
    pass
"""


def test_sev_snp_mode_runs_sev_es_and_sev_only_where_the_host_can(pytester, tmp_path):
    """--sev-snp demands SNP; SEV-ES and SEV are not demanded: on a host ready
    for none, SNP fails naming the check while SEV-ES and SEV skip naming theirs."""
    host = HOSTS / "intel-xeon-icelake"
    report = load_recorded(host, tmp_path / "probe").probe()
    result = run(pytester, host, "--sev-snp", tests=SNP_AND_OTHERS)
    found = outcomes(result)
    assert found["test_snp"] == ("failed", "call", decide("sev-snp", report, "sev-snp").reason)
    assert found["test_snp_and_es"] == found["test_snp"]  # the strictest answer wins
    assert found["test_sev_es"] == ("skipped", "setup", decide("auto", report, "sev-es").reason)
    assert found["test_sev"] == ("skipped", "setup", decide("auto", report, "sev").reason)
    assert found["test_plain"] == ("passed", "call", "")


def test_sev_snp_mode_runs_sev_es_where_the_host_can(pytester):
    result = run(pytester, HOSTS / "epyc-milan-snp-iommu-pt", "--sev-snp", tests=SNP_AND_OTHERS)
    found = outcomes(result)
    assert found["test_sev_es"] == ("passed", "call", "") and found["test_sev"] == ("passed", "call", "")
    assert found["test_snp"][0] == "failed" and "snp_iommu" in found["test_snp"][2]


def test_sev_snp_and_sev_es_flags_are_exclusive(pytester):
    result = run(pytester, HOSTS / "epyc-milan-snp-ready", "--sev-snp", "--sev-es", tests=SNP_AND_OTHERS)
    assert result.ret != 0
    result.stderr.fnmatch_lines(["*--sev-snp and --sev-es are exclusive*"])


def test_the_run_header_names_the_snp_mode(pytester):
    result = run(pytester, HOSTS / "epyc-milan-snp-ready", "--sev-snp", "-k", "nothing_matches")
    assert any(line.startswith("pytest-sev: mode sev-snp; ") and "sev-snp: READY" in line
               for line in result.outlines), result.outlines


# -- this session's own items: the table decides them too --------------------------------------
# The outer run (these tests) goes through the same plugin. Each test below asks for SEV the way a
# suite would, and is decided before its body: on this host (auto, not SEV ready) it is skipped.
# If its body runs, the table let it through, and the body checks that "run" is what the table
# says for what it asked; a table that forgot how a test asks for SEV fails here.

@pytest.fixture
def sev_es_guest():
    """Stands in for the plugin's fixture: only its name is asked for."""


@pytest.fixture
def sev_guest():
    """Stands in for the plugin's fixture: only its name is asked for."""


@pytest.fixture
def sev_snp_guest():
    """Stands in for the plugin's fixture: only its name is asked for."""


@pytest.mark.sev_snp
def test_snp_marked_here(request):
    _the_table_lets_it_run(request.config, "sev-snp")


def test_asking_for_the_snp_fixture_here(request, sev_snp_guest):
    _the_table_lets_it_run(request.config, "sev-snp")


@pytest.mark.sev
@pytest.mark.sev_es
@pytest.mark.sev_snp
def test_marked_and_asking_for_every_kind_here(request, sev_guest, sev_es_guest, sev_snp_guest):
    """Asks for every kind both ways: a table that read the names backwards would let it run."""
    _the_table_lets_it_run(request.config, "sev", "sev-es", "sev-snp")


def _the_table_lets_it_run(config, *kinds: str) -> None:
    decision = strictest(decision_for(config, kind) for kind in kinds)
    assert decision is not None and decision.action == "run", (
        f"the mode table let a test run that it decides to {decision.action if decision else '?'}: "
        f"{decision.reason if decision else ''}")


@pytest.mark.sev
@pytest.mark.sev_es
def test_marked_here(request):
    _the_table_lets_it_run(request.config, "sev", "sev-es")


def test_asking_for_the_guest_fixtures_here(request, sev_guest, sev_es_guest):
    _the_table_lets_it_run(request.config, "sev", "sev-es")


@pytest.mark.sev
@pytest.mark.sev_es
def test_marked_and_asking_here(request, sev_guest, sev_es_guest):
    _the_table_lets_it_run(request.config, "sev", "sev-es")


def test_wants_of_reads_markers_and_fixture_names(pytester):
    items, _ = pytester.inline_genitems(pytester.makepyfile(test_wants="""
import pytest

@pytest.mark.plain
def test_plain():
    pass

@pytest.mark.sev_es
def test_marker():
    pass

@pytest.mark.sev
class TestClass:
    def test_in_class(self, sev_es_guest):
        pass

@pytest.mark.sev_snp
def test_snp_marker():
    pass

def test_snp_fixture(sev_snp_guest):
    pass
"""), "-p", "no:cacheprovider", "-o", "sev_allure=false", "--sev-mode=off")
    assert {item.name: wants_of(item) for item in items} == {
        "test_plain": [], "test_marker": ["sev-es"], "test_in_class": ["sev", "sev-es"],
        "test_snp_marker": ["sev-snp"], "test_snp_fixture": ["sev-snp"]}


def test_strictest_and_refusal():
    run, skip, fail = Decision("run", "r"), Decision("skip", "s"), Decision("fail", "f")
    assert strictest([]) is None
    assert strictest([run, skip]) == skip and strictest([fail, skip, run]) == fail
    assert strictest([skip, Decision("skip", "second")]) == skip  # the first of equals
    assert strictest([run]) == run
    refusal = ModeTableRefusal(fail)
    assert refusal.decision == fail and str(refusal) == "f"  # if it ever escaped, it says why
    assert isinstance(refusal, PytestSevError)
