"""The router's default voice in-process, with the call to the workers injected: a worker that gave no answer is
put back too, one that cannot be put back gets no default-voice request, and a worker behind the cluster's choice
is not marked current by a later switch it took part in."""

from __future__ import annotations

from typing import Any

import pytest

from support.router_pool import pool_of, worker
from tts_router.default_voice import DefaultVoice

pytestmark = pytest.mark.unit


def caller(answers: dict[tuple[str, str], int]) -> tuple[Any, list[tuple[str, str, str]]]:
    calls: list[tuple[str, str, str]] = []

    async def call(url: str, route: str, params: dict[str, str]) -> tuple[int, dict[str, Any]]:
        calls.append((url, route, params["weights_path"]))
        status = answers.get((url, params["weights_path"]), 200)
        return status, {"message": "success" if status == 200 else "change gpt weight failed"}

    return call, calls


async def test_a_worker_that_gave_no_answer_is_put_back_and_one_that_cannot_be_is_left_out():
    a, b, c = (worker(u, u, instance_id=f"i-{u}", gpt_weights=f"/m/{u}-yaml.ckpt") for u in "abc")
    pool = pool_of(a, b, c)
    voice = DefaultVoice(pool)
    # a refuses, b times out (502: it may switch later), c switches; b cannot be put back either
    call, calls = caller({("a", "new.ckpt"): 400, ("b", "new.ckpt"): 502, ("b", "/m/b-yaml.ckpt"): 502})
    result = await voice.switch("gpt", "new.ckpt", call, ["a", "b", "c"])
    assert result.first_failure is not None and result.first_failure[0] == 400 and not result.rolled_back
    assert ("c", "/set_gpt_weights", "/m/c-yaml.ckpt") in calls  # switched: put back
    assert ("b", "/set_gpt_weights", "/m/b-yaml.ckpt") in calls  # no answer: put back too
    assert not [x for x in calls if x[0] == "a" and x[2] != "new.ckpt"]  # refused: left as it was
    assert voice.generation == 0 and [voice.current(w) for w in (a, b, c)] == [True, False, True]
    call, calls = caller({})
    await voice._keep_once(call)  # b is put back later, then serves the default voice again
    assert calls == [("b", "/set_gpt_weights", "/m/b-yaml.ckpt")] and voice.current(b)


async def test_a_worker_behind_the_choice_is_brought_to_all_of_it_not_marked_by_a_later_switch():
    a, b = (worker(u, u, instance_id=f"i-{u}") for u in "ab")
    voice = DefaultVoice(pool_of(a, b))
    call, _ = caller({("b", "g.ckpt"): 400})
    assert (await voice.switch("gpt", "g.ckpt", call, ["a"])).first_failure is None  # b not a target then
    assert voice.current(a) and not voice.current(b)
    call, calls = caller({})
    assert (await voice.switch("sovits", "s.pth", call, ["a", "b"])).first_failure is None
    assert not voice.current(b)  # it took s.pth but never g.ckpt
    await voice._keep_once(call)
    assert ("b", "/set_gpt_weights", "g.ckpt") in calls and voice.current(b)
    b.stats = b.stats.model_copy(update={"instance_id": "i-b-restarted"})  # back on its yaml's weights
    assert not voice.current(b)
