"""requirements.lock: every range in pyproject.toml is met by its pin, and what make installed is what it pins."""

from __future__ import annotations

import importlib.metadata as metadata
import re
import tomllib

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from support.paths import ROOT

pytestmark = pytest.mark.unit

LOCK = ROOT / "requirements.lock"


def locked() -> dict[str, list[tuple[Version, Marker | None]]]:
    """Each locked package's pins: one per marker where the universal resolution differs by platform."""
    pins: dict[str, list[tuple[Version, Marker | None]]] = {}
    for line in LOCK.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        req = Requirement(line)
        (spec,) = req.specifier  # exactly one clause, ==
        assert spec.operator == "==", line
        pins.setdefault(canonicalize_name(req.name), []).append((Version(spec.version), req.marker))
    return pins


def project_requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(r) for r in project["dependencies"]] + [
        Requirement(r) for extra in project["optional-dependencies"].values() for r in extra]


def test_every_pin_satisfies_pyproject():
    pins = locked()
    for req in project_requirements():
        versions = pins.get(canonicalize_name(req.name))
        assert versions, f"{req.name} is in pyproject.toml but not in requirements.lock: run `make lock`"
        for version, _ in versions:
            assert req.specifier.contains(version, prereleases=True), (
                f"requirements.lock pins {req.name}=={version}, outside pyproject.toml's {req.specifier}: "
                "run `make lock`")


def test_the_environment_is_the_lock():
    """make installs with `-c requirements.lock`: every locked package installed here has its locked version."""
    for name, versions in locked().items():
        applicable = [v for v, marker in versions if marker is None or marker.evaluate()]
        if not applicable:
            continue
        try:
            installed = Version(metadata.version(name))
        except metadata.PackageNotFoundError:
            continue  # an extra make did not install (a platform's package, say)
        # torch's local build label (+cpu, +cu128) names the wheel's build, not another release
        assert installed.public in {str(v) for v in applicable}, f"{name} {installed} installed, lock pins {applicable}"


def test_torch_pin_is_the_one_make_and_the_images_install():
    torch = [v for v, _ in locked()["torch"]]
    makefile = re.search(r"^TORCH_VERSION \?= (\S+)$", (ROOT / "Makefile").read_text(), re.M)
    worker = re.search(r"^ARG TORCH_SPEC=torch==(\S+)$", (ROOT / "Dockerfile.worker").read_text(), re.M)
    assert makefile and worker
    assert torch == [Version(makefile.group(1))] == [Version(worker.group(1))]
