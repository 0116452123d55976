"""The README documents every setting and every route the code has."""

from __future__ import annotations

import pytest

from support.paths import CRD, ROOT
from tts_worker.settings import WorkerSettings

README = (ROOT / "README.md").read_text(encoding="utf-8")


@pytest.mark.unit
def test_readme_starts_with_the_two_commands():
    head = "\n".join(README.splitlines()[:6])
    assert "make demo" in head and "make test" in head


@pytest.mark.unit
def test_every_setting_is_documented():
    for name in WorkerSettings.model_fields:
        if name == "gpt_sovits_config":
            continue
        assert f"`TTSC_{name.upper()}`" in README, name
        assert f"--{name.replace('_', '-')}" in README, name


@pytest.mark.unit
def test_every_router_setting_is_documented():
    from tts_router.settings import RouterSettings

    for name in RouterSettings.model_fields:
        assert f"`TTSC_ROUTER_{name.upper()}`" in README, name
        assert f"--{name.replace('_', '-')}" in README, name


@pytest.mark.unit
def test_every_operator_setting_and_crd_field_is_documented():

    import yaml

    from tts_operator.settings import OperatorSettings

    for name in OperatorSettings.model_fields:
        assert f"`TTSC_OPERATOR_{name.upper()}`" in README, name
        assert f"--{name.replace('_', '-')}" in README, name
    crd = yaml.safe_load(CRD.read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    for section, schema in spec.items():
        for field in schema.get("properties", {}) or {section: None}:
            name = f"{section}.{field}" if "properties" in schema else section
            assert f"`{name}`" in README, name


@pytest.mark.process
def test_every_route_is_documented(piper_worker):
    import httpx

    spec = httpx.get(f"{piper_worker.url}/openapi.json").json()
    for path in spec["paths"]:
        assert f"`GET {path}" in README or f"`{path}`" in README or f"GET {path}" in README, path


@pytest.mark.unit
def test_every_router_route_is_documented():
    from tts_router.app import create_app
    from tts_router.settings import RouterSettings

    spec = create_app(RouterSettings(worker=["http://127.0.0.1:1"])).openapi()
    for path in spec["paths"]:
        assert f"`GET {path}" in README or f"`{path}`" in README or f"GET {path}" in README or f"`{path}" in README, path
