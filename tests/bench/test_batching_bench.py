"""The batching benchmark (`tts-cluster bench batching`): its pieces in-process (flags, the per-run row, the target
verdicts) and one real `--quick` run on generated weights whose report must be complete and agree with itself.
Speed is the benchmark's business: no figure is compared with a number here."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys

import pytest

from tts_bench import checkout
from tts_bench.batching_bench import (
    GENERATOR,
    SAMPLES_PER_TOKEN,
    Measured,
    Sample,
    Scenario,
    add_arguments,
    find_generator,
    requests_of,
    row,
    targets,
    worker_flags,
)


def parse(*flags: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_arguments(p)
    return p.parse_args(list(flags))


@pytest.mark.unit
def test_every_run_has_at_least_four_requests():
    assert [requests_of(c, 1) for c in (1, 2, 8)] == [4, 4, 8] and requests_of(8, 2) == 16


@pytest.mark.unit
def test_every_flag_is_explained_and_bad_levels_are_refused():
    p = argparse.ArgumentParser()
    add_arguments(p)
    assert all(a.help for a in p._actions)
    full = Scenario.of(parse())
    assert full.levels == [1, 4, 8, 16] and full.layers == 24 and full.max_batch == 16
    assert Scenario.of(parse("--concurrency", "8,1,8")).levels == [1, 8]
    quick = Scenario.of(parse("--quick"))
    assert quick.layers == 2 and quick.levels == [1, 2] and quick.rounds == 1
    for bad in ("0", "x", "1,65", ""):
        with pytest.raises(SystemExit):
            parse("--concurrency", bad)


@pytest.mark.unit
def test_the_weight_generator_is_found_beside_the_package_or_in_the_working_directory(tmp_path, monkeypatch):
    """An editable install finds it in its own checkout; a project installed into site-packages (no tests/ there)
    finds it in the checkout it runs from, at its root or below; neither is a message naming the places."""
    package_tree, repo = tmp_path / "site-packages", tmp_path / "checkout"
    package_tree.mkdir()
    (repo / GENERATOR).parent.mkdir(parents=True)
    (repo / GENERATOR).write_text("# the generator\n")
    assert find_generator([package_tree, repo]) == repo / GENERATOR
    assert find_generator([repo, package_tree]) == repo / GENERATOR
    with pytest.raises(SystemExit, match=re.escape(f"{GENERATOR} is in none of {package_tree}, {tmp_path} (or above)")):
        find_generator([package_tree, tmp_path])
    # the default places: this package's own checkout first (the tests run from one), then the working directory up
    assert checkout.roots()[0] == checkout.PACKAGE_ROOT and find_generator() == checkout.PACKAGE_ROOT / GENERATOR
    monkeypatch.chdir(repo / "tests")
    assert checkout.roots()[1:3] == [repo / "tests", repo]


@pytest.mark.unit
def test_results_go_to_the_checkout_or_the_working_directory_never_into_an_installation(tmp_path, monkeypatch):
    assert checkout.results_dir() == checkout.PACKAGE_ROOT / "bench" / "results"  # an editable install: its checkout
    monkeypatch.setattr(checkout, "PACKAGE_ROOT", tmp_path / "site-packages")
    monkeypatch.chdir(tmp_path)
    assert checkout.results_dir() == tmp_path / "bench" / "results"


@pytest.mark.unit
def test_the_workers_flags_follow_the_scenario(tmp_path):
    config, voices = tmp_path / "tts_infer.yaml", tmp_path / "voices"
    plain = Scenario.of(parse())
    off, on = worker_flags(plain, "off", config, voices), worker_flags(plain, "on", config, voices)
    assert "--batching" not in off and on[on.index("--max-batch") + 1] == "16"
    assert not any("vocoder" in f or "gpt-sovits-root" in f for f in off + on)  # the worker's own defaults
    gpu = Scenario.of(parse("--device", "cuda", "--no-vocoder-thread", "--gpt-sovits-root", str(tmp_path)))
    off, on = worker_flags(gpu, "off", config, voices), worker_flags(gpu, "on", config, voices)
    assert off[off.index("--device") + 1] == "cuda" and "--cpu-threads" not in off
    for flags in (off, on):  # both workers run the same GPT-SoVITS code
        assert flags[flags.index("--gpt-sovits-root") + 1] == str(tmp_path.resolve())
    assert "--no-vocoder-thread" in on and "--no-vocoder-thread" not in off


@pytest.mark.unit
def test_a_row_counts_tokens_from_the_audio_and_leaves_failures_out():
    m = Measured(2, wall=4.0, samples=[Sample(200, 1.0, 0.5, 10 * SAMPLES_PER_TOKEN),
                                       Sample(200, 3.0, 1.0, 30 * SAMPLES_PER_TOKEN),
                                       Sample(503, 0.1, None, 0)], peak_batch=2, decoded_tokens=42,
                 decoding_seconds=2.0)
    r = row(m)
    assert r["ok"] == 2 and r["requests"] == 3 and r["t2s_tokens"] == 42 and r["t2s_tokens_per_s"] == 21
    assert r["audio_tokens_per_s"] == 10 and r["requests_per_s"] == 0.5 and r["peak_in_engine"] == 2
    assert (r["p50_s"], r["p95_s"], r["ttfb_p50_s"]) == (1.0, 3.0, 0.5)


@pytest.mark.unit
def test_target_verdicts_follow_the_ratios():
    def rows(tokens: float, rps: float, p95: float, p50: float) -> dict[int, dict[str, float]]:
        return {1: {"t2s_tokens_per_s": 1, "requests_per_s": 1, "p95_s": 1, "p50_s": p50},
                8: {"t2s_tokens_per_s": tokens, "requests_per_s": rps, "p95_s": p95, "p50_s": 1}}

    verdicts = targets({"off": rows(10, 1, 4, 2.0), "on": rows(60, 3, 3, 2.1)})
    assert {k: v["verdict"] for k, v in verdicts.items()} == {
        "t2s_tokens_x": "PASS", "requests_x": "PASS", "p95_ratio": "PASS", "single_latency_ratio": "PASS"}
    verdicts = targets({"off": rows(10, 1, 4, 2.0), "on": rows(40, 2, 5, 2.5)})
    assert verdicts["t2s_tokens_x"] == {"target": 5.0, "measured": 4.0, "verdict": "FAIL"}
    assert {v["verdict"] for v in verdicts.values()} == {"FAIL"}
    only_one = {1: rows(1, 1, 1, 1)[1]}
    assert targets({"off": only_one, "on": only_one})["requests_x"]["verdict"] == "not measured"


@pytest.mark.process
@pytest.mark.slow
def test_a_quick_run_reports_every_level_of_both_modes(tmp_path):
    """With --vocoder-thread, so the batching worker's SoVITS runs on its second thread here too (the default only
    on CUDA)."""
    voice_dir = tmp_path / "voices"
    voice_dir.mkdir()
    done = subprocess.run([sys.executable, "-m", "tts_cli", "bench", "batching", "--quick", "--vocoder-thread",
                           "--out", str(tmp_path / "out"), "--voice-dir", str(voice_dir)],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((tmp_path / "out" / "batching.json").read_text())
    assert report["levels"] == [1, 2] and report["quick"] is True and report["vocoder_thread"] is True
    for mode in ("off", "on"):
        runs = report["runs"][mode]
        assert [r["concurrency"] for r in runs] == [1, 2]
        for r in runs:
            assert r["ok"] == r["requests"] == 4, r  # every request answered (at least 4 a run)
            assert r["t2s_tokens"] > 0 and r["t2s_tokens_per_s"] > 0 and r["audio_tokens_per_s"] > 0
            assert r["p95_s"] >= r["p50_s"] > 0 and r["ttfb_p50_s"] > 0
    assert set(report["targets"]) == {"t2s_tokens_x", "requests_x", "p95_ratio", "single_latency_ratio"}
    assert report["targets"]["requests_x"]["verdict"] == "not measured"  # no level 8 in a quick run
    assert "GPT-SoVITS worker, batching off vs on" in done.stdout
