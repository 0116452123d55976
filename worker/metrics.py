"""Prometheus metrics of one worker, in a registry the app owns (no process-global collectors)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 60, 120)
_BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)


class _ReadCounters(Collector):
    """A counter family whose values another owner keeps (the engine, on its thread): read at scrape time."""

    def __init__(self, name: str, documentation: str, label: str, read: Callable[[], dict[str, float]]) -> None:
        self._name, self._doc, self._label, self._read = name, documentation, label, read

    def collect(self) -> Iterable[Metric]:
        family = CounterMetricFamily(self._name, self._doc, labels=[self._label])
        for value, count in self._read().items():
            family.add_metric([value], count)
        yield family

    def describe(self) -> Iterable[Metric]:
        yield CounterMetricFamily(self._name, self._doc, labels=[self._label])


class WorkerMetrics:
    def __init__(self, worker_id: str, engine: str, device: str) -> None:
        self.registry = CollectorRegistry()
        labels = {"worker": worker_id, "engine": engine, "device": device}
        self.info = Gauge(
            "ttsc_worker_info", "Worker identity (always 1).", list(labels), registry=self.registry
        )
        self.info.labels(**labels).set(1)
        self.requests = Counter(
            "ttsc_worker_requests", "Finished /tts requests by HTTP status.", ["status"], registry=self.registry
        )
        self.processing = Histogram(
            "ttsc_worker_processing_seconds", "Engine time per request.", buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.queue_wait = Histogram(
            "ttsc_worker_queue_wait_seconds", "Time admitted requests waited for the engine.",
            buckets=_LATENCY_BUCKETS, registry=self.registry,
        )
        self.first_chunk = Histogram(
            "ttsc_worker_time_to_first_chunk_seconds", "From admission to the first audio chunk.",
            buckets=_LATENCY_BUCKETS, registry=self.registry,
        )
        self.audio_seconds = Counter(
            "ttsc_worker_audio_seconds", "Seconds of audio produced.", registry=self.registry
        )
        self.key_requests = Counter(
            "ttsc_worker_key_requests", "Finished /tts and /v1 requests by API key id (the worker's own keys, or "
            "the id the router sends) and status.", ["key", "status"], registry=self.registry,
        )
        self.key_audio_seconds = Counter(
            "ttsc_worker_key_audio_seconds", "Seconds of audio produced, by API key id.", ["key"],
            registry=self.registry,
        )
        self.queue_depth = Gauge("ttsc_worker_queue_depth", "Requests waiting for the engine.", registry=self.registry)
        self.in_flight = Gauge("ttsc_worker_in_flight", "Requests in the engine now.", registry=self.registry)
        self.capacity = Gauge("ttsc_worker_capacity", "Most requests admitted at once.", registry=self.registry)
        self.ready = Gauge("ttsc_worker_ready", "1 when the worker accepts requests.", registry=self.registry)
        self.voice_load = Histogram(
            "ttsc_worker_voice_load_seconds", "Time to load a catalog voice, per voice and result.",
            ["voice", "result"], buckets=_LATENCY_BUCKETS, registry=self.registry,
        )
        self.voice_load_waits = Counter(
            "ttsc_worker_voice_load_waits", "Requests that waited for a voice load (theirs or one before them).",
            registry=self.registry,
        )
        self.loaded_voices = Gauge("ttsc_worker_loaded_voices", "Catalog voices held now.", registry=self.registry)
        self.voices_loading = Gauge("ttsc_worker_voices_loading", "Catalog voices loading now.",
                                    registry=self.registry)
        self.max_loaded_voices = Gauge("ttsc_worker_max_loaded_voices", "Most catalog voices held at once.",
                                       registry=self.registry)
        self.max_batch = Gauge("ttsc_worker_max_batch", "Most requests the engine serves at once (1: one at a "
                               "time).", registry=self.registry)
        self.batch_occupancy = Gauge("ttsc_worker_batch_occupancy", "Requests in the engine's batch now.",
                                     registry=self.registry)
        self.batch_size = Histogram(
            "ttsc_worker_batch_size", "Requests in each batched engine step (batching workers only).",
            buckets=_BATCH_BUCKETS, registry=self.registry,
        )

    def bind(
        self,
        queue_depth: Callable[[], float],
        in_flight: Callable[[], float],
        capacity: Callable[[], float],
        ready: Callable[[], float],
        loaded_voices: Callable[[], float] = lambda: 0.0,
        voices_loading: Callable[[], float] = lambda: 0.0,
        max_loaded_voices: Callable[[], float] = lambda: 0.0,
        max_batch: Callable[[], float] = lambda: 1.0,
        reference_clips: Callable[[], dict[str, float]] = lambda: {"found": 0.0, "missed": 0.0},
    ) -> None:
        """Gauges (and the engine's counters) read live values at scrape time instead of being kept in step by
        hand."""
        self.registry.register(_ReadCounters(
            "ttsc_worker_reference_clips", "gpt-sovits: requests whose reference clip's features were found kept, "
            "or missed (a new clip or prompt text, a clip changed on disk, evicted, or from other weights).", "result",
            reference_clips))
        self.max_batch.set_function(max_batch)
        self.batch_occupancy.set_function(in_flight)  # the requests in the engine are its batch
        self.loaded_voices.set_function(loaded_voices)
        self.voices_loading.set_function(voices_loading)
        self.max_loaded_voices.set_function(max_loaded_voices)
        self.queue_depth.set_function(queue_depth)
        self.in_flight.set_function(in_flight)
        self.capacity.set_function(capacity)
        self.ready.set_function(ready)
