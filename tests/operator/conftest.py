"""The operator tests' one cluster: the API emulator with the TTSCluster CRD, and a real kopf operator against it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

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
