"""Static security checks that run with the suite: bandit over the application code, and the
dependency lock file (requirements.lock) that pip-audit audits.

mypy --strict for rules/ and expert_pool/matching.py is tests/test_typing.py.

pip-audit's vulnerability sources are PyPI's per-release JSON API
(``https://pypi.org/pypi/<name>/<version>/json``), OSV (``api.osv.dev``) and ecosyste.ms
(``advisories.ecosyste.ms``); the test machines reach none of them (the registry they reach
answers the per-release JSON with 404, so pip-audit reports "Dependency not found on PyPI and
could not be audited"; the other two hosts do not resolve), and pip-audit has no offline
database. So the suite checks what can be
checked here — the lock is complete, exact and what the tests run on, and pip-audit reads it
without resolving anything (its ``--dry-run``) — and the audit itself is the command in the
lock file's header, run where PyPI's JSON API or OSV is reachable.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from importlib import metadata

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import ROOT

LOCK = ROOT / "requirements.lock"
BANDIT_TARGETS = ["review", "rules", "expert_pool", "workers", "config.py"]
#: What `python -m venv` itself installs; `pip freeze` leaves them out of the lock.
BOOTSTRAP = {"pip", "setuptools", "wheel"}
PIP_AUDIT = [sys.executable, "-m", "pip_audit", "-r", str(LOCK), "--no-deps", "--disable-pip"]


def _locked() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in LOCK.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)", line)
        assert match, f"not an exact pin in requirements.lock: {line!r}"
        pins[canonicalize_name(match[1])] = match[2]
    return pins


@pytest.mark.timeout(300)
def test_bandit_reports_nothing() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bandit", "-c", "pyproject.toml", "-r", *BANDIT_TARGETS]
        + ["-f", "json", "-q"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=290,
    )
    report = json.loads(proc.stdout)
    issues = [
        f"{r['filename']}:{r['line_number']} {r['test_id']} {r['issue_text']}"
        for r in report["results"]
    ]
    assert issues == [] and report["errors"] == [], "\n".join(issues) + proc.stderr
    assert proc.returncode == 0
    scanned = report["metrics"]["_totals"]["loc"]
    assert scanned > 5000  # the targets were really read


def test_lock_pins_every_dependency_exactly_as_pyproject_does() -> None:
    locked = _locked()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared = [*project["dependencies"], *project["optional-dependencies"]["test"]]
    for spec in declared:
        req = Requirement(spec)
        name = canonicalize_name(req.name)
        assert name in locked, f"{req.name} is missing from requirements.lock"
        assert locked[name] in req.specifier, (spec, locked[name])
    # Closed under dependencies: pip-audit --no-deps audits exactly these, so nothing the
    # application installs may be missing.
    for name in locked:
        for spec in metadata.requires(name) or []:
            req = Requirement(spec)
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue
            if canonicalize_name(req.name) in BOOTSTRAP:
                continue
            assert canonicalize_name(req.name) in locked, f"{name} needs {req.name}: not locked"


def test_the_suite_runs_on_the_locked_versions() -> None:
    mismatched = {}
    for name, version in _locked().items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed = None
        if installed != version:
            mismatched[name] = (version, installed)
    assert mismatched == {}, "pip install -e '.[test]' again, or refresh the lock (its header)"


@pytest.mark.timeout(120)
def test_pip_audit_reads_the_lock_without_resolving() -> None:
    proc = subprocess.run(
        [*PIP_AUDIT, "--dry-run", "--progress-spinner", "off"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    match = re.search(r"would have audited (\d+) packages", proc.stdout + proc.stderr)
    assert match and int(match[1]) == len(_locked()), proc.stdout + proc.stderr


def _readme_commands() -> list[str]:
    """Every shell line of the README's ```sh blocks."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    return [
        line.strip()
        for block in re.findall(r"```sh\n(.*?)```", readme, re.S)
        for line in block.splitlines()
        if line.strip()
    ]


def test_every_documented_install_reads_the_lock() -> None:
    """A fresh machine gets the locked versions: no install command resolves on its own."""
    installs = [line for line in _readme_commands() if "pip install" in line]
    assert len(installs) >= 3, installs  # run, test, production
    for line in installs:
        assert "-c requirements.lock" in line, line
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "pip install" in ci
    for line in ci.splitlines():
        if "pip install" in line:
            assert "-c requirements.lock" in line, line


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Run the tests", 1)[1]
    command = re.search(r"```sh\n(.*?)\n```", section, re.S)[1].strip()
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert command in ci_lines


def test_the_lock_refresh_keeps_the_header_and_checks_pyproject() -> None:
    script = (ROOT / ".ci" / "lock").read_text(encoding="utf-8")
    assert "sed -n '/^#/p' requirements.lock" in script
    assert "pip\" freeze --exclude-editable" in script
    assert "lock_pins_every_dependency" in script
    assert "#   .ci/lock" in LOCK.read_text(encoding="utf-8")
