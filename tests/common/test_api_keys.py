"""API keys and per-key quotas, in process: the file's two shapes, errors that name the entry and never the key,
matching, the token bucket and in-flight limits on a fake clock, and the label budget."""

from __future__ import annotations

import hashlib

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from tts_common.api_keys import ApiKey, KeyLimits, KeysError, KeysFile, load_keys, parse_keys
from tts_common.key_guard import LabelBudget, guarded
from tts_common.key_quota import KeyQuota

pytestmark = pytest.mark.unit

KEY_A = "sk-test-aaaaaaaaaaaaaaaa"
KEY_B = "sk-test-bbbbbbbbbbbbbbbb"


def test_mapping_with_ids_limits_defaults_and_hashed_keys(tmp_path):
    path = tmp_path / "keys.yaml"
    path.write_text(yaml.safe_dump({
        "keys": [{"id": "team-a", "key": KEY_A, "requests_per_second": 2, "max_concurrent": 1},
                 {"sha256": hashlib.sha256(KEY_B.encode()).hexdigest()}],
        "defaults": {"requests_per_second": 10, "burst": 20},
    }))
    ring = load_keys(path)
    a = ring.match(f"Bearer {KEY_A}")
    b = ring.match(f"bearer {KEY_B}")  # the scheme is case-insensitive
    assert a is not None and a.id == "team-a"
    assert a.limits == KeyLimits(requests_per_second=2, burst=20, max_concurrent=1)  # burst from the defaults
    assert b is not None and b.id == hashlib.sha256(KEY_B.encode()).hexdigest()[:8]
    assert b.limits == KeyLimits(requests_per_second=10, burst=20)
    for wrong in ("", KEY_A, f"Basic {KEY_A}", "Bearer ", f"Bearer {KEY_A}x", f"Bearer {KEY_A[:-1]}"):
        assert ring.match(wrong) is None, wrong


def test_one_key_per_line(tmp_path):
    path = tmp_path / "keys.txt"
    path.write_text(f"# team keys\n{KEY_A}\n\n  {KEY_B}  \n")
    ring = load_keys(path)
    assert len(ring.keys) == 2 and ring.match(f"Bearer {KEY_B}") is not None
    assert all(k.limits == KeyLimits() for k in ring.keys)


@pytest.mark.parametrize(("doc", "names"), [
    ({"keys": [{"id": "x", "key": "short"}]}, "key 'x': key"),
    ({"keys": [{"id": "x"}]}, "key 'x': entry"),
    ({"keys": [{"key": KEY_A, "sha256": "0" * 64}]}, "keys[0]: entry"),
    ({"keys": [{"id": "bad id!", "key": KEY_A}]}, "key 'bad id!': id"),
    ({"keys": [{"key": KEY_A, "requests_per_second": 0}]}, "keys[0]: requests_per_second"),
    ({"keys": [{"key": KEY_A, "max_concurrent": -1}]}, "keys[0]: max_concurrent"),
    ({"keys": [{"key": KEY_A, "colour": "red"}]}, "keys[0]: colour"),
    ({"keys": [{"id": "x", "key": KEY_A}, {"id": "x", "key": KEY_B}]}, "id 'x' is given twice"),
    ({"keys": [{"id": "x", "key": KEY_A}, {"id": "y", "key": KEY_A}]}, "the same key is given twice"),
    ({"keys": []}, "keys"),
    ({"keys": [{"key": f"{KEY_A} with spaces"}]}, "keys[0]: key"),
])
def test_errors_name_the_entry_and_field_but_never_the_key(doc, names):
    with pytest.raises(KeysError) as exc:
        parse_keys(doc, "keys.yaml")
    message = str(exc.value)
    assert message.startswith("keys.yaml: ") and names in message, message
    assert KEY_A not in message and KEY_B not in message


def test_a_bad_change_keeps_the_last_good_keys(tmp_path):
    path = tmp_path / "keys.yaml"
    path.write_text(yaml.safe_dump({"keys": [{"id": "a", "key": KEY_A}]}))
    watched = KeysFile(path)
    assert not watched.refresh()
    path.write_text("keys: [unclosed\n")
    assert not watched.refresh() and "not YAML" in (watched.error or "")
    assert watched.value.match(f"Bearer {KEY_A}") is not None
    path.write_text(yaml.safe_dump({"keys": [{"id": "b", "key": KEY_B}]}))
    assert watched.refresh() and watched.error is None
    assert watched.value.match(f"Bearer {KEY_A}") is None and watched.value.match(f"Bearer {KEY_B}") is not None


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def key(rate: float | None = None, burst: int | None = None, concurrent: int | None = None,
        key_id: str = "k") -> ApiKey:
    return ApiKey(key_id, b"\0" * 32, KeyLimits(requests_per_second=rate, burst=burst, max_concurrent=concurrent))


def test_token_bucket_refuses_with_the_wait_and_refills():
    clock = Clock()
    quota, k = KeyQuota(clock), key(rate=2, burst=2)
    assert quota.acquire(k) is None and quota.acquire(k) is None
    over = quota.acquire(k)
    assert over is not None and over.retry_after == 1 and "2 requests/s" in over.message
    clock.now += 0.5  # one token back
    assert quota.acquire(k) is None and quota.acquire(k) is not None
    slow = key(rate=0.1, key_id="slow")  # one request per 10 s: the wait is said in whole seconds, rounded up
    assert quota.acquire(slow) is None
    over = quota.acquire(slow)
    assert over is not None and over.retry_after == 10


def test_in_flight_limit_and_release():
    quota, k = KeyQuota(Clock()), key(concurrent=2)
    assert quota.acquire(k) is None and quota.acquire(k) is None
    over = quota.acquire(k)
    assert over is not None and over.retry_after == 1 and "max_concurrent" in over.message
    quota.release(k)
    assert quota.in_flight("k") == 1 and quota.acquire(k) is None
    quota.release(k), quota.release(k), quota.release(k)  # an extra release never goes below zero
    assert quota.in_flight("k") == 0


def test_forgetting_keys_keeps_those_in_flight():
    quota = KeyQuota(Clock())
    busy, idle = ApiKey("busy", b"1" * 32, KeyLimits()), ApiKey("idle", b"2" * 32, KeyLimits())
    assert quota.acquire(busy) is None and quota.acquire(idle) is None
    quota.release(idle)
    quota.forget_except(set())
    assert quota.in_flight("busy") == 1 and quota.in_flight("idle") == 0
    assert set(quota._buckets) == {"busy"}


@settings(max_examples=60, deadline=None)
@given(rate=st.floats(0.1, 50), burst=st.integers(1, 20),
       gaps=st.lists(st.floats(0, 2), min_size=1, max_size=80))
def test_admitted_never_exceeds_burst_plus_rate_times_elapsed(rate, burst, gaps):
    clock = Clock()
    quota, k = KeyQuota(clock), key(rate=rate, burst=burst)
    admitted, start = 0, clock.now
    for gap in gaps:
        clock.now += gap
        if quota.acquire(k) is None:
            admitted += 1
            quota.release(k)
        else:
            assert quota.acquire(k) is not None  # refused now: refused again at the same instant
    assert admitted <= burst + rate * (clock.now - start) + 1e-6


def test_label_budget_and_guarded_paths():
    labels = LabelBudget(limit=2)
    assert [labels(v) for v in ("a", "b", "c", "a", "d")] == ["a", "b", "other", "a", "other"]
    assert guarded("/tts") and guarded("/v1/audio/speech") and guarded("/v1/models")
    assert not any(guarded(p) for p in ("/healthz", "/readyz", "/metrics", "/stats", "/concurrent_stats", "/v1",
                                        "/control", "/set_gpt_weights"))
