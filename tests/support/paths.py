"""Where the repository's sources are, found from this file, wherever a test module sits."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "tts-cluster"
# The one source of each: the chart carries them, manifests/ is rendered from the chart.
CRD = CHART / "crds" / "ttsclusters.tts-cluster.io.yaml"
OPERATOR_RULES = CHART / "files" / "operator-rules.yaml"
DASHBOARDS = CHART / "dashboards"
MANIFESTS = ROOT / "manifests"
# The project's shared contract notes and schemas, beside the repository (../shared) when present.
SHARED_DOCS = ROOT.parent / "shared" / "docs"
