"""The cluster's default voice, switched through the router and kept by it: the one owner of which GPT and SoVITS
weights the default voice has.

A switch (`/set_gpt_weights`, `/set_sovits_weights`) goes to every worker that is not ejected; if any refuses,
those that switched are switched back (to the cluster's previous choice, or to the weights they reported before),
so the cluster is never left half-switched. Once a switch has succeeded the router keeps the choice and applies it
to every worker process that has not had it: one that joins later, restarts or crashes and comes back on its
yaml's weights. Until it has, such a worker gets no request for the default voice (catalog voices still go there).

A router may also start with a choice (`--default-gpt-weights`, `--default-sovits-weights`: in Kubernetes the
operator passes `spec.defaultWeights`, where it also persists a switch made through a router), and brings every
worker to it from the start.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Optional

from tts_common.logs import log_fields

from .pool import WorkerPool, WorkerState

log = logging.getLogger("tts_router.default_voice")

# Which admin route switches which half of the pair, and which /stats field reports it.
RETRY_SECONDS = 10.0
SWITCHES = {"gpt": ("/set_gpt_weights", "gpt_weights"), "sovits": ("/set_sovits_weights", "sovits_weights")}


@dataclass
class Switched:
    """Each worker's answer by URL; the first refusal (status, body) if any refused, and then whether every worker
    that had switched was switched back."""

    per_worker: dict[str, dict[str, Any]]
    first_failure: Optional[tuple[int, dict[str, Any]]] = None
    rolled_back: bool = True


@dataclass
class DefaultVoice:
    pool: WorkerPool
    #: weights path per kind ("gpt", "sovits") as last switched through this router; absent: the yaml's
    chosen: dict[str, str] = field(default_factory=dict)
    generation: int = 0
    #: url -> (instance id, generation) the worker process there was brought to
    applied: dict[str, tuple[str, int]] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    #: whether the choice was switched through this router process (not only given at start)
    switched: bool = False
    #: url -> when bringing it failed last: retried after RETRY_SECONDS, not at every poll
    failed_at: dict[str, float] = field(default_factory=dict)
    #: url -> (instance id, kind, path to put back): a worker a refused switch may have changed and that could not
    #: be put back (no answer, or no known previous weights); it gets no default-voice request until it is
    unsure: dict[str, tuple[str, str, Optional[str]]] = field(default_factory=dict)

    @classmethod
    def starting_with(cls, pool: WorkerPool, gpt: Optional[str], sovits: Optional[str]) -> "DefaultVoice":
        chosen = {k: v for k, v in (("gpt", gpt), ("sovits", sovits)) if v}
        return cls(pool, chosen=chosen, generation=1 if chosen else 0)

    def behind(self) -> int:
        """Workers with stats that do not serve the cluster's choice yet."""
        return sum(1 for w in self.pool.ordered() if w.stats is not None and not self.current(w))

    def current(self, worker: WorkerState) -> bool:
        """Whether this worker serves the cluster's default voice: always until a switch through the router, unless
        a refused switch left it unsure."""
        stats = worker.stats
        unsure = self.unsure.get(worker.url)
        if stats is not None and unsure is not None and unsure[0] == stats.instance_id:
            return False
        if self.generation == 0:
            return True
        return stats is not None and self.applied.get(worker.url) == (stats.instance_id, self.generation)

    async def switch(self, kind: str, path: str, call: Any, targets: list[str]) -> Switched:
        """Switch `kind` to `path` on `targets` with `call(url, route, query) -> (status, body)`; all or none."""
        route, reported = SWITCHES[kind]
        async with self.lock:
            before = {url: self._previous(url, kind, reported) for url in targets}
            # A worker behind the cluster's choice is brought to all of it by `keep`, not marked current here.
            was_current = {url for url in targets if (w := self.pool.workers.get(url)) is not None and self.current(w)}
            answers = await asyncio.gather(*(call(url, route, {"weights_path": path}) for url in targets))
            per_worker = {url: {"status": s, **b} for url, (s, b) in zip(targets, answers, strict=True)}
            failed = [(s, b) for s, b in answers if s != 200]
            if not failed:
                self.chosen[kind] = path
                self.generation += 1
                self.switched = True
                for url in was_current:
                    if (w := self.pool.workers.get(url)) is not None and w.stats is not None:
                        self.applied[url] = (w.stats.instance_id, self.generation)
                log_fields(log, "default voice switched", kind=kind, path=path, workers=len(targets))
                return Switched(per_worker)
            rolled_back = True
            for url, (status, _body) in zip(targets, answers, strict=True):
                # 200 switched; 502 is no answer (a timeout), and the worker may still switch when its admitted
                # requests are done: both are put back. Any other answer refused, leaving the worker as it was.
                if status not in (200, 502):
                    continue
                previous = before[url]
                ok = previous is not None and (await call(url, route, {"weights_path": previous}))[0] == 200
                per_worker[url]["rolled_back"] = ok
                rolled_back = rolled_back and ok
                worker = self.pool.workers.get(url)
                if not ok and worker is not None and worker.stats is not None:
                    self.unsure[url] = (worker.stats.instance_id, kind, previous)
            log_fields(log, "default voice switch refused: switched workers put back", logging.WARNING, kind=kind,
                       path=path, refused=len(failed), rolled_back=rolled_back)
            return Switched(per_worker, failed[0], rolled_back)

    def _previous(self, url: str, kind: str, reported: str) -> Optional[str]:
        if kind in self.chosen:
            return self.chosen[kind]
        worker = self.pool.workers.get(url)
        value = getattr(worker.stats, reported, None) if worker is not None and worker.stats is not None else None
        return value if isinstance(value, str) else None

    async def keep(self, call: Any, interval: float) -> None:
        """Bring every worker process that has not had the cluster's choice to it, for as long as the router runs."""
        while True:
            await asyncio.sleep(interval)
            try:
                await self._keep_once(call)
            except Exception:  # noqa: BLE001 - the keeper must outlive any one worker's odd answer
                log.exception("keeping the default voice failed; trying again")

    async def _keep_once(self, call: Any) -> None:
        for table in (self.applied, self.failed_at, self.unsure):  # bounded by the workers there are
            for url in [u for u in table if u not in self.pool.workers]:
                del table[url]
        now = time.monotonic()
        behind = [w for w in self.pool.ordered()
                  if w.stats is not None and w.serving(now, self.pool.stale_after) and not self.current(w)
                  and now - self.failed_at.get(w.url, -RETRY_SECONDS) >= RETRY_SECONDS]
        for worker in behind:
            await self._bring(worker, call)

    async def _bring(self, worker: WorkerState, call: Any) -> None:
        async with self.lock:
            if worker.stats is None or self.current(worker):
                return
            instance = worker.stats.instance_id
            # Before any choice, an unsure worker is put back to what it had; after one, it gets the choice.
            unsure = self.unsure.get(worker.url)
            todo = (dict(self.chosen) if self.generation else
                    ({unsure[1]: unsure[2]} if unsure is not None and unsure[2] is not None else {}))
            if not todo:
                self.failed_at[worker.url] = time.monotonic()
                return
            for kind, path in todo.items():
                status, body = await call(worker.url, SWITCHES[kind][0], {"weights_path": path})
                if status != 200:
                    log_fields(log, "default voice not applied to a worker: it gets no default-voice requests",
                               logging.WARNING, worker=worker.name, kind=kind, path=path, status=status,
                               message=str(body.get("message", ""))[:200])
                    self.failed_at[worker.url] = time.monotonic()
                    return
            self.failed_at.pop(worker.url, None)
            self.unsure.pop(worker.url, None)
            self.applied[worker.url] = (instance, self.generation)
            log_fields(log, "default voice applied to a worker", worker=worker.name, weights=dict(self.chosen))
