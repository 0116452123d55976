"""The built wheel is the project without its checkout (the images install it; so does `pip install`): it holds
every file the packages keep beside their code, and what reads one works from an install alone."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from support.paths import ROOT

pytestmark = pytest.mark.process

# Kept beside the code but not part of the packages: benchmark results (written by the benchmarks) and notes.
NOT_PACKAGED = ("bench/results/", "operator/README.md")


def tracked_files() -> list[str]:
    """The checkout's files (tracked, or new and not ignored) that are there now."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--deduplicate"],
                            cwd=ROOT, check=True, capture_output=True, text=True).stdout.split("\0")
    return [name for name in listed if name and (ROOT / name).is_file()]


def build_wheel(out: Path) -> Path:
    """Built from a copy of the checkout's files: setuptools builds in the tree and keeps what build/ holds from
    earlier builds, which would hide a file left out now."""
    source = out / "source"
    for name in tracked_files():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, source / name)
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                            "-q", "-w", str(out), str(source)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = out.glob("tts_cluster-*.whl")
    return wheel


@pytest.mark.skipif(not (ROOT / ".git").exists(), reason="no .git: the checkout's file list comes from git")
def test_the_wheel_holds_every_data_file_of_the_packages_and_an_install_reads_them(tmp_path):
    folders = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    data = [f for f in tracked_files() if f.startswith(tuple(f"{d}/" for d in folders.values()))
            and not f.endswith(".py") and not f.startswith(NOT_PACKAGED)]
    assert "bench/harvard.txt" in data  # the benchmarks' texts: what a wheel without it broke

    wheel = build_wheel(tmp_path / "dist")
    names = set(zipfile.ZipFile(wheel).namelist())
    for path in data:
        folder = max((f for f in folders.values() if path.startswith(f + "/")), key=len)
        package = next(name for name, f in folders.items() if f == folder)
        inside = f"{package.replace('.', '/')}/{path[len(folder) + 1:]}"
        assert inside in names, f"{path} is not in the wheel (as {inside}): add it to package-data"

    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target", str(site),
                    str(wheel)], check=True, capture_output=True, timeout=300)
    code = (f"import tts_bench.corpus as c; assert c.__file__.startswith({str(site)!r}), c.__file__; "
            "print(len(c.mixed_texts(8, seed=1)))")
    # -S: no site-packages, so neither the checkout's editable install nor anything else can stand in for the wheel
    done = subprocess.run([sys.executable, "-S", "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(site)})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "8"
