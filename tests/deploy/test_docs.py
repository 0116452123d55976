"""The docs document every setting, every TTSCluster field and every route the code has, each on the page where
it is told: settings on docs/settings.md, the TTSCluster's fields on docs/operator.md, routes on the API pages. (The
reference pages under docs/reference/ are generated from the code: tests/deploy/test_docs_site.py checks them.)"""

from __future__ import annotations

import pytest

from support.paths import CRD, ROOT
from tts_worker.settings import WorkerSettings

DOCS = ROOT / "docs"
README = (ROOT / "README.md").read_text(encoding="utf-8")
SETTINGS = (DOCS / "settings.md").read_text(encoding="utf-8")
OPERATOR = (DOCS / "operator.md").read_text(encoding="utf-8")
# The routes of the worker and of the router: api_v2's and each one's own, and OpenAI's speech API.
API = "\n".join((DOCS / "api" / name).read_text(encoding="utf-8") for name in ("api-v2.md", "router.md", "openai.md"))


@pytest.mark.unit
def test_readme_starts_with_the_two_commands():
    head = "\n".join(README.splitlines()[:6])
    assert "make demo" in head and "make test" in head


@pytest.mark.unit
def test_readme_is_a_front_page():
    """At most ~200 lines: what it is, the two commands, the architecture, and links into the docs."""
    assert len(README.splitlines()) <= 200
    assert "```mermaid" in README
    assert "](docs/" in README


@pytest.mark.unit
def test_every_setting_is_documented():
    for name in WorkerSettings.model_fields:
        if name == "gpt_sovits_config":
            continue
        assert f"`TTSC_{name.upper()}`" in SETTINGS, name
        assert f"--{name.replace('_', '-')}" in SETTINGS, name


@pytest.mark.unit
def test_every_router_setting_is_documented():
    from tts_router.settings import RouterSettings

    for name in RouterSettings.model_fields:
        assert f"`TTSC_ROUTER_{name.upper()}`" in SETTINGS, name
        assert f"--{name.replace('_', '-')}" in SETTINGS, name


@pytest.mark.unit
def test_every_operator_setting_and_crd_field_is_documented():

    import yaml

    from tts_operator.settings import OperatorSettings

    for name in OperatorSettings.model_fields:
        assert f"`TTSC_OPERATOR_{name.upper()}`" in SETTINGS, name
        assert f"--{name.replace('_', '-')}" in SETTINGS, name
    crd = yaml.safe_load(CRD.read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    for section, schema in spec.items():
        for field in schema.get("properties", {}) or {section: None}:
            name = f"{section}.{field}" if "properties" in schema else section
            assert f"`{name}`" in OPERATOR, name


@pytest.mark.process
def test_every_route_is_documented(piper_worker):
    import httpx

    spec = httpx.get(f"{piper_worker.url}/openapi.json").json()
    for path in spec["paths"]:
        assert f"`GET {path}" in API or f"`{path}`" in API or f"GET {path}" in API, path


@pytest.mark.unit
def test_every_router_route_is_documented():
    from tts_router.app import create_app
    from tts_router.settings import RouterSettings

    spec = create_app(RouterSettings(worker=["http://127.0.0.1:1"])).openapi()
    for path in spec["paths"]:
        assert f"`GET {path}" in API or f"`{path}`" in API or f"GET {path}" in API or f"`{path}" in API, path
