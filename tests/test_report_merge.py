"""One nightly report from several runners: two simulated runners (``SEV_RUNNER
=rome-1`` and ``milan-1``) run the same tests for real, ``python -m pytest_sev
merge`` combines their Allure results and JUnit files, ``scripts/report.sh``
builds one Allure 3 report, and headless Chromium shows both runners as
environments of it."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from junitparser import JUnitXml
from test_report_html import CHROMIUM, chromium, report_sh, text_of

from pytest_sev.reporting.merge import merge_results, parse_properties, runner_of

RUNNERS = ("rome-1", "milan-1")
TESTS = "def test_a():\n    pass\n\ndef test_b():\n    assert 1 == 2, 'regressed'\n"


@pytest.fixture
def two_runners(pytester, monkeypatch, tmp_path):
    """Each runner's results dir and JUnit file, from real pytest runs."""
    pytester.makefile(".ini", pytest="[pytest]\n")
    (pytester.path / "suites").mkdir()
    (pytester.path / "suites" / "test_x.py").write_text(TESTS)
    out = {}
    for runner in RUNNERS:
        monkeypatch.setenv("SEV_RUNNER", runner)
        results, junit = tmp_path / f"results-{runner}", tmp_path / f"junit-{runner}.xml"
        run = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--sev-mode=off", f"--alluredir={results}",
                                            f"--junitxml={junit}", "suites")
        run.assert_outcomes(passed=1, failed=1)
        out[runner] = (results, junit)
    return out


def test_merge_keeps_every_result_and_names_each_runner(two_runners, tmp_path):
    merged = tmp_path / "merged"
    runs = merge_results(merged, [two_runners[r][0] for r in RUNNERS])
    assert [(r.runner, r.results) for r in runs] == [("rome-1", 2), ("milan-1", 2)]
    assert len(list(merged.glob("*-result.json"))) == 4
    env = parse_properties((merged / "environment.properties").read_text())
    assert env["runners"] == "milan-1, rome-1"
    assert env["rome-1.runner"] == "rome-1" and env["milan-1.mode"] == "off"
    assert {runner_of(two_runners[r][0]) for r in RUNNERS} == set(RUNNERS)
    with pytest.raises(ValueError, match="two results directories from runner 'rome-1'"):
        merge_results(tmp_path / "again", [two_runners["rome-1"][0], two_runners["rome-1"][0]])


def test_only_allure_files_are_read(tmp_path):
    """Allure's names only, never a symlink: what decides which files a merge copies."""
    from pytest_sev.reporting.merge import check_results_dir, is_allure_file
    d = tmp_path / "r"
    d.mkdir()
    for name in ("a-result.json", "a-container.json", "b-attachment.png", "environment.properties",
                 "environment.xml", "categories.json", "executor.json", "shadow", "a.json"):
        (d / name).write_text("{}")
    (d / "c-result.json").symlink_to(d / "shadow")
    (d / "sub-attachment").mkdir()
    allure = sorted(p.name for p in d.iterdir() if is_allure_file(p))
    assert allure == ["a-container.json", "a-result.json", "b-attachment.png", "categories.json",
                      "environment.properties", "environment.xml", "executor.json"]
    assert [p.name for p in check_results_dir(d)] == ["a-container.json", "a-result.json", "b-attachment.png"]
    (d / "a-result.json").unlink()
    with pytest.raises(ValueError, match="no Allure results in it"):
        check_results_dir(d)  # containers and attachments alone are no runner's results


def test_environment_xml_joins_the_runner_environment(tmp_path):
    """Allure 2's environment.xml is merged like environment.properties (which wins on a clash)."""
    d = tmp_path / "milan"
    d.mkdir()
    (d / "a-result.json").write_text(json.dumps({"name": "t", "labels": []}))
    (d / "environment.xml").write_text("<environment><parameter><key>host.cpu</key><value>Milan</value>"
                                       "</parameter><parameter><key>qemu</key><value>7.2</value></parameter>"
                                       "</environment>")
    (d / "environment.properties").write_text("qemu=9.1\n")
    merge_results(tmp_path / "out", [d])
    env = parse_properties((tmp_path / "out" / "environment.properties").read_text())
    assert env["milan.host.cpu"] == "Milan" and env["milan.qemu"] == "9.1"
    assert not (tmp_path / "out" / "environment.xml").exists()
    (d / "environment.xml").write_text("not xml")
    with pytest.raises(ValueError, match="environment.xml is not XML"):
        merge_results(tmp_path / "again", [d])
    assert not (tmp_path / "again").exists()  # refused before anything is made


def test_merged_junit_across_runners(two_runners, tmp_path):
    out = tmp_path / "junit.xml"
    args = [sys.executable, "-m", "pytest_sev", "merge", str(tmp_path / "m"), *(str(two_runners[r][0]) for r in RUNNERS),
            "--junit", str(out), *(f"--junit-in={r}={two_runners[r][1]}" for r in RUNNERS)]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    xml = JUnitXml.fromfile(str(out))
    suites = list(xml)
    assert sorted(s.name.split(":")[0] for s in suites) == sorted(RUNNERS)
    assert (xml.tests, xml.failures) == (4, 2)


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (scripts/setup.sh installs it)")
def test_one_report_one_environment_per_runner_in_chromium(two_runners, report_env, serve, tmp_path):
    merged = tmp_path / "merged"
    merge_results(merged, [two_runners[r][0] for r in RUNNERS])
    index = report_sh(merged, report_env / "allure-report")
    envs = json.loads((index.parent / "widgets" / "environments.json").read_text())
    assert {e["name"] for e in envs} >= set(RUNNERS)
    base = serve(index.parent)
    profile = report_env / "chromium-profile"
    dom = chromium(base + "index.html", profile, "--dump-dom")
    text = text_of(dom)
    assert "pytest-sev" in text
    for runner in RUNNERS:  # the tree is split into one environment per runner
        assert re.search(r'Environment:\s*"?' + re.escape(runner), text), f"no environment {runner} in the page"
    shot = tmp_path / "merged-report.png"
    chromium(base + "index.html", profile, f"--screenshot={shot}")
    assert shot.is_file() and shot.stat().st_size > 10_000
