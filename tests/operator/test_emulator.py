"""The Kubernetes API emulator, spoken to by the real ``kubernetes`` client over HTTP on 127.0.0.1."""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable, Iterator
from typing import Any

import kubernetes
import pytest
from kubernetes.client import (
    ApiClient,
    CoreV1Api,
    CustomObjectsApi,
    DiscoveryV1Api,
    DiscoveryV1EndpointPort,
    V1Container,
    V1Endpoint,
    V1EndpointConditions,
    V1EndpointSlice,
    V1ObjectMeta,
    V1ObjectReference,
    V1Pod,
    V1PodSpec,
)
from kubernetes.client.rest import ApiException

from support.kube_emulator import KubeAPI, Resource

pytestmark = pytest.mark.kube

NS = "default"
# A custom resource whose schema keeps any field (x-kubernetes-preserve-unknown-fields), with the TTSCluster's
# subresources: the emulator's generic rules for custom resources, apart from any schema's pruning and defaults
# (tests/operator/test_kube_admission.py checks those with the chart's CRD).
WIDGET = Resource.from_crd({
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.com"},
    "spec": {"group": "example.com", "scope": "Namespaced",
             "names": {"kind": "Widget", "plural": "widgets", "singular": "widget", "shortNames": ["wd"]},
             "versions": [{"name": "v1", "served": True, "storage": True,
                           "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.workers.replicas",
                                                                    "statusReplicasPath": ".status.workers",
                                                                    "labelSelectorPath": ".status.selector"}},
                           "schema": {"openAPIV3Schema": {"type": "object",
                                                          "x-kubernetes-preserve-unknown-fields": True}}}]},
})
SERVICE_LABEL = "kubernetes.io/service-name"
SELECTOR = f"{SERVICE_LABEL}=tts-workers"
WAIT = 5  # seconds: the bound on every wait in this file


@pytest.fixture
def pool() -> Iterator[concurrent.futures.ThreadPoolExecutor]:
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as executor:
        yield executor


def endpoint_slice(name: str, service: str = "tts-workers", *, ready: bool = True) -> V1EndpointSlice:
    return V1EndpointSlice(
        metadata=V1ObjectMeta(name=name, labels={SERVICE_LABEL: service}),
        address_type="IPv4",
        endpoints=[
            V1Endpoint(
                addresses=["127.0.0.1"],
                conditions=V1EndpointConditions(ready=ready),
                target_ref=V1ObjectReference(kind="Pod", name=f"{name}-pod"),
            )
        ],
        ports=[DiscoveryV1EndpointPort(name="http", port=12345, protocol="TCP")],
    )


def pod(name: str, **labels: str) -> V1Pod:
    return V1Pod(
        metadata=V1ObjectMeta(name=name, labels=labels),
        spec=V1PodSpec(containers=[V1Container(name="worker", image="tts-worker:test")]),
    )


def watch(
    func: Callable[..., Any], *args: Any, until: Callable[[list[tuple[str, dict]]], bool], **kwargs: Any
) -> list[tuple[str, dict]]:
    """Stream a real client watch until ``until(events)`` holds or the server's 5 s timeout ends it."""
    events: list[tuple[str, dict]] = []
    stream = kubernetes.watch.Watch()
    for event in stream.stream(func, *args, timeout_seconds=WAIT, _request_timeout=2 * WAIT, **kwargs):
        events.append((event["type"], event["raw_object"]))
        if until(events):
            stream.stop()
            break
    return events


def names(events: list[tuple[str, dict]]) -> list[tuple[str, str]]:
    return [(kind, obj["metadata"]["name"]) for kind, obj in events]


# --- discovery & kubeconfig -----------------------------------------------------------------------


def test_kubeconfig_and_discovery(kube: KubeAPI, client: ApiClient) -> None:
    assert client.configuration.host == kube.url
    groups = {
        g.name: g.preferred_version.group_version
        for g in kubernetes.client.ApisApi(client).get_api_versions().groups
    }
    assert groups["discovery.k8s.io"] == "discovery.k8s.io/v1" and groups["apps"] == "apps/v1"
    core = {r.name: r for r in CoreV1Api(client).get_api_resources().resources}
    assert {"pods", "pods/status", "services", "configmaps", "namespaces", "events"} <= set(core)
    assert core["pods"].kind == "Pod" and core["pods"].namespaced and not core["namespaces"].namespaced
    slices = {r.name for r in DiscoveryV1Api(client).get_api_resources().resources}
    assert slices == {"endpointslices"}
    # The trailing-slash spelling of the group list, as some clients ask for it.
    body = client.call_api("GET", kube.url + "/apis/", header_params=kube.admin_headers).read()
    assert b"APIGroupList" in body and b"discovery.k8s.io" in body


def test_namespaces(client: ApiClient) -> None:
    core = CoreV1Api(client)
    assert [ns.metadata.name for ns in core.list_namespace().items] == ["default"]
    core.create_namespace(kubernetes.client.V1Namespace(metadata=V1ObjectMeta(name="tts")))
    tts = core.read_namespace("tts")
    assert tts.status.phase == "Active" and tts.metadata.labels == {"kubernetes.io/metadata.name": "tts"}
    assert [
        ns.metadata.name for ns in core.list_namespace(label_selector="kubernetes.io/metadata.name=tts").items
    ] == ["tts"]


# --- (a) EndpointSlice CRUD ------------------------------------------------------------------------


def test_endpoint_slice_crud(client: ApiClient) -> None:
    api = DiscoveryV1Api(client)
    created, status, _ = api.create_namespaced_endpoint_slice_with_http_info(
        NS, endpoint_slice("tts-workers-a")
    )
    assert status == 201
    meta = created.metadata
    assert meta.uid and meta.creation_timestamp and meta.generation == 1 and int(meta.resource_version) > 0
    assert created.kind == "EndpointSlice" and created.api_version == "discovery.k8s.io/v1"
    api.create_namespaced_endpoint_slice(NS, endpoint_slice("other-a", service="other"))
    generated = api.create_namespaced_endpoint_slice(
        NS,
        endpoint_slice("", service="tts-workers").model_copy(
            update={
                "metadata": V1ObjectMeta(generate_name="tts-workers-", labels={SERVICE_LABEL: "tts-workers"})
            }
        ),
    )
    assert (
        generated.metadata.name.startswith("tts-workers-")
        and len(generated.metadata.name) == len("tts-workers-") + 5
    )

    with pytest.raises(ApiException) as exc:
        api.create_namespaced_endpoint_slice(NS, endpoint_slice("tts-workers-a"))
    assert exc.value.status == 409

    got = api.read_namespaced_endpoint_slice("tts-workers-a", NS)
    assert got.metadata.uid == meta.uid and got.endpoints[0].target_ref.name == "tts-workers-a-pod"
    assert got.ports[0].port == 12345 and got.endpoints[0].conditions.ready is True

    listed = api.list_namespaced_endpoint_slice(NS, label_selector=SELECTOR)
    assert listed.kind == "EndpointSliceList" and int(listed.metadata.resource_version) >= int(
        generated.metadata.resource_version
    )
    assert sorted(s.metadata.name for s in listed.items) == sorted(["tts-workers-a", generated.metadata.name])
    assert [
        s.metadata.name
        for s in api.list_namespaced_endpoint_slice(NS, label_selector=f"{SERVICE_LABEL} in (other)").items
    ] == ["other-a"]
    assert (
        len(api.list_namespaced_endpoint_slice(NS, label_selector=f"{SERVICE_LABEL}!=tts-workers").items) == 1
    )
    assert len(api.list_endpoint_slice_for_all_namespaces(label_selector=SELECTOR).items) == 2

    # A dict body goes as a strategic merge patch: a spec change bumps generation and resourceVersion.
    patched = api.patch_namespaced_endpoint_slice(
        "tts-workers-a",
        NS,
        {
            "endpoints": [
                {
                    "addresses": ["127.0.0.1"],
                    "conditions": {"ready": False},
                    "targetRef": {"kind": "Pod", "name": "tts-workers-a-pod"},
                }
            ]
        },
    )
    assert patched.endpoints[0].conditions.ready is False and patched.metadata.generation == 2
    assert int(patched.metadata.resource_version) > int(got.metadata.resource_version)
    relabelled = api.patch_namespaced_endpoint_slice(
        "tts-workers-a", NS, {"metadata": {"annotations": {"a": "b"}}}
    )
    assert (
        relabelled.metadata.generation == 2
        and relabelled.metadata.resource_version != patched.metadata.resource_version
    )
    same = api.patch_namespaced_endpoint_slice("tts-workers-a", NS, {"metadata": {"annotations": {"a": "b"}}})
    assert same.metadata.resource_version == relabelled.metadata.resource_version  # a no-op writes nothing

    # JSON patch: a failing "test" is 422 and changes nothing; a passing one applies.
    with pytest.raises(ApiException) as exc:
        api.patch_namespaced_endpoint_slice(
            "tts-workers-a",
            NS,
            [
                {"op": "test", "path": "/endpoints/0/conditions/ready", "value": True},
                {"op": "replace", "path": "/ports/0/port", "value": 1},
            ],
        )
    assert exc.value.status == 422
    assert api.read_namespaced_endpoint_slice("tts-workers-a", NS).ports[0].port == 12345
    ok = api.patch_namespaced_endpoint_slice(
        "tts-workers-a",
        NS,
        [
            {"op": "test", "path": "/endpoints/0/conditions/ready", "value": False},
            {"op": "replace", "path": "/ports/0/port", "value": 12346},
        ],
    )
    assert ok.ports[0].port == 12346

    # PUT with a stale resourceVersion is a conflict.
    with pytest.raises(ApiException) as exc:
        api.replace_namespaced_endpoint_slice("tts-workers-a", NS, got)
    assert exc.value.status == 409

    api.delete_namespaced_endpoint_slice("tts-workers-a", NS)
    with pytest.raises(ApiException) as exc:
        api.read_namespaced_endpoint_slice("tts-workers-a", NS)
    assert exc.value.status == 404
    assert [
        s.metadata.name for s in api.list_namespaced_endpoint_slice(NS, label_selector=SELECTOR).items
    ] == [generated.metadata.name]


# --- (b) watches ---------------------------------------------------------------------------------


def test_watch_sees_changes_from_another_thread(
    kube: KubeAPI, client: ApiClient, pool: concurrent.futures.Executor
) -> None:
    api = DiscoveryV1Api(client)
    api.create_namespaced_endpoint_slice(NS, endpoint_slice("tts-workers-old"))
    api.create_namespaced_endpoint_slice(NS, endpoint_slice("other-old", service="other"))

    def writer() -> None:
        kube.wait_watching(1, timeout=WAIT)  # mutate only once the watch below is open
        api.create_namespaced_endpoint_slice(NS, endpoint_slice("tts-workers-new"))
        api.create_namespaced_endpoint_slice(NS, endpoint_slice("other-new", service="other"))  # filtered out
        api.patch_namespaced_endpoint_slice("tts-workers-new", NS, {"metadata": {"annotations": {"x": "1"}}})
        api.delete_namespaced_endpoint_slice("tts-workers-new", NS)

    done = pool.submit(writer)
    # No resourceVersion: the current matching state as ADDED first, then the changes as they happen.
    events = watch(
        api.list_namespaced_endpoint_slice,
        NS,
        label_selector=SELECTOR,
        until=lambda evs: evs[-1][0] == "DELETED",
    )
    done.result(timeout=WAIT)
    assert names(events) == [
        ("ADDED", "tts-workers-old"),
        ("ADDED", "tts-workers-new"),
        ("MODIFIED", "tts-workers-new"),
        ("DELETED", "tts-workers-new"),
    ]
    assert events[2][1]["metadata"]["annotations"] == {"x": "1"}
    rvs = [int(obj["metadata"]["resourceVersion"]) for _, obj in events[1:]]
    assert rvs == sorted(rvs) and len(set(rvs)) == 3  # the deletion has its own resourceVersion


def test_watch_from_list_resource_version(
    kube: KubeAPI, client: ApiClient, pool: concurrent.futures.Executor
) -> None:
    api = DiscoveryV1Api(client)
    api.create_namespaced_endpoint_slice(NS, endpoint_slice("tts-workers-1"))
    listed = api.list_namespaced_endpoint_slice(NS, label_selector=SELECTOR)
    assert [s.metadata.name for s in listed.items] == ["tts-workers-1"]
    # A change between the list and the watch is not lost: the watch resumes right after the list.
    api.create_namespaced_endpoint_slice(NS, endpoint_slice("tts-workers-2"))

    def writer() -> None:
        kube.wait_watching(1, timeout=WAIT)
        api.patch_namespaced_endpoint_slice("tts-workers-1", NS, {"metadata": {"annotations": {"y": "2"}}})

    done = pool.submit(writer)
    events = watch(
        api.list_namespaced_endpoint_slice,
        NS,
        label_selector=SELECTOR,
        resource_version=listed.metadata.resource_version,
        until=lambda evs: len(evs) == 2,
    )
    done.result(timeout=WAIT)
    # Exactly what happened after the list: no replay of "tts-workers-1" as ADDED.
    assert names(events) == [("ADDED", "tts-workers-2"), ("MODIFIED", "tts-workers-1")]

    # Resuming from a version older than the retained history is 410 Gone (the client must re-list).
    kube.call(lambda: kube.emulator.compact())
    with pytest.raises(ApiException) as exc:
        watch(
            api.list_namespaced_endpoint_slice,
            NS,
            resource_version=listed.metadata.resource_version,
            until=lambda evs: True,
        )
    assert exc.value.status == 410


def test_watch_ends_at_timeout_seconds(client: ApiClient) -> None:
    started = time.monotonic()
    events = list(
        kubernetes.watch.Watch().stream(
            DiscoveryV1Api(client).list_namespaced_endpoint_slice,
            NS,
            label_selector=SELECTOR,
            timeout_seconds=1,
            _request_timeout=WAIT,
        )
    )
    assert events == [] and 0.9 < time.monotonic() - started < 3


# --- (c) pods, labels and status ------------------------------------------------------------------


def test_pods_create_list_and_status(client: ApiClient) -> None:
    core = CoreV1Api(client)
    created = core.create_namespaced_pod(NS, pod("worker-0", app="tts-worker"))
    core.create_namespaced_pod(NS, pod("router-0", app="tts-router"))
    assert created.status.phase == "Pending" and created.metadata.namespace == NS
    assert [p.metadata.name for p in core.list_namespaced_pod(NS, label_selector="app=tts-worker").items] == [
        "worker-0"
    ]
    assert [p.metadata.name for p in core.list_namespaced_pod(NS, label_selector="app").items] == [
        "router-0",
        "worker-0",
    ]
    assert [
        p.metadata.name for p in core.list_namespaced_pod(NS, field_selector="metadata.name=router-0").items
    ] == ["router-0"]
    # Status has its own subresource: the main resource ignores it, /status changes only it.
    core.patch_namespaced_pod("worker-0", NS, {"status": {"phase": "Running"}})
    assert core.read_namespaced_pod("worker-0", NS).status.phase == "Pending"
    running = core.patch_namespaced_pod_status(
        "worker-0", NS, {"status": {"phase": "Running", "podIP": "127.0.0.1"}}
    )
    assert running.status.phase == "Running" and running.status.pod_ip == "127.0.0.1"
    assert running.metadata.generation == created.metadata.generation


def test_pod_label_changes_through_a_filtered_watch(
    kube: KubeAPI, client: ApiClient, pool: concurrent.futures.Executor
) -> None:
    core = CoreV1Api(client)
    core.create_namespaced_pod(NS, pod("worker-a", app="tts-worker", pool="cpu"))
    core.create_namespaced_pod(NS, pod("worker-b", app="tts-worker", pool="gpu"))
    listed = core.list_namespaced_pod(NS, label_selector="app=tts-worker,pool=gpu")
    assert [p.metadata.name for p in listed.items] == ["worker-b"]

    def writer() -> None:
        kube.wait_watching(1, timeout=WAIT)
        core.patch_namespaced_pod(
            "worker-a", NS, {"metadata": {"labels": {"pool": "gpu"}}}
        )  # starts matching
        core.patch_namespaced_pod_status("worker-a", NS, {"status": {"podIP": "127.0.0.2"}})  # still matching
        core.patch_namespaced_pod("worker-b", NS, {"metadata": {"labels": {"pool": None}}})  # stops matching
        core.delete_namespaced_pod("worker-b", NS)  # no longer seen by this watch

    done = pool.submit(writer)
    events = watch(
        core.list_namespaced_pod,
        NS,
        label_selector="app=tts-worker,pool=gpu",
        resource_version=listed.metadata.resource_version,
        until=lambda evs: len(evs) == 3,
    )
    done.result(timeout=WAIT)
    # Label transitions follow the watch cache: entering the selector is ADDED, leaving it is DELETED.
    assert names(events) == [("ADDED", "worker-a"), ("MODIFIED", "worker-a"), ("DELETED", "worker-b")]
    assert events[1][1]["status"]["podIP"] == "127.0.0.2"
    assert events[2][1]["metadata"]["labels"]["pool"] == "gpu"  # the last state that matched
    assert [p.metadata.name for p in core.list_namespaced_pod(NS).items] == ["worker-a"]


# --- custom resources ------------------------------------------------------------------------------


def test_custom_resource_and_finalizers(kube: KubeAPI, client: ApiClient) -> None:
    kube.register(WIDGET)
    crs = CustomObjectsApi(client)
    g, v, p = WIDGET.group, WIDGET.version, WIDGET.plural
    resources = {r.name: r for r in crs.get_api_resources(g, v).resources}
    assert resources["widgets"].kind == "Widget" and "widgets/status" in resources
    body = {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "main", "finalizers": ["tts-cluster.io/cleanup"]},
        "spec": {"replicas": 2},
    }
    created = crs.create_namespaced_custom_object(g, v, NS, p, body)
    assert created["metadata"]["generation"] == 1
    patched = crs.patch_namespaced_custom_object(
        g, v, NS, p, "main", {"spec": {"replicas": 3}}
    )  # merge patch
    assert patched["spec"] == {"replicas": 3} and patched["metadata"]["generation"] == 2
    status = crs.patch_namespaced_custom_object_status(g, v, NS, p, "main", {"status": {"ready": 3}})
    assert status["status"] == {"ready": 3} and status["metadata"]["generation"] == 2
    with pytest.raises(ApiException) as exc:  # custom resources refuse strategic merge patches
        crs.patch_namespaced_custom_object(
            g,
            v,
            NS,
            p,
            "main",
            {"spec": {"replicas": 4}},
            _content_type="application/strategic-merge-patch+json",
        )
    assert exc.value.status == 415
    # Finalizers hold the deletion until the last one is removed.
    crs.delete_namespaced_custom_object(g, v, NS, p, "main")
    held = crs.get_namespaced_custom_object(g, v, NS, p, "main")
    assert held["metadata"]["deletionTimestamp"]
    crs.patch_namespaced_custom_object(g, v, NS, p, "main", {"metadata": {"finalizers": None}})
    with pytest.raises(ApiException) as exc:
        crs.get_namespaced_custom_object(g, v, NS, p, "main")
    assert exc.value.status == 404


def test_custom_resource_scale_subresource(
    kube: KubeAPI, client: ApiClient, pool: concurrent.futures.Executor
) -> None:
    kube.register(WIDGET)
    crs = CustomObjectsApi(client)
    g, v, p = WIDGET.group, WIDGET.version, WIDGET.plural
    # Discovery lists /scale as an autoscaling/v1 Scale with get/patch/update, as for a CRD's scale.
    resources = {r.name: r for r in crs.get_api_resources(g, v).resources}
    scale_entry = resources["widgets/scale"]
    assert (scale_entry.group, scale_entry.version, scale_entry.kind) == ("autoscaling", "v1", "Scale")
    assert sorted(scale_entry.verbs) == ["get", "patch", "update"]
    assert resources["widgets"].short_names == ["wd"]
    body = {"apiVersion": f"{g}/{v}", "kind": "Widget", "metadata": {"name": "main"}}
    created = crs.create_namespaced_custom_object(g, v, NS, p, {**body, "spec": {"workers": {"replicas": 1}}})
    status = crs.patch_namespaced_custom_object_status(
        g, v, NS, p, "main", {"status": {"workers": 1, "selector": "a=b"}}
    )
    meta = status["metadata"]
    assert crs.get_namespaced_custom_object_scale(g, v, NS, p, "main") == {
        "apiVersion": "autoscaling/v1",
        "kind": "Scale",
        "metadata": {
            "name": "main",
            "namespace": NS,
            "uid": created["metadata"]["uid"],
            "resourceVersion": meta["resourceVersion"],
            "creationTimestamp": created["metadata"]["creationTimestamp"],
        },
        "spec": {"replicas": 1},
        "status": {"replicas": 1, "selector": "a=b"},
    }

    def writer() -> dict[str, Any]:
        kube.wait_watching(1, timeout=WAIT)
        return crs.patch_namespaced_custom_object_scale(g, v, NS, p, "main", {"spec": {"replicas": 3}})

    done = pool.submit(writer)
    # Scaling is a spec change of the parent: a MODIFIED event with the new replicas and generation.
    events = watch(
        crs.list_namespaced_custom_object,
        g,
        v,
        NS,
        p,
        resource_version=meta["resourceVersion"],
        until=lambda evs: len(evs) == 1,
    )
    scaled = done.result(timeout=WAIT)
    assert names(events) == [("MODIFIED", "main")]
    parent = events[0][1]
    assert parent["spec"] == {"workers": {"replicas": 3}} and parent["metadata"]["generation"] == 2
    assert parent["status"] == {"workers": 1, "selector": "a=b"}  # /scale touches only specReplicasPath
    assert scaled["spec"] == {"replicas": 3} and scaled["status"] == {"replicas": 1, "selector": "a=b"}
    new_rv = scaled["metadata"]["resourceVersion"]
    assert new_rv == parent["metadata"]["resourceVersion"] != meta["resourceVersion"]
    assert crs.get_namespaced_custom_object(g, v, NS, p, "main") == parent

    # /scale takes a strategic merge patch (Scale is a built-in type) and PUT, with the same effect.
    smp = crs.patch_namespaced_custom_object_scale(
        g, v, NS, p, "main", {"spec": {"replicas": 4}}, _content_type="application/strategic-merge-patch+json"
    )
    put = crs.replace_namespaced_custom_object_scale(g, v, NS, p, "main", {**smp, "spec": {"replicas": 5}})
    assert put["spec"]["replicas"] == 5
    assert crs.get_namespaced_custom_object(g, v, NS, p, "main")["metadata"]["generation"] == 4
    for bad, code in (({**smp, "spec": {"replicas": 6}}, 409), ({"spec": {"replicas": -1}}, 422)):
        with pytest.raises(ApiException) as exc:  # a stale resourceVersion; a negative replica count
            crs.replace_namespaced_custom_object_scale(g, v, NS, p, "main", bad)
        assert exc.value.status == code
    assert crs.get_namespaced_custom_object(g, v, NS, p, "main")["spec"] == {"workers": {"replicas": 5}}


def test_stop_ends_open_watches(pool: concurrent.futures.Executor) -> None:
    kube = KubeAPI().start()
    config = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(config_file=str(kube.kubeconfig_path), client_configuration=config)
    with ApiClient(config) as own_client:
        # No timeout_seconds: only the server's stop can end this stream.
        done = pool.submit(
            lambda: list(
                kubernetes.watch.Watch().stream(
                    CoreV1Api(own_client).list_namespaced_pod, NS, _request_timeout=WAIT
                )
            )
        )
        kube.wait_watching(1, timeout=WAIT)
        started = time.monotonic()
        kube.stop()
        assert done.result(timeout=WAIT) == [] and time.monotonic() - started < 2
    assert not kube.kubeconfig_path.exists()


def test_a_test_reaction_stands_in_for_the_server(kube: KubeAPI, client: ApiClient) -> None:
    # kmock's DSL still works on top: here the first pod creation fails with 503 and stores nothing.
    kube.call(lambda: kube.emulator["create v1/pods"][:1] << 503)
    core = CoreV1Api(client)
    with pytest.raises(ApiException) as exc:
        core.create_namespaced_pod(NS, pod("worker-0", app="tts-worker"))
    assert exc.value.status == 503 and core.list_namespaced_pod(NS).items == []
    assert core.create_namespaced_pod(NS, pod("worker-0", app="tts-worker")).metadata.name == "worker-0"
