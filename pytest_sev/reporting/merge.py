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

Only Allure's own files are read (:func:`is_allure_file`): result, container
and attachment files and the environment/categories/executor files; anything
else in a directory (a stray file, a symlink, a subdirectory) is left where it
is, so ``merge OUT /etc`` cannot copy ``/etc/shadow`` into a report.  A
directory without a single ``*-result.json`` is refused before *out* is
created: it is not a runner's results.

Each results directory's runner is read from its results' ``runner`` label
(:data:`pytest_sev.reporting.runner_name.RUNNER_LABEL`), else the directory name.
"""

from __future__ import annotations

import json
import logging
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pytest_sev.reporting.runner_name import RUNNER_LABEL

log = logging.getLogger(__name__)

SPECIAL = ("environment.properties", "environment.xml", "categories.json", "executor.json")
#: what Allure names the files it writes per test: ``<uuid>-result.json``,
#: ``<uuid>-container.json``, ``<uuid>-attachment.<ext>``
RESULT_SUFFIX = "-result.json"
COPIED_SUFFIXES = (RESULT_SUFFIX, "-container.json")
ATTACHMENT_MARK = "-attachment"


def is_allure_file(path: Path) -> bool:
    """A regular file (not a symlink) whose name Allure writes: the only files
    a merge reads, so a wrong directory leaks nothing into the report."""
    name = path.name
    if path.is_symlink() or not path.is_file():
        return False
    return name in SPECIAL or name.endswith(COPIED_SUFFIXES) or ATTACHMENT_MARK in name


def copied_files(directory: Path) -> list[Path]:
    """The per-test files of one results directory (results, containers,
    attachments), sorted; the environment/categories files are merged instead."""
    return sorted(p for p in directory.iterdir() if p.name not in SPECIAL and is_allure_file(p))


def check_results_dir(directory: Path) -> list[Path]:
    """The files :func:`merge_results` copies from *directory*; ValueError (one
    line) when it is not a directory of Allure results."""
    if not directory.is_dir():
        raise ValueError(f"{directory}: no such results directory")
    try:
        files = copied_files(directory)
    except OSError as exc:
        raise ValueError(f"{directory}: cannot be listed ({exc.strerror})") from None
    if not any(p.name.endswith(RESULT_SUFFIX) for p in files):
        raise ValueError(f"{directory}: no Allure results in it (no *{RESULT_SUFFIX}): "
                         "not a runner's results directory")
    return files


@dataclass(frozen=True)
class MergedRun:
    runner: str
    results: int
    directory: Path


def runner_of(results_dir: Path) -> str:
    """The runner label the directory's results carry (the first found), else its name."""
    for path in sorted(results_dir.glob("*-result.json")):
        if not is_allure_file(path):
            continue
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


def parse_environment_xml(text: str) -> dict[str, str]:
    """Allure 2's ``environment.xml`` (``<environment><parameter><key/><value/>``)
    as a table; ValueError when it is not that XML."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise ValueError(f"environment.xml is not XML ({exc})") from None
    out: dict[str, str] = {}
    for param in root.iter("parameter"):
        key, value = param.findtext("key"), param.findtext("value")
        if key:
            out[key.strip()] = (value or "").strip()
    return out


def runner_environment(directory: Path) -> dict[str, str]:
    """One runner's environment: ``environment.xml`` entries, then
    ``environment.properties`` (which wins on a shared key)."""
    env: dict[str, str] = {}
    xml_file = directory / "environment.xml"
    if is_allure_file(xml_file):
        env.update(parse_environment_xml(xml_file.read_text()))
    props = directory / "environment.properties"
    if is_allure_file(props):
        env.update(parse_properties(props.read_text()))
    return env


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
    environment and categories; a runner name seen twice is an error.

    Every directory is checked (:func:`check_results_dir`) and every name
    clash found before *out* is created, so a refused merge leaves nothing."""
    plan: list[tuple[Path, str, list[Path]]] = []
    names: set[str] = set()
    for directory in directories:
        files = check_results_dir(directory)
        runner = runner_of(directory)
        if runner in (r for _, r, _ in plan):
            raise ValueError(f"two results directories from runner {runner!r}: set SEV_RUNNER per runner")
        for path in files:
            if path.name in names or (out / path.name).exists():
                raise ValueError(f"{path.name} exists in two runners' results: not Allure results files")
            names.add(path.name)
        plan.append((directory, runner, files))
    envs: dict[str, dict[str, str]] = {}
    cats: list[list[dict[str, object]]] = []
    for directory, runner, _ in plan:
        envs[runner] = runner_environment(directory)
        cat_file = directory / "categories.json"
        if is_allure_file(cat_file):
            try:
                loaded = json.loads(cat_file.read_text())
            except ValueError as exc:
                raise ValueError(f"{cat_file}: not JSON ({exc})") from None
            if not isinstance(loaded, list):
                raise ValueError(f"{cat_file}: not a list of Allure categories")
            cats.append([c for c in loaded if isinstance(c, dict)])
    out.mkdir(parents=True, exist_ok=True)
    runs: list[MergedRun] = []
    for directory, runner, files in plan:
        for path in files:
            shutil.copy2(path, out / path.name)
        skipped = sum(1 for p in directory.iterdir() if p.name not in SPECIAL and p not in files)
        if skipped:
            log.info("merge: %s: %d files that are not Allure results left out", directory, skipped)
        runs.append(MergedRun(runner, sum(p.name.endswith(RESULT_SUFFIX) for p in files), directory))
    env = merged_environment(envs)
    (out / "environment.properties").write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    (out / "categories.json").write_text(json.dumps(merged_categories(cats), indent=1))
    return runs


def read_junit(path: Path) -> list:
    """The test suites of one runner's JUnit XML; ValueError (one line) when
    the file is not JUnit XML, so a wrong ``--junit-in`` is refused up front."""
    from junitparser import JUnitXml, TestSuite

    try:
        xml = JUnitXml.fromfile(str(path))
    except OSError as exc:
        raise ValueError(f"{path}: cannot be read ({exc.strerror})") from None
    except Exception as exc:  # noqa: BLE001 - ParseError, JUnitXmlError (another root): not JUnit XML
        raise ValueError(f"{path}: not JUnit XML ({type(exc).__name__}: {exc})") from None
    return [xml] if isinstance(xml, TestSuite) else list(xml)


def merge_junit(out: Path, files: Sequence[tuple[str, Path]]) -> int:
    """One JUnit XML from ``(runner, file)`` pairs; returns the number of test cases."""
    from junitparser import JUnitXml

    merged = JUnitXml(name="pytest-sev")
    cases = 0
    for runner, path in files:
        for suite in read_junit(path):
            suite.name = f"{runner}: {suite.name}"
            cases += len(list(suite))
            merged.add_testsuite(suite)
    merged.update_statistics()
    out.parent.mkdir(parents=True, exist_ok=True)
    merged.write(str(out), pretty=True)
    return cases
