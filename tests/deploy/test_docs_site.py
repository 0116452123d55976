"""The docs site builds strictly, and its generated reference pages are what the code makes now."""

from __future__ import annotations

import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from support.paths import ROOT

GENERATOR = ROOT / "docs" / "gen_reference.py"


def _generator() -> dict:
    return runpy.run_path(str(GENERATOR), run_name="gen_reference")


@pytest.mark.unit
def test_reference_pages_equal_what_the_code_generates():
    """HTTP (OpenAPI), CLI (argparse), metrics (Prometheus registries), TTSCluster (the CRD): one source each."""
    assert _generator()["main"](["--check"]) == 0, "run `make docs-reference` and commit the result"


@pytest.mark.unit
def test_every_generated_page_is_in_the_nav():
    class Loader(yaml.SafeLoader):
        """mkdocs.yml names a Python function (!!python/name:...) for the mermaid fence: read it as a name only."""

    Loader.add_multi_constructor("tag:yaml.org,2002:python/", lambda loader, suffix, node: suffix)
    config = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=Loader)

    def pages(nav: object) -> list[str]:
        if isinstance(nav, str):
            return [nav]
        if isinstance(nav, list):
            return [p for item in nav for p in pages(item)]
        if isinstance(nav, dict):
            return [p for value in nav.values() for p in pages(value)]
        return []

    in_nav = set(pages(config["nav"]))
    for path in _generator()["PAGES"]:
        assert Path(path).relative_to(ROOT / "docs").as_posix() in in_nav, path


@pytest.mark.process
def test_the_site_builds_strictly(tmp_path: Path):
    """`mkdocs build --strict`: a broken link or anchor, a page left out of the nav, or a README link outside docs/
    fails the build (mkdocs.yml's validation turns each into a warning, and --strict makes warnings errors)."""
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    site = tmp_path / "site"
    # The home page is the README; the benchmark plots come from bench/results/.
    assert "make demo" in (site / "index.html").read_text(encoding="utf-8")
    assert (site / "bench" / "results" / "cluster-load.png").is_file()
    for page in ("reference/http", "reference/cli", "reference/metrics", "reference/ttscluster", "settings"):
        assert (site / page / "index.html").is_file(), page
