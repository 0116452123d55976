"""Run the operator: `tts-cluster operator`."""

from __future__ import annotations

import logging
import random
from typing import Any

import kopf

from tts_common.logs import configure_logging, log_fields

from .handlers import register
from .kube import Kube, client_for
from .reconcile import Reconciler
from .settings import OperatorSettings

log = logging.getLogger("tts_operator")


def run(ours: OperatorSettings) -> int:
    configure_logging(ours.log_level, json_lines=True)
    if ours.kubeconfig:
        import os

        os.environ["KUBECONFIG"] = str(ours.kubeconfig)  # kopf's own login reads it too
    reconciler = Reconciler(ours, Kube(client_for(str(ours.kubeconfig) if ours.kubeconfig else None)))
    registry = kopf.OperatorRegistry()
    register(registry, reconciler)

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.persistence.finalizer = "tts-cluster.io/finalizer"
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="tts-cluster.io")
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="tts-cluster.io")
        settings.posting.level = logging.INFO
        settings.watching.server_timeout = 60
        # No dynamic scanning: kopf would list and watch namespaces and CustomResourceDefinitions at cluster scope
        # to follow namespace patterns and CRDs that appear later, which the chart's least-privilege RBAC does not
        # grant (403s, then about a minute of retries at start-up). The operator serves named namespaces (or all of
        # them) and the TTSCluster CRD, which the chart installs before the operator starts.
        settings.scanning.disabled = True

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> Any:
        # The same credentials as the operator's own API client: the given kubeconfig, else in-cluster.
        if ours.kubeconfig:
            return kopf.login_with_kubeconfig(**kwargs)
        return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)

    log_fields(log, "starting operator", namespaces=ours.namespace, all_namespaces=ours.all_namespaces,
               peering=ours.peering, interval=ours.interval)
    kopf.run(
        registry=registry,
        clusterwide=ours.all_namespaces,
        namespaces=ours.namespace if not ours.all_namespaces else (),
        standalone=ours.peering is None,
        peering_name=ours.peering,
        priority=ours.priority if ours.priority is not None else random.randint(1, 1_000_000),
        liveness_endpoint=ours.liveness,
    )
    return 0
