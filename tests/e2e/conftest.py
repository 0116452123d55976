"""The end-to-end suite's backend: the cluster E2E_KUBECONFIG names, or the API-server emulator with its
controllers (docs/e2e.md)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.e2e_backend import Backend
from support.kube_emulator import KubeAPI


@pytest.fixture
def backend() -> Iterator[Backend]:
    """A fresh namespace on the backend, deleted afterwards."""
    given = os.environ.get("E2E_KUBECONFIG")
    if given:
        b = Backend(Path(given), f"tts-e2e-{uuid.uuid4().hex[:6]}", real=True)
        b.core.create_namespace({"metadata": {"name": b.namespace}})
        try:
            yield b
        finally:
            b.core.delete_namespace(b.namespace)
        return
    with KubeAPI(controllers=True) as kube:
        b = Backend(kube.kubeconfig_path, "tts-e2e", real=False)
        b.core.create_namespace({"metadata": {"name": b.namespace}})
        yield b
