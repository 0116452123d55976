"""The operator's voice parts in-process: spec.voices checked and rendered, the worker pod's catalog mount, the
workers the placement spreads over, status rows and the memory of load failures already told."""

from __future__ import annotations

import typing

import pytest
import yaml

from tts_common.schemas import WorkerStats
from tts_common.voices import CatalogError, parse_catalog
from tts_operator import resources
from tts_operator.plan import Drain, Remove, Replace, Undrain, serving_after
from tts_operator.spec import parse_spec
from tts_operator.voice_status import (
    VoiceErrorLog,
    VoiceReport,
    placement_from_status,
    placement_problem,
    status_rows,
    voice_report,
)
from tts_operator.voices import catalog_yaml, empty_catalog_yaml, read_voices

pytestmark = pytest.mark.unit

ALICE = {"name": "alice", "minWorkers": 2, "synthetic": {"tone_hz": 330}, "defaults": {"top_k": 5}}
BOB = {"name": "bob", "piper": {"model": "voices/bob.onnx"}}


def test_spec_voices_become_a_catalog_and_min_workers():
    voices = read_voices([ALICE, BOB], "bob")
    assert voices.catalog.names() == ["alice", "bob"] and voices.catalog.default == "bob"
    assert voices.min_workers == {"alice": 2, "bob": 0}
    assert not voices.empty and read_voices([], None).empty


@pytest.mark.parametrize("entries,default,needle", [
    ([{"name": "../x", "synthetic": {}}], None, "voice '../x': name:"),
    ([{**ALICE, "synthetic": {"tone_hz": 9000}}], None, "voice 'alice': synthetic.tone_hz:"),
    ([{"name": "carol"}], None, "voice 'carol': entry: "),
    ([{**ALICE, "minWorkers": -1}], None, "voice 'alice': minWorkers: -1"),
    ([{**ALICE, "minWorkers": True}], None, "voice 'alice': minWorkers: True"),
    ([{**ALICE, "minWorkers": 257}], None, "minWorkers: 257"),
    ([{**ALICE, "defaults": {"text": "hi"}}], None, "voice 'alice': defaults:"),
    ([{**ALICE, "tone": 1}], None, "voice 'alice': tone:"),
    ([ALICE, ALICE], None, "'alice' is listed twice"),
    (["alice"], None, "spec.voices[0]: an object"),
    ([ALICE], "zed", "spec.defaultVoice: 'zed' is not a voice of spec.voices (alice)"),
])
def test_a_bad_entry_is_refused_naming_the_voice_and_the_field(entries, default, needle):
    with pytest.raises(CatalogError) as err:
        read_voices(entries, default)
    assert needle in str(err.value)


@pytest.mark.parametrize("openai,needle", [
    ({"voices": {"alloy": "zed"}}, "spec.openai.voices.alloy: 'zed' is not a voice of spec.voices (alice, bob)"),
    ({"models": []}, "spec.openai.models: "),
    ({"colour": "red"}, "spec.openai.colour: "),
])
def test_a_bad_openai_table_is_refused_naming_the_field(openai, needle):
    with pytest.raises(CatalogError) as err:
        read_voices([ALICE, BOB], None, openai)
    assert needle in str(err.value)


def test_the_openai_table_reaches_the_workers_catalog_only_when_set():
    table = {"models": ["tts-1", "house-model"], "voices": {"alloy": "bob", "narrator": "alice"}}
    text = catalog_yaml(read_voices([ALICE, BOB], None, table), {})
    catalog = parse_catalog(yaml.safe_load(text), "voices.yaml")
    assert catalog.openai.models == ["tts-1", "house-model"] and catalog.openai.voices == table["voices"]
    assert "openai" not in yaml.safe_load(catalog_yaml(read_voices([ALICE, BOB], None), {}))


def test_the_rendered_catalog_is_what_a_worker_reads_back():
    voices = read_voices([ALICE, BOB], "alice")
    text = catalog_yaml(voices, {"tts-worker-b": ["alice"], "tts-worker-a": ["alice"]})
    catalog = parse_catalog(yaml.safe_load(text), "voices.yaml")
    assert catalog.voices == voices.catalog.voices and catalog.default == "alice"
    assert catalog.pinned_for("tts-worker-a") == ["alice"] and list(catalog.placement) == ["tts-worker-a",
                                                                                        "tts-worker-b"]
    assert "minWorkers" not in text
    assert catalog_yaml(voices, {"tts-worker-a": ["alice"], "tts-worker-b": ["alice"]}) == text  # stable text
    assert parse_catalog(yaml.safe_load(empty_catalog_yaml())).voices == []


def test_every_worker_pod_mounts_the_catalog_whatever_spec_voices_holds():
    for spec in (parse_spec({}), parse_spec({"voices": [ALICE], "workers": {"maxLoadedVoices": 5}})):
        pod = resources.worker_pod("tts", spec)
        container = pod["spec"]["containers"][0]
        volume = next(v for v in pod["spec"]["volumes"] if v["name"] == "voices")
        mount = next(m for m in container["volumeMounts"] if m["name"] == "voices")
        assert volume["configMap"] == {"name": "tts-voices"}
        assert mount == {"name": "voices", "mountPath": "/etc/tts-cluster-voices", "readOnly": True}
        assert "subPath" not in mount  # a subPath mount would never see the ConfigMap change
        assert {"name": "TTSC_VOICES", "value": "/etc/tts-cluster-voices/voices.yaml"} in container["env"]
        args = container["args"]
        assert args[args.index("--max-loaded-voices") + 1] == str(spec.workers.max_loaded_voices)
    # The pod does not depend on spec.voices: changing the voices changes the ConfigMap only.
    assert resources.worker_pod("tts", parse_spec({"voices": [ALICE]})) == \
        resources.worker_pod("tts", parse_spec({"voices": [BOB]}))


def test_the_placement_spreads_over_the_workers_that_serve_after_the_plan():
    def pod(name: str, draining: bool = False, terminating: bool = False) -> dict:
        meta: dict = {"name": name, "labels": {resources.LABEL_DRAINING: "true"} if draining else {}}
        if terminating:
            meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
        return {"metadata": meta}

    listed = [pod("a"), pod("b"), pod("c"), pod("d", draining=True), pod("e", draining=True), pod("f", terminating=True)]
    actions = (Replace("a", "PodFailed"), Drain("b", 0), Undrain("d"), Remove("e", "drained"))
    assert serving_after(listed, actions) == ["c", "d"]


def test_voice_report_reads_the_voice_fields_of_worker_stats():
    for name, info in VoiceReport.model_fields.items():  # the same names and types as the wire schema
        assert typing.get_origin(WorkerStats.model_fields[name].annotation) == typing.get_origin(info.annotation)
    report = voice_report({"loaded_voices": ["alice"], "voice_errors": {"bob": "missing bob.onnx"}, "other": 1})
    assert report == VoiceReport(loaded_voices=["alice"], voice_errors={"bob": "missing bob.onnx"})
    assert voice_report(None) is None and voice_report({"loaded_voices": "alice"}) is None


def test_status_rows_and_the_placement_read_back_from_them():
    voices = read_voices([ALICE, BOB], None)
    placement = {"w-a": ["alice"], "w-b": ["alice"]}
    reports = {"w-a": VoiceReport(loaded_voices=["alice", "bob"]), "w-b": VoiceReport(), "w-c": None}
    rows = status_rows(voices, placement, reports)
    assert rows == [
        {"name": "alice", "minWorkers": 2, "pinned": 2, "pinnedOn": ["w-a", "w-b"], "loadedOn": ["w-a"]},
        {"name": "bob", "minWorkers": 0, "pinned": 0, "pinnedOn": [], "loadedOn": ["w-a"]},
    ]
    assert placement_from_status({"voices": rows}) == placement
    assert placement_from_status({}) == {} and placement_from_status({"voices": "junk"}) == {}
    assert placement_problem(voices, placement, 2) is None
    problem = placement_problem(voices, {"w-a": ["alice"]}, 1)
    assert problem is not None and "alice on 1 of 2" in problem


def test_each_load_failure_is_told_once_and_again_only_after_it_cleared():
    log = VoiceErrorLog(limit=3)
    failing = {"w-a": VoiceReport(voice_errors={"bob": "no such file: bob.onnx"})}
    assert log.new(failing, ["w-a"]) == [("w-a", "bob", "no such file: bob.onnx")]
    assert log.new(failing, ["w-a"]) == []
    assert log.new({"w-a": None}, ["w-a"]) == []  # could not be asked: still known
    assert log.new({"w-a": VoiceReport()}, ["w-a"]) == []  # cleared: forgotten
    assert log.new(failing, ["w-a"]) == [("w-a", "bob", "no such file: bob.onnx")]  # back: told again
    changed = {"w-a": VoiceReport(voice_errors={"bob": "no such file: bob.onnx.json"})}
    assert log.new(changed, ["w-a"]) == [("w-a", "bob", "no such file: bob.onnx.json")]
    many = {f"w-{i}": VoiceReport(voice_errors={"bob": "x"}) for i in range(10)}
    assert len(log.new(many, list(many))) == 10
    assert len(log._told) <= 3  # bounded
    assert log.new({}, []) == [] and not log._told  # workers gone: forgotten
