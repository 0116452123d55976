"""The voices benchmark (`tts-cluster bench voices`): its scenario's pieces in-process (the Zipf mix, the catalog,
the capacity formula, the flags' help), and one real `--quick` run whose results must be complete and agree with
themselves. Speed is the benchmark's business: no latency figure is compared with a number here."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest

from tts_bench.voices_bench import Scenario, _targets, add_arguments, catalog, median_index, zipf_voices
from tts_common.voices import parse_catalog

RUNS = ["one-voice", "voice-aware", "voice-blind"]


def scenario(*flags: str) -> Scenario:
    p = argparse.ArgumentParser()
    add_arguments(p)
    return Scenario.of(p.parse_args(list(flags)))


@pytest.mark.unit
def test_every_flag_is_explained_and_quick_is_short():
    p = argparse.ArgumentParser()
    add_arguments(p)
    assert all(a.help for a in p._actions)
    full, quick = scenario(), scenario("--quick")
    assert (full.seconds, full.warmup_seconds) == (40.0, 10.0)
    assert (full.repeats, full.loads) == (3, [0.7, 0.85]) and (quick.repeats, quick.loads) == (1, [0.7])
    assert scenario("--high-load", "0.7").loads == [0.7]  # the same load twice is one
    assert quick.seconds + quick.warmup_seconds < 10 and scenario("--quick", "--seconds", "5").seconds == 5
    with pytest.raises(SystemExit):
        scenario("--load", "0")


@pytest.mark.unit
def test_capacity_follows_the_stated_formula():
    sc = scenario("--workers", "4", "--base-seconds", "0.1", "--seconds-per-char", "0.001", "--load", "0.5")
    assert sc.capacity == pytest.approx(4 / (0.1 + 0.001 * sc.mean_chars))
    assert sc.rate == pytest.approx(0.5 * sc.capacity)
    assert f"{sc.capacity:.2f} req/s" in sc.formula()


@pytest.mark.unit
def test_the_zipf_mix_is_seeded_and_ranked():
    names = [f"v{k}" for k in range(8)]
    draws = zipf_voices(names, 1.1, 4000, seed=3)
    assert draws == zipf_voices(names, 1.1, 4000, seed=3) and draws != zipf_voices(names, 1.1, 4000, seed=4)
    counts = [draws.count(n) for n in names]
    assert counts[0] > counts[1] > counts[3] > counts[7] > 0  # 1/k^1.1: 40%, 19%, 9%, 4% of 4000 draws
    assert abs(counts[0] / 4000 - 0.398) < 0.04
    uniform = zipf_voices(names, 0.0, 4000, seed=3)
    assert all(abs(uniform.count(n) / 4000 - 1 / 8) < 0.03 for n in names)


@pytest.mark.unit
def test_the_catalog_is_valid_with_a_distinct_tone_per_voice():
    names = [f"v{k}" for k in range(8)]
    parsed = parse_catalog(catalog(names))
    assert parsed.names() == names
    tones = [v.synthetic.tone_hz for v in parsed.voices if v.synthetic is not None]
    assert len(set(tones)) == 8 and all(v.synthetic and v.synthetic.speed == 1.0 for v in parsed.voices)
    assert len({v.synthetic.tone_hz for v in parse_catalog(catalog([f"v{k}" for k in range(256)])).voices
                if v.synthetic}) == 256


@pytest.mark.unit
def test_the_median_repeat_and_targets_that_every_repeat_must_meet():
    assert median_index([1.2, 0.9, 1.1]) == 2 and median_index([1.0, None, 0.5]) == 0
    assert median_index([2.0, 1.0]) == 1  # the lower of two

    def pair(p99_one: float, p99_aware: float, loads: float, waited: int) -> dict[str, dict[str, object]]:
        return {"one-voice": {"p99_s": p99_one},
                "voice-aware": {"p99_s": p99_aware, "loads_per_1000": loads, "waited_held_elsewhere": waited}}

    repeats = [pair(1.0, 1.2, 10.0, 0), pair(1.0, 1.4, 20.0, 0), pair(1.0, 0.9, 5.0, 1)]
    t = _targets(repeats, [1.2, 1.4, 0.9], {"loads_per_1000": 100.0})
    p99 = t["p99_voice_aware_vs_one_voice"]
    assert p99["value"] == 1.2 and p99["each"] == [1.2, 1.4, 0.9] and not p99["pass"]  # one repeat over 1.3
    loads = t["loads_voice_blind_vs_voice_aware"]
    assert loads["each"] == [10.0, 5.0, 20.0] and loads["value"] == 10.0 and loads["pass"]
    waited = t["waited_for_a_load_held_elsewhere"]
    assert (waited["value"], waited["each"], waited["pass"]) == (1, [0, 0, 1], False)
    t = _targets(repeats[:1], [1.2], {"loads_per_1000": 40.0})
    assert t["p99_voice_aware_vs_one_voice"]["pass"] and not t["loads_voice_blind_vs_voice_aware"]["pass"]
    assert t["waited_for_a_load_held_elsewhere"]["pass"]


@pytest.mark.process
@pytest.mark.slow
def test_quick_run_writes_results_that_agree_with_themselves(tmp_path, voice_dir):
    done = subprocess.run([sys.executable, "-m", "tts_cli", "bench", "voices", "--quick", "--voice-dir",
                           str(voice_dir), "--out", str(tmp_path)], capture_output=True, text=True, timeout=280)
    assert done.returncode == 0, (done.stdout[-1500:], done.stderr[-3000:])
    report = json.loads((tmp_path / "voices.json").read_text())
    assert report["quick"] and report["workers"] == 4 and report["max_loaded_voices"] == 3
    assert report["voices"] == [f"v{k}" for k in range(8)]
    assert sum(report["voice_shares"].values()) == pytest.approx(1.0)
    n = report["requests_per_run"]
    assert n == max(8, round(report["offered_req_per_s"] * report["seconds"]))
    assert report["offered_req_per_s"] == pytest.approx(report["load"] * report["capacity_req_per_s"])

    runs = report["runs"]
    assert list(runs) == RUNS
    for name, r in runs.items():
        c = r["worker_counters"]
        assert r["requests"] == n and r["ok"] + r["failed"] == n, name  # one sample per arrival
        assert r["ok"] > 0 and r["p99_s"] >= r["p50_s"] > 0 and len(report["latencies"][name]) == r["ok"]
        assert r["warmup"]["requests"] > 0
        # The counters are the workers' own, read once nothing was queued: every answer was a processed job, and
        # neither loads nor waits outnumber the jobs that ran (no voice is pinned, so only jobs load).
        finished = c["processed"] + c["failed"] + c["cancelled"]
        assert (r["voice_loads"], r["voice_load_waits"]) == (c["voice_loads"], c["voice_load_waits"])
        assert (r["background_loads"], r["waited_held_elsewhere"]) == (c["voice_background_loads"],
                                                                       c["voice_load_waits_held_elsewhere"])
        # Background loads are loads; a request waits for its own voice's load only if it waited for a load.
        assert r["background_loads"] <= r["voice_loads"]
        assert r["waited_held_elsewhere"] <= c["voice_own_load_waits"] <= r["voice_load_waits"]
        assert c["processed"] >= r["ok"] and r["voice_loads"] <= finished and r["voice_load_waits"] <= finished
        assert r["loads_per_1000"] == pytest.approx(1000 * r["voice_loads"] / r["ok"])
        assert r["waited_share"] == pytest.approx(r["voice_load_waits"] / r["ok"])
        assert all(len(held) <= 3 for held in r["loaded_voices_after"].values())
        assert len(r["loaded_voices_after"]) == 4
        # Sampled during the phase: the loads so far only grow, up to the phase's count; admitted stays within
        # the workers' queues (10 each by default).
        points = report["timeline"][name]["points"]
        so_far = [p[1] for p in points]
        assert points and so_far == sorted(so_far) and 0 <= so_far[-1] <= r["voice_loads"], name
        assert all(0 <= p[2] <= 4 * 10 for p in points)
    # The default voice is held by every worker from the start: the baseline never loads or waits.
    one = runs["one-voice"]
    assert one["voice_loads"] == one["voice_load_waits"] == one["warmup"]["voice_loads"] == 0
    assert one["background_loads"] == one["waited_held_elsewhere"] == 0
    assert runs["voice-blind"]["background_loads"] == 0  # voice-blind never copies ahead
    # --quick: one load, one repeat; the top level is that load's.
    assert report["repeats"] == 1 and [lv["load"] for lv in report["levels"]] == [report["load"]]
    level = report["levels"][0]
    assert level["runs"] == runs and level["median_repeat"] == 0 and len(level["repeats"]) == 1
    assert {k: v for k, v in level["repeats"][0].items() if k != "p99_ratio"} == {
        k: runs[k] for k in ("one-voice", "voice-aware")}
    assert all(held == [] for held in one["loaded_voices_after"].values())
    # Same arrivals, same voices: routing blind to voices loads at least as often as routing by them.
    aware, blind = runs["voice-aware"], runs["voice-blind"]
    assert blind["voice_loads"] >= aware["voice_loads"] and blind["voice_loads"] > 0

    t = report["targets"]
    p99 = t["p99_voice_aware_vs_one_voice"]
    assert p99["value"] == pytest.approx(aware["p99_s"] / one["p99_s"]) and p99["pass"] == (p99["value"] <= 1.3)
    assert p99["each"] == [p99["value"]] == [level["repeats"][0]["p99_ratio"]]
    waited = t["waited_for_a_load_held_elsewhere"]
    assert waited["each"] == [aware["waited_held_elsewhere"]] and waited["pass"] == (waited["value"] == 0)
    loads = t["loads_voice_blind_vs_voice_aware"]
    if aware["voice_loads"]:
        assert loads["value"] == pytest.approx(blind["loads_per_1000"] / aware["loads_per_1000"])
        assert loads["pass"] == (loads["value"] >= 5)
    else:
        assert loads["value"] is None and loads["pass"]
    assert report["plots"] == ["voices.png"]
    assert (tmp_path / "voices.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for text in ("8 voices (Zipf s=1.1), 4 workers holding at most 3", "capacity = 4 workers /", "targets",
                 "voice-blind", "voice-aware #1", "targets at 70% load"):
        assert text in done.stdout
