"""The operator tests' one cluster: the API emulator with the TTSCluster CRD, and a real kopf operator against it,
authenticated as the chart's operator ServiceAccount under the chart's RBAC."""

from __future__ import annotations

from collections.abc import Iterator

import kubernetes
import pytest
from kubernetes.client import ApiClient

from support.kube_emulator import TTSCLUSTER, KubeAPI
from support.operator_cluster import EXTRA, Cluster


@pytest.fixture
def cluster(tmp_path) -> Iterator[Cluster]:
    with KubeAPI(resources=[TTSCLUSTER, *EXTRA]) as kube:
        c = Cluster(kube, tmp_path)
        c.start_operator()
        try:
            yield c
        finally:
            c.stop_operator()
        # The operator runs as the chart's ServiceAccount: a permission the chart lacks is a 403, whatever the
        # operator did with it (some paths log and go on).
        assert kube.refusals() == []


@pytest.fixture
def kube() -> Iterator[KubeAPI]:
    """A bare API server (no custom resources) for one test: it starts in milliseconds."""
    with KubeAPI() as api:
        yield api


@pytest.fixture
def client(kube: KubeAPI) -> Iterator[ApiClient]:
    """The real client, configured only from the server's admin kubeconfig into a private Configuration."""
    config = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(config_file=str(kube.kubeconfig_path), client_configuration=config)
    with ApiClient(config) as api_client:
        yield api_client
