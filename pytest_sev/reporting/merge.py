"""Merge the results of several runners into one report's input.

Why: a nightly runs on several EPYC runners (Rome, Milan, Genoa...); each
leaves an Allure results directory and a JUnit file.  One report must show
them side by side, one Allure environment per runner, with one history.

- Allure result, container and attachment files have unique names
  (UUIDs): they are copied as they are;
- ``environment.properties`` (one per runner, same keys) becomes one file
  whose keys carry the runner: ``rome-1.host.cpu=...``;
- ``categories.json`` (the same list from every runner of one version) is
  the union, first occurrence of each name kept;
- JUnit XML files become one, each suite renamed ``RUNNER: suite`` (junitparser).

Each results directory's runner is read from its results' ``runner`` label
(:data:`pytest_sev.reporting.runner_name.RUNNER_LABEL`), else the directory name.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pytest_sev.reporting.runner_name import RUNNER_LABEL

SPECIAL = ("environment.properties", "categories.json", "executor.json")


@dataclass(frozen=True)
class MergedRun:
    runner: str
    results: int
    directory: Path


def runner_of(results_dir: Path) -> str:
    """The runner label the directory's results carry (the first found), else its name."""
    for path in sorted(results_dir.glob("*-result.json")):
        try:
            labels = json.loads(path.read_text()).get("labels", [])
        except (OSError, ValueError):
            continue
        for label in labels:
            if label.get("name") == RUNNER_LABEL and label.get("value"):
                return str(label["value"])
    return results_dir.name


def parse_properties(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith(("#", "!")) and "=" in line:
            key, value = line.split("=", 1)
            out[key.strip()] = value.strip()
    return out


def merged_environment(per_runner: dict[str, dict[str, str]]) -> dict[str, str]:
    """One environment table: ``RUNNER.key`` for every runner's entries."""
    out: dict[str, str] = {"runners": ", ".join(sorted(per_runner))}
    for runner in sorted(per_runner):
        for key, value in per_runner[runner].items():
            out[f"{runner}.{key}"] = value
    return out


def merged_categories(lists: Iterable[list[dict[str, object]]]) -> list[dict[str, object]]:
    seen: dict[str, dict[str, object]] = {}
    for categories in lists:
        for cat in categories:
            seen.setdefault(str(cat.get("name")), cat)
    return list(seen.values())


def merge_results(out: Path, directories: Sequence[Path]) -> list[MergedRun]:
    """Copy every runner's Allure results into *out* (created) and merge the
    environment and categories; a runner name seen twice is an error."""
    out.mkdir(parents=True, exist_ok=True)
    runs: list[MergedRun] = []
    envs: dict[str, dict[str, str]] = {}
    cats: list[list[dict[str, object]]] = []
    for directory in directories:
        runner = runner_of(directory)
        if runner in envs:
            raise ValueError(f"two results directories from runner {runner!r}: set SEV_RUNNER per runner")
        count = 0
        for path in sorted(directory.iterdir()):
            if path.name in SPECIAL or not path.is_file():
                continue
            target = out / path.name
            if target.exists():
                raise ValueError(f"{path.name} exists in two runners' results: not Allure results files")
            shutil.copy2(path, target)
            count += path.name.endswith("-result.json")
        env_file = directory / "environment.properties"
        envs[runner] = parse_properties(env_file.read_text()) if env_file.is_file() else {}
        cat_file = directory / "categories.json"
        if cat_file.is_file():
            cats.append(json.loads(cat_file.read_text()))
        runs.append(MergedRun(runner, count, directory))
    env = merged_environment(envs)
    (out / "environment.properties").write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    (out / "categories.json").write_text(json.dumps(merged_categories(cats), indent=1))
    return runs


def merge_junit(out: Path, files: Sequence[tuple[str, Path]]) -> int:
    """One JUnit XML from ``(runner, file)`` pairs; returns the number of test cases."""
    from junitparser import JUnitXml, TestSuite

    merged = JUnitXml(name="pytest-sev")
    cases = 0
    for runner, path in files:
        xml = JUnitXml.fromfile(str(path))
        suites = [xml] if isinstance(xml, TestSuite) else list(xml)
        for suite in suites:
            suite.name = f"{runner}: {suite.name}"
            cases += len(list(suite))
            merged.add_testsuite(suite)
    merged.update_statistics()
    out.parent.mkdir(parents=True, exist_ok=True)
    merged.write(str(out), pretty=True)
    return cases
