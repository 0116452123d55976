"""The voice catalog (voices.yaml): what a good one gives, and a clear error naming the voice and the field for
every bad one; a bad reload keeps the last good catalog."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml

from tts_common.voices import CatalogError, CatalogFile, load_catalog, parse_catalog

GOOD = {
    "default": "alice",
    "voices": [
        {"name": "alice", "synthetic": {"tone_hz": 330},
         "gpt_sovits": {"gpt_weights": "gpt/alice.ckpt", "sovits_weights": "sovits/alice.pth", "version": "v2",
                        "ref_audio": "alice.wav", "prompt_text": "Hi.", "prompt_lang": "EN"},
         "defaults": {"top_k": 5, "speed_factor": 1.1}},
        {"name": "bob-2", "piper": {"model": "voices/bob.onnx"}},
    ],
}


@pytest.mark.unit
def test_a_good_catalog():
    catalog = parse_catalog(GOOD)
    assert catalog.names() == ["alice", "bob-2"] and catalog.default == "alice"
    assert [v.name for v in catalog.for_engine("synthetic")] == ["alice"]
    assert [v.name for v in catalog.for_engine("gpt-sovits")] == ["alice"]
    assert [v.name for v in catalog.for_engine("piper")] == ["bob-2"]
    alice = catalog.get("alice")
    assert alice is not None and alice.gpt_sovits is not None and alice.gpt_sovits.prompt_lang == "en"
    assert parse_catalog(GOOD["voices"]).names() == catalog.names()  # spec.voices: the list alone
    assert parse_catalog(None).voices == []


def _with(**changes: object) -> dict:
    voice = {**GOOD["voices"][0], **changes}
    return {"voices": [voice, GOOD["voices"][1]]}


@pytest.mark.unit
@pytest.mark.parametrize("data,message", [
    (_with(name="../etc"), "voice '../etc': name: Value error, lower-case letters"),
    (_with(name="Alice"), "voice 'Alice': name"),
    (_with(name="a/b"), "voice 'a/b': name"),
    ({"voices": [{"name": "solo"}]}, "voice 'solo': entry: Value error, says nothing for any engine"),
    (_with(synthetic={"tone_hz": 5}), "voice 'alice': synthetic.tone_hz: Input should be greater than or equal to 50"),
    (_with(gpt_sovits={**GOOD["voices"][0]["gpt_sovits"], "version": "v9"}), "voice 'alice': gpt_sovits.version"),
    (_with(gpt_sovits={**GOOD["voices"][0]["gpt_sovits"], "prompt_lang": "fr"}),
     "voice 'alice': gpt_sovits.prompt_lang: Value error, 'fr' is not one of"),
    (_with(gpt_sovits={"gpt_weights": "a.ckpt", "sovits_weights": "", "ref_audio": "r.wav", "prompt_lang": "en"}),
     "voice 'alice': gpt_sovits.sovits_weights: Value error, a path of 1 to"),
    (_with(piper={"model": "bob.bin"}), "voice 'alice': piper.model: Value error, a Piper voice is an .onnx file"),
    (_with(defaults={"text": "x"}), "voice 'alice': defaults: Value error, text: not a synthesis parameter"),
    (_with(defaults={"top_k": "many"}), "voice 'alice': defaults: Value error, top_k: Input should be a valid integer"),
    (_with(surprise=1), "voice 'alice': surprise: Extra inputs are not permitted"),
    ({"voices": [GOOD["voices"][1], GOOD["voices"][1]]}, "voice 'bob-2' is listed twice"),
    ({"default": "carol", "voices": GOOD["voices"]}, "default: 'carol' is not a voice of this catalog"),
    ({"voices": "alice"}, "voices: Input should be a valid list"),
])
def test_a_bad_catalog_names_the_voice_and_the_field(data, message):
    with pytest.raises(CatalogError) as err:
        parse_catalog(data, "voices.yaml")
    assert str(err.value).startswith("voices.yaml: ") and message in str(err.value), str(err.value)


@pytest.mark.unit
def test_files_that_do_not_load(tmp_path):
    missing = tmp_path / "none.yaml"
    with pytest.raises(CatalogError, match="cannot read"):
        load_catalog(missing)
    broken = tmp_path / "broken.yaml"
    broken.write_text("voices:\n  - name: [unclosed\n")
    with pytest.raises(CatalogError, match=r"not YAML \(line \d+\)"):
        load_catalog(broken)
    huge = tmp_path / "huge.yaml"
    huge.write_bytes(b"#" * (2 << 20))
    with pytest.raises(CatalogError, match="larger than"):
        load_catalog(huge)


@pytest.mark.unit
def test_a_bad_reload_keeps_the_last_good_catalog(tmp_path):
    path = tmp_path / "voices.yaml"
    path.write_text(yaml.safe_dump(GOOD))
    watched = CatalogFile(path)
    assert not watched.refresh() and watched.catalog.names() == ["alice", "bob-2"]
    path.write_text(yaml.safe_dump({"voices": [{"name": "Bad Name", "synthetic": {}}]}))
    os.utime(path, ns=(1, 1))  # a different stamp even within the filesystem's time resolution
    assert not watched.refresh()
    assert watched.catalog.names() == ["alice", "bob-2"] and "voice 'Bad Name': name" in (watched.error or "")
    path.write_text(yaml.safe_dump({"voices": [{"name": "carol", "synthetic": {"speed": 2}}]}))
    os.utime(path, ns=(2, 2))
    assert watched.refresh() and watched.catalog.names() == ["carol"] and watched.error is None


@pytest.mark.process
def test_the_cli_checks_a_catalog(tmp_path):
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(yaml.safe_dump(GOOD))
    bad.write_text(yaml.safe_dump({"voices": [{"name": "x", "piper": {"model": "x.bin"}}]}))
    ok = subprocess.run([sys.executable, "-m", "tts_cli", "voices", "check", "--catalog", str(good)],
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and "2 voice(s); default: alice" in ok.stdout and "piper: bob-2" in ok.stdout
    refused = subprocess.run([sys.executable, "-m", "tts_cli", "voices", "check", "--catalog", str(bad)],
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "voice 'x': piper.model" in refused.stderr


@pytest.mark.process
def test_the_cli_names_the_files_a_catalog_lacks(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(GOOD))
    models, voices = tmp_path / "models", tmp_path / "voices"
    for path in (models / "gpt" / "alice.ckpt", models / "sovits" / "alice.pth", voices / "alice.wav",
                 models / "voices" / "bob.onnx"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    check = [sys.executable, "-m", "tts_cli", "voices", "check", "--catalog", str(good), "--models-dir", str(models),
             "--voice-dir", str(voices)]
    missing = subprocess.run(check, capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2, missing.stdout
    assert missing.stderr.strip().splitlines() == [
        "tts-cluster voices check: voice 'bob-2': piper.model (its .json): 'voices/bob.onnx.json' not found in the "
        "models directory"]
    (models / "voices" / "bob.onnx.json").write_text("{}")
    assert subprocess.run(check, capture_output=True, text=True, timeout=60).returncode == 0
