"""spec.voices through the real kopf operator against the API emulator: the catalog ConfigMap and the workers'
mount, a refused voice, the placement of minWorkers as pods come and go, status.voices from a real worker's
/stats, and VoiceLoadFailed Events.

As in test_operator.py the tests play the kubelet (pod phase, readiness, podIP); the workers whose /stats the
operator reads are real synthetic workers reading the catalog the operator wrote.
"""

from __future__ import annotations

import time

import httpx
import kubernetes
import pytest
import yaml

from support.operator_cluster import NS, Cluster
from support.wait import eventually
from tts_cli.processes import free_port, start_worker

pytestmark = pytest.mark.kube

ALICE = {"name": "alice", "minWorkers": 2, "synthetic": {"tone_hz": 330}}
BOB = {"name": "bob", "synthetic": {"tone_hz": 440}}
API_ERRORS = (kubernetes.client.ApiException,)


def catalog(c: Cluster, name: str) -> dict:
    """The voices.yaml the operator wrote, parsed."""
    return yaml.safe_load(c.core.read_namespaced_config_map(f"{name}-voices", NS).data["voices.yaml"])


def placement(c: Cluster, name: str) -> dict[str, list[str]]:
    return catalog(c, name).get("placement") or {}


def names(pods: list) -> list[str]:
    return [p.metadata.name for p in pods]


def condition(c: Cluster, name: str, kind: str) -> dict | None:
    conditions = (c.get(name).get("status") or {}).get("conditions") or []
    return next((x for x in conditions if x["type"] == kind), None)


def test_spec_voices_become_the_workers_catalog_and_a_change_replaces_no_pod(cluster):
    cluster.create("vc", {"workers": {"replicas": 3, "maxLoadedVoices": 4}, "voices": [ALICE, BOB],
                          "defaultVoice": "bob"})
    pods = eventually(lambda: len(w := cluster.workers("vc")) == 3 and w)
    written = eventually(lambda: len(placement(cluster, "vc")) == 2 and catalog(cluster, "vc"), ignore=API_ERRORS)
    assert [v["name"] for v in written["voices"]] == ["alice", "bob"] and written["default"] == "bob"
    assert written["voices"][0]["synthetic"]["tone_hz"] == 330 and "minWorkers" not in written["voices"][0]
    assert set(written["placement"]) <= set(names(pods)) and all(v == ["alice"] for v in written["placement"].values())
    cm = cluster.core.read_namespaced_config_map("vc-voices", NS)
    assert [r.uid for r in cm.metadata.owner_references] == [cluster.get("vc")["metadata"]["uid"]]
    for pod in pods:
        container = pod.spec.containers[0]
        volume = next(v for v in pod.spec.volumes if v.name == "voices")
        mount = next(m for m in container.volume_mounts if m.name == "voices")
        assert volume.config_map.name == "vc-voices"
        assert mount.mount_path == "/etc/tts-cluster-voices" and mount.read_only and not mount.sub_path
        assert {e.name: e.value for e in container.env}["TTSC_VOICES"] == "/etc/tts-cluster-voices/voices.yaml"
        assert container.args[container.args.index("--max-loaded-voices") + 1] == "4"

    cluster.patch_spec("vc", {"voices": [{**ALICE, "synthetic": {"tone_hz": 300}}, BOB,
                                         {"name": "carol", "minWorkers": 1, "synthetic": {}}]})
    changed = eventually(lambda: len((c := catalog(cluster, "vc"))["voices"]) == 3 and c)
    assert changed["voices"][0]["synthetic"]["tone_hz"] == 300
    assert sum("carol" in v for v in changed["placement"].values()) == 1
    time.sleep(1)  # several reconciliation intervals
    assert names(cluster.workers("vc")) == names(pods)  # the same pods: they re-read the catalog themselves


def test_a_bad_voice_is_reported_naming_voice_and_field_and_the_catalog_in_force_stays(cluster):
    cluster.create("bv", {"workers": {"replicas": 2}, "voices": [ALICE]})
    pods = eventually(lambda: len(w := cluster.workers("bv")) == 2 and w)
    before = eventually(lambda: len(placement(cluster, "bv")) == 2 and
                        cluster.core.read_namespaced_config_map("bv-voices", NS).data, ignore=API_ERRORS)
    # What the CRD's schema cannot say (a preset's parameter names), the operator checks: a spec the API server
    # stores can still hold a bad voice.
    cluster.patch_spec("bv", {"voices": [ALICE, {"name": "x", "synthetic": {}, "defaults": {"nonsense": 1}}]})
    refused = eventually(lambda: (c := condition(cluster, "bv", "VoicesPlaced")) and c["reason"] == "InvalidVoices"
                         and c)
    assert refused["status"] == "False" and "voice 'x': defaults" in refused["message"]
    event = eventually(lambda: cluster.events("InvalidVoices"))
    assert "voice 'x': defaults" in event[0].message and event[0].type == "Warning"
    cluster.patch_spec("bv", {"workers": {"replicas": 3}})  # the workers are still reconciled
    eventually(lambda: len(cluster.workers("bv")) == 3)
    time.sleep(1)
    assert cluster.core.read_namespaced_config_map("bv-voices", NS).data == before
    assert set(names(pods)) <= set(names(cluster.workers("bv")))
    assert len(cluster.events("InvalidVoices")) == 1  # told once, not every interval

    cluster.patch_spec("bv", {"voices": [{**ALICE, "defaults": {"bogus": 1}}]})
    eventually(lambda: any("voice 'alice': defaults" in e.message for e in cluster.events("InvalidVoices")))
    cluster.patch_spec("bv", {"voices": [ALICE, BOB]})  # fixed: the new catalog takes effect
    eventually(lambda: [v["name"] for v in catalog(cluster, "bv")["voices"]] == ["alice", "bob"])
    eventually(lambda: (condition(cluster, "bv", "VoicesPlaced") or {}).get("status") == "True")


def test_a_cluster_whose_voices_never_were_valid_gets_an_empty_catalog_and_its_workers(cluster):
    cluster.create("nv", {"workers": {"replicas": 1}, "voices": [{"name": "carol", "synthetic": {}, "defaults": {"nonsense": 1}}]})
    eventually(lambda: len(cluster.workers("nv")) == 1)
    assert eventually(lambda: catalog(cluster, "nv"), ignore=API_ERRORS) == {"voices": [], "placement": {}}
    eventually(lambda: "voice 'carol': defaults" in (condition(cluster, "nv", "VoicesPlaced") or {})
               .get("message", ""))


def test_min_workers_are_placed_and_stay_put_as_workers_come_and_go(cluster):
    cluster.create("pl", {"workers": {"replicas": 2}, "drainTimeoutSeconds": 5, "voices": [ALICE, BOB]})
    eventually(lambda: len(cluster.workers("pl")) == 2)
    first = eventually(lambda: len(p := placement(cluster, "pl")) == 2 and p, ignore=API_ERRORS)
    assert sorted(first) == names(cluster.workers("pl")) and all(v == ["alice"] for v in first.values())
    status = eventually(lambda: (s := cluster.get("pl").get("status") or {}).get("voices") and s)
    assert status["voices"][0] == {"name": "alice", "minWorkers": 2, "pinned": 2, "pinnedOn": sorted(first),
                                   "loadedOn": []}
    assert status["voices"][1]["pinned"] == 0

    cluster.patch_spec("pl", {"workers": {"replicas": 4}})
    eventually(lambda: len(cluster.workers("pl")) == 4)
    time.sleep(1)
    assert placement(cluster, "pl") == first  # scaling up moves no pin

    cluster.patch_spec("pl", {"workers": {"replicas": 3}, "voices": [{**ALICE, "minWorkers": 3}, BOB]})
    eventually(lambda: len(cluster.workers("pl")) == 3)
    cluster.run_all("pl", ip="127.0.0.250")  # nothing listens there: no requests held, drains at once
    wide = eventually(lambda: len(p := placement(cluster, "pl")) == 3 and p)
    assert sorted(wide) == names(cluster.workers("pl"))
    assert all(wide[w] == ["alice"] for w in first if w in wide) and set(first) & set(wide)  # survivors kept theirs

    cluster.patch_spec("pl", {"workers": {"replicas": 1}})
    eventually(lambda: len(cluster.workers("pl")) == 1)
    last = names(cluster.workers("pl"))[0]
    eventually(lambda: placement(cluster, "pl") == {last: ["alice"]})
    short = eventually(lambda: (c := condition(cluster, "pl", "VoicesPlaced")) and c["status"] == "False" and c)
    assert short["reason"] == "PlacementShort" and "alice on 1 of 3" in short["message"]


def test_status_voices_names_the_workers_that_hold_each_voice(cluster, tmp_path, voice_dir, logs_dir):
    port = free_port()
    cluster.create("sv", {"workers": {"replicas": 1, "port": port, "engine": "synthetic"},
                          "voices": [{**ALICE, "minWorkers": 0}, BOB]})
    pod = eventually(lambda: cluster.workers("sv"))[0].metadata.name
    # The worker reads the very file the operator wrote, as the pod would from its mount.
    catalog_file = tmp_path / "voices.yaml"
    catalog_file.write_text(eventually(lambda: cluster.core.read_namespaced_config_map("sv-voices", NS),
                                       ignore=API_ERRORS).data["voices.yaml"])
    worker = start_worker(["--engine", "synthetic", "--voice-dir", str(voice_dir), "--voices", str(catalog_file)],
                          logs_dir, port=port, env={"TTSC_WORKER_ID": pod})
    try:
        cluster.run_pod(pod, ip="127.0.0.1")
        body = {"text": "Hi.", "text_lang": "en", "ref_audio_path": "reference.wav", "prompt_lang": "en",
                "voice": "bob"}
        assert httpx.post(f"{worker.url}/tts", json=body, timeout=30).status_code == 200
        rows = eventually(lambda: (v := (cluster.get("sv").get("status") or {}).get("voices"))
                          and v[1]["loadedOn"] and v)
        assert rows[1] == {"name": "bob", "minWorkers": 0, "pinned": 0, "pinnedOn": [], "loadedOn": [pod]}
        assert rows[0]["name"] == "alice" and rows[0]["loadedOn"] == []
    finally:
        worker.stop()


def test_a_voice_load_failure_is_one_warning_event_naming_worker_voice_and_file(cluster, tmp_path, voice_dir,
                                                                                 logs_dir):
    port = free_port()
    broken = {"name": "bob", "synthetic": {"tone_hz": 440, "weights": "voices/bob.bin"}}
    cluster.create("vf", {"workers": {"replicas": 1, "port": port, "engine": "synthetic"},
                          "voices": [{**ALICE, "minWorkers": 0}, broken]})
    pod = eventually(lambda: cluster.workers("vf"))[0].metadata.name
    catalog_file = tmp_path / "voices.yaml"
    written = eventually(lambda: cluster.core.read_namespaced_config_map("vf-voices", NS), ignore=API_ERRORS)
    catalog_file.write_text(written.data["voices.yaml"])
    models = tmp_path / "models"
    (models / "voices").mkdir(parents=True)  # bob's weights file is not there
    worker = start_worker(["--engine", "synthetic", "--voice-dir", str(voice_dir), "--voices", str(catalog_file),
                           "--models-dir", str(models)], logs_dir, port=port, env={"TTSC_WORKER_ID": pod})
    body = {"text": "Hi.", "text_lang": "en", "voice": "bob"}
    try:
        cluster.run_pod(pod, ip="127.0.0.1")
        # The worker names bob's missing file as soon as the catalog takes effect, before any request for bob.
        event = eventually(lambda: cluster.events("VoiceLoadFailed"))[0]
        assert event.type == "Warning" and pod in event.message and "bob" in event.message
        assert "voices/bob.bin" in event.message
        assert httpx.post(f"{worker.url}/tts", json={**body, "voice": "alice"}, timeout=30).status_code == 200
        r = httpx.post(f"{worker.url}/tts", json=body, timeout=30)
        assert r.status_code == 503 and "voices/bob.bin" in r.json()["message"], r.text
        time.sleep(1.5)  # several reconciliations that read the same failure
        assert len(cluster.events("VoiceLoadFailed")) == 1
        # A different failure is told too: the worker's catalog now names another missing file.
        catalog_file.write_text(catalog_file.read_text().replace("voices/bob.bin", "voices/bob2.bin"))
        eventually(lambda: "bob2.bin" in httpx.post(f"{worker.url}/tts", json=body, timeout=30).text, timeout=10)
        eventually(lambda: len(cluster.events("VoiceLoadFailed")) == 2)
    finally:
        worker.stop()
