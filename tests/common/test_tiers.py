"""The tier markers are held to their word: a unit test that starts a process or connects a socket fails, and a test
with no tier (or two) stops the run at collection (tests/support/tiers.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from support.paths import ROOT

pytestmark = pytest.mark.process  # it runs pytest itself, in a process

CASES = '''
import socket
import subprocess

import pytest


@pytest.mark.unit
def test_spawns():
    subprocess.run(["true"], check=True)


@pytest.mark.unit
def test_connects():
    with socket.socket() as s:
        s.connect(("127.0.0.1", 9))


@pytest.mark.unit
def test_stays_inside():
    assert sum(range(4)) == 6


@pytest.mark.process
def test_spawns_in_the_process_tier():
    subprocess.run(["true"], check=True)
'''


def run_pytest(tmp_path: Path, text: str, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_cases.py").write_text(text)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests")}
    env.pop("TTSC_TIER_PROBE", None)
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "support.tiers", "-q", "-p", "no:cacheprovider",
                           "--rootdir", str(tmp_path), str(tmp_path), *args],
                          capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)


def test_a_unit_test_that_leaves_the_process_fails(tmp_path: Path) -> None:
    proc = run_pytest(tmp_path, CASES)
    assert "2 failed, 2 passed" in proc.stdout, proc.stdout[-3000:]
    assert proc.stdout.count("UnitTierViolation") >= 2
    assert "FAILED test_cases.py::test_spawns" in proc.stdout and "FAILED test_cases.py::test_connects" in proc.stdout


def test_a_test_without_exactly_one_tier_stops_the_run(tmp_path: Path) -> None:
    proc = run_pytest(tmp_path, "import pytest\n\n\ndef test_untiered():\n    pass\n\n\n"
                                "@pytest.mark.unit\n@pytest.mark.process\ndef test_two():\n    pass\n")
    assert proc.returncode != 0
    assert "every test needs exactly one tier marker" in proc.stderr + proc.stdout
    assert "test_untiered: none" in proc.stderr + proc.stdout and "test_two: ['unit', 'process']" in proc.stderr + proc.stdout
