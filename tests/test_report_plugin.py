"""The reporting plugin in real pytest sessions (pytester, subprocesses).

Results directory default and cleaning, environment.properties, categories,
labels per suite, the runner as parent suite and history-id parameter, the
host report on host tests, and xdist (results from workers, files written
once by the controller). No guest boots here: see test_report_html.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from pytest_sev.plugin.labels import suite_of
from pytest_sev.reporting.environment import component_entries, format_properties
from pytest_sev.reporting.resultsdir import default_results_dir
from pytest_sev.reporting.runner_name import runner_name

ROOT = Path(__file__).resolve().parents[1]

SMOKE = """
import pytest
def test_ok():
    pass
def test_fails():
    assert 1 == 2, "uname -r differs"
def test_skipped():
    pytest.skip("not today")
"""

LABELLED = """
import allure
import pytest
pytestmark = [allure.feature("custom-feature")]
@allure.severity(allure.severity_level.MINOR)
def test_own_labels():
    pass
"""


def layout(pytester: pytest.Pytester, reports: bool = True, ini: str = "") -> None:
    pytester.makefile(".ini", pytest=f"[pytest]\n{ini}\n")
    if reports:
        (pytester.path / "reports").mkdir()
    suites = pytester.path / "suites"
    suites.mkdir()
    (suites / "test_smoke.py").write_text(SMOKE)


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "--sev-mode=off", *args)


def results(directory: Path) -> dict[str, dict]:
    out = {}
    for path in directory.glob("*-result.json"):
        data = json.loads(path.read_text())
        out[data["name"]] = data
    return out


def labels_of(result: dict) -> dict[str, list[str]]:
    got: dict[str, list[str]] = {}
    for label in result["labels"]:
        got.setdefault(label["name"], []).append(label["value"])
    return got


def properties(path: Path) -> dict[str, str]:
    entries = {}
    for line in path.read_text().splitlines():
        key, _, value = line.partition("=")
        entries[key] = value
    return entries


# -- one shared session: suites of every kind, a runner name, a hook --------

ENV_HOOK = """
from pytest_sev.reporting.environment import component_entries
def pytest_sev_report_environment(config):
    return component_entries({"qemu": "v9.2.0-12-gabc1234", "ovmf": "edk2-stable202411"})
"""


def inner(root: Path, *args: str, runner: str = "epyc-milan-01") -> subprocess.CompletedProcess:
    env = {**os.environ, "SEV_RUNNER": runner}
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--sev-mode=off", *args],
                          cwd=root, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """A checkout-like tree run once: smoke, dma, activation (own labels),
    the real host suite, and a test outside suites/."""
    root = tmp_path_factory.mktemp("shared")
    (root / "pytest.ini").write_text("[pytest]\n")
    (root / "conftest.py").write_text(ENV_HOOK)
    suites = root / "suites"
    suites.mkdir()
    (suites / "test_smoke.py").write_text(SMOKE)
    (suites / "test_dma.py").write_text("def test_pool_64m():\n    pass\n")
    (suites / "test_activation.py").write_text(LABELLED)
    (suites / "test_host.py").write_text((ROOT / "suites" / "test_host.py").read_text())
    (root / "tests").mkdir()
    (root / "tests" / "test_unit.py").write_text("def test_unit():\n    pass\n")
    out = root / "reports" / "allure-results"
    out.mkdir(parents=True)
    (out / "0000-result.json").write_text(json.dumps({"name": "test_from_last_week", "status": "passed"}))
    proc = inner(root, "suites", "tests")
    assert proc.returncode == 1, proc.stdout + proc.stderr  # test_fails fails, nothing else
    return SimpleNamespace(root=root, out=out, proc=proc, results=results(out))


def test_default_results_dir_holds_this_run_only(shared):
    got = shared.results
    assert "test_from_last_week" not in got
    assert {n: got[n]["status"] for n in ("test_ok", "test_fails", "test_skipped")} == {
        "test_ok": "passed", "test_fails": "failed", "test_skipped": "skipped"}
    assert (shared.out / "categories.json").is_file() and (shared.out / "environment.properties").is_file()
    assert f"pytest-sev: Allure results in {shared.out} (default" in shared.proc.stdout


def test_environment_properties(shared):
    env = properties(shared.out / "environment.properties")
    assert env["runner"] == "epyc-milan-01"
    assert env["mode"] == "off"
    assert env["accelerator"].split()[0] in ("kvm", "tcg")
    for key in ("host.cpu_model", "host.family_model_stepping", "host.microcode", "host.sev_api",
                "host.sev_build", "host.kernel", "qemu.version", "ovmf", "guest.kernel",
                "host.ready.sev-es", "host.ready.sev"):
        assert env.get(key), key
    assert env["host.kernel"] == Path("/proc/sys/kernel/osrelease").read_text().strip()
    assert env["qemu.version"][0].isdigit()
    assert env["component.qemu.commit"] == "v9.2.0-12-gabc1234"
    assert env["component.ovmf.commit"] == "edk2-stable202411"


def test_labels_per_suite_and_runner(shared):
    got = shared.results
    dma = labels_of(got["test_pool_64m"])
    assert dma["epic"] == ["pytest-sev"] and dma["feature"] == ["dma"]
    assert dma["story"] == ["pool_64m"] and dma["severity"] == ["normal"]
    assert dma["parentSuite"] == ["epyc-milan-01"] and dma["suite"] == ["test_dma"]

    smoke = labels_of(got["test_fails"])
    assert (smoke["feature"], smoke["severity"]) == (["smoke"], ["blocker"])

    own = labels_of(got["test_own_labels"])  # the test's own labels win
    assert own["feature"] == ["custom-feature"] and own["severity"] == ["minor"]
    assert own["epic"] == ["pytest-sev"] and own["story"] == ["own_labels"]

    unit = labels_of(got["test_unit"])  # outside suites/: only the runner
    assert unit["parentSuite"] == ["epyc-milan-01"]
    assert "feature" not in unit and "epic" not in unit

    params = {p["name"]: p["value"] for p in got["test_unit"]["parameters"]}
    assert params["runner"] == repr("epyc-milan-01")


def test_host_report_attached_once_per_host_test(shared):
    got = shared.results
    host_tests = [r for n, r in got.items() if n.startswith("test_host_check[")]
    assert len(host_tests) >= 10
    for result in host_tests:
        atts = [a for a in result.get("attachments", []) if a["name"] == "host readiness report"]
        assert len(atts) == 1, result["name"]
        text = (shared.out / atts[0]["source"]).read_text()
        assert text.startswith("[ ") and "\nsev-es: " in text and "\nsev: " in text
        assert labels_of(result)["severity"] == ["critical"]
        assert labels_of(result)["feature"] == ["host"]
    assert not any(a["name"] == "host readiness report"
                   for a in got["test_ok"].get("attachments", []))


def test_same_test_on_two_runners_has_two_history_ids(shared):
    """Merged reports must not take runner B's result for a retry of A's;
    and one runner's id is stable, so its history lines up night after night.
    (Also: --collect-only leaves the previous results alone.)"""
    first = shared.results["test_ok"]["historyId"]
    listing = sorted(p.name for p in shared.out.iterdir())
    inner(shared.root, "--collect-only", "suites")
    assert sorted(p.name for p in shared.out.iterdir()) == listing
    ids = {}
    for runner in ("rome-02", "epyc-milan-01"):
        inner(shared.root, "suites/test_smoke.py::test_ok", runner=runner)
        ids[runner] = results(shared.out)["test_ok"]["historyId"]
    assert ids["rome-02"] != first
    assert ids["epyc-milan-01"] == first


# -- switches ----------------------------------------------------------------

def test_no_reports_dir_no_results(pytester):
    layout(pytester, reports=False)
    run(pytester, "suites").assert_outcomes(passed=1, failed=1, skipped=1)
    assert not (pytester.path / "reports").exists()
    assert not list(pytester.path.rglob("*-result.json"))


def test_ini_switch_turns_the_default_off(pytester):
    layout(pytester, ini="sev_allure = false")
    run(pytester, "suites").assert_outcomes(passed=1, failed=1, skipped=1)
    assert not (pytester.path / "reports" / "allure-results").exists()


def test_explicit_alluredir_wins_and_is_not_cleaned(pytester):
    layout(pytester)
    elsewhere = pytester.path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "kept.txt").write_text("allure-pytest decides about cleaning here")
    run(pytester, "--alluredir", str(elsewhere), "suites")
    assert set(results(elsewhere)) == {"test_ok", "test_fails", "test_skipped"}
    assert (elsewhere / "kept.txt").exists()
    assert (elsewhere / "environment.properties").is_file()
    assert not (pytester.path / "reports" / "allure-results").exists()


def test_xdist_workers_results_and_one_environment_write(pytester):
    pytest.importorskip("xdist")
    layout(pytester)
    log = pytester.path / "env-calls.txt"
    pytester.makeconftest(f"""
def pytest_sev_report_environment(config):
    who = "worker" if hasattr(config, "workerinput") else "controller"
    with open({str(log)!r}, "a") as f:
        f.write(who + "\\n")
    return {{"written.by": who}}
""")
    res = run(pytester, "-n", "2", "suites")
    res.assert_outcomes(passed=1, failed=1, skipped=1)
    out = pytester.path / "reports" / "allure-results"
    assert set(results(out)) == {"test_ok", "test_fails", "test_skipped"}
    assert log.read_text().split() == ["controller"]
    assert properties(out / "environment.properties")["written.by"] == "controller"
    assert (out / "categories.json").is_file()


# -- pure helpers ----------------------------------------------------------

def test_properties_escaping():
    text = format_properties({"host.cpu model": "AMD EPYC 7763 64-Core", "path": "C:\\x=y: #1",
                              "lead": " space", "multi": "a\nb", "uni": "µcode", "none": None})
    assert text.splitlines() == [
        "host.cpu\\ model=AMD EPYC 7763 64-Core",
        "path=C:\\\\x=y: #1",
        "lead=\\ space",
        "multi=a\\nb",
        "uni=\\u00b5code",
        "none=unknown",
    ]
    text.encode("ascii")


def test_component_entries():
    assert component_entries({"qemu": "abc", "kernel": "def"}) == {
        "component.kernel.commit": "def", "component.qemu.commit": "abc"}


def test_runner_name(monkeypatch):
    assert runner_name({"SEV_RUNNER": " epyc-7 "}) == "epyc-7"
    assert runner_name({"SEV_RUNNER": ""}) == runner_name({})
    assert runner_name({}) != ""


def test_suite_of(tmp_path):
    assert suite_of(tmp_path / "suites" / "test_dma.py", tmp_path) == "dma"
    assert suite_of(tmp_path / "suites" / "sub" / "test_x.py", tmp_path) == "x"
    assert suite_of(tmp_path / "tests" / "test_dma.py", tmp_path) is None
    assert suite_of(Path("/elsewhere/suites/test_dma.py"), tmp_path) is None


def test_default_results_dir(tmp_path):
    assert default_results_dir(tmp_path, True) is None
    (tmp_path / "reports").mkdir()
    assert default_results_dir(tmp_path, True) == tmp_path / "reports" / "allure-results"
    assert default_results_dir(tmp_path, False) is None
