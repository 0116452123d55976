"""Writes the Grafana dashboards of tts-cluster (tts-cluster-*.json beside this file).

The JSON files are the deliverable (import them in Grafana, or load them with Grafana's dashboard
sidecar); this script is how they are made, so that their ~85 queries share one set of selectors and joins:

    python dashboards/generate.py          # rewrite the JSON files
    python dashboards/generate.py --check  # exit 1 if a JSON file differs from what this script writes

Label conventions the queries rely on:

- Worker metrics carry no worker label of their own (one process, one registry): only `ttsc_worker_info`
  has `worker`, `engine` and `device`. Every per-worker query joins on the scrape target,
  `* on (job, instance) group_left (worker) ttsc_worker_info`, which works wherever Prometheus scrapes the
  workers, in Kubernetes or not.
- `namespace` is the target label Prometheus' Kubernetes discovery (PodMonitor / ServiceMonitor) adds.
  Outside Kubernetes it is absent, and the "All" value `.*` still matches.
- The router's per-worker series (`ttsc_router_worker_*`, `ttsc_router_upstream_seconds`,
  `ttsc_router_requests_total`) label the worker with the name discovery gave it: the pod name under
  Kubernetes discovery (the same as the worker's own `worker` label: `TTSC_WORKER_ID` is the pod name), the
  URL under static discovery.
- NVIDIA's dcgm-exporter labels each GPU with the `pod` and `namespace` using it (Kubernetes pod mapping on,
  scraped with `honorLabels: true` so they are not renamed `exported_pod` / `exported_namespace`). The GPU
  dashboard copies `pod` into `worker` with `label_replace` and joins `on (namespace, worker)` with
  `ttsc_worker_info`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Optional

HERE = Path(__file__).resolve().parent
DS = {"type": "prometheus", "uid": "${datasource}"}
NS = 'namespace=~"$namespace"'
RATE = "[$__rate_interval]"
RANGE = "[$__range]"
QUANTILES = (("p50", "0.5"), ("p95", "0.95"), ("p99", "0.99"))

# Colours Grafana knows by name.
GREEN, ORANGE, RED, BLUE = "green", "orange", "red", "blue"

Panel = dict[str, Any]


# -- selectors and joins -------------------------------------------------------------------------------------
def info() -> str:
    """The chosen workers' identity series: one per scrape target, value 1."""
    return f'ttsc_worker_info{{{NS}, worker=~"$worker"}}'


def by_worker(expr: str, labels: str = "worker") -> str:
    """Give a worker-side series its worker's labels (joined on the scrape target)."""
    return f"{expr} * on (job, instance) group_left ({labels}) {info()}"


def worker_quantile(q: str, hist: str, group: str = "worker") -> str:
    """Quantile of one of the worker's own histograms, per worker (`group`: the worker labels to keep)."""
    buckets = by_worker(f"rate({hist}_bucket{{{NS}}}{RATE})", group)
    return f"histogram_quantile({q}, sum by ({group}, le) ({buckets}))"


def dcgm(metric: str) -> str:
    """A DCGM series of the chosen workers' pods, with its `pod` copied into `worker`."""
    return f'label_replace({metric}{{{NS}, pod=~"$worker"}}, "worker", "$1", "pod", "(.+)")'


def dcgm_joined(metric: str) -> str:
    """A DCGM series of a tts-cluster worker's pod, with the worker's engine; other pods' GPUs drop out."""
    return (
        f"{dcgm(metric)} * on (namespace, worker) group_left (engine) "
        f"max by (namespace, worker, engine) ({info()})"
    )


def queue_depth_by_worker(group: str = "worker") -> str:
    return f"max by ({group}) ({by_worker(f'ttsc_worker_queue_depth{{{NS}}}')})"


# -- panel builders ------------------------------------------------------------------------------------------
class Layout:
    """Hands out panel ids and grid positions, left to right, top to bottom (Grafana's grid is 24 wide)."""

    def __init__(self) -> None:
        self.next_id = 1
        self.x = 0
        self.y = 0
        self.row_h = 0

    def place(self, w: int, h: int) -> tuple[int, dict[str, int]]:
        if self.x + w > 24:
            self.newline()
        pos = {"h": h, "w": w, "x": self.x, "y": self.y}
        self.x += w
        self.row_h = max(self.row_h, h)
        pid = self.next_id
        self.next_id += 1
        return pid, pos

    def newline(self) -> None:
        if self.x:
            self.y += self.row_h
        self.x = 0
        self.row_h = 0


def target(
    expr: str,
    legend: str = "",
    ref: str = "A",
    *,
    instant: bool = False,
    table: bool = False,
    hide: bool = False,
) -> dict[str, Any]:
    t: dict[str, Any] = {
        "datasource": DS,
        "editorMode": "code",
        "expr": expr,
        "legendFormat": legend or "__auto",
        "range": not instant,
        "instant": instant,
        "refId": ref,
    }
    if table:
        t["format"] = "table"
    if hide:
        t["hide"] = True
    return t


def thresholds(*steps: tuple[Optional[float], str]) -> dict[str, Any]:
    return {"mode": "absolute", "steps": [{"color": c, "value": v} for v, c in steps]}


def refs(queries: list[tuple[str, str]], **kw: Any) -> list[dict[str, Any]]:
    return [target(expr, legend, chr(ord("A") + i), **kw) for i, (expr, legend) in enumerate(queries)]


def timeseries(
    lay: Layout,
    title: str,
    description: str,
    queries: list[tuple[str, str]],
    *,
    unit: str = "short",
    w: int = 12,
    h: int = 8,
    min_: Optional[float] = 0,
    max_: Optional[float] = None,
    stack: bool = False,
    bars: bool = False,
    overrides: Optional[list[dict[str, Any]]] = None,
    calcs: tuple[str, ...] = ("mean", "max", "lastNotNull"),
    steps: Optional[dict[str, Any]] = None,
) -> Panel:
    pid, pos = lay.place(w, h)
    defaults: dict[str, Any] = {
        "color": {"mode": "palette-classic"},
        "custom": {
            "axisBorderShow": False,
            "axisCenteredZero": False,
            "axisColorMode": "text",
            "axisLabel": "",
            "axisPlacement": "auto",
            "barAlignment": 0,
            "drawStyle": "bars" if bars else "line",
            "fillOpacity": 60 if bars else (25 if stack else 10),
            "gradientMode": "none",
            "hideFrom": {"legend": False, "tooltip": False, "viz": False},
            "insertNulls": False,
            "lineInterpolation": "linear",
            "lineWidth": 1,
            "pointSize": 4,
            "scaleDistribution": {"type": "linear"},
            "showPoints": "never",
            "spanNulls": False,
            "stacking": {"group": "A", "mode": "normal" if stack else "none"},
            "thresholdsStyle": {"mode": "off"},
        },
        "mappings": [],
        "thresholds": steps or thresholds((None, GREEN)),
        "unit": unit,
    }
    if min_ is not None:
        defaults["min"] = min_
    if max_ is not None:
        defaults["max"] = max_
    return {
        "datasource": DS,
        "description": description,
        "fieldConfig": {"defaults": defaults, "overrides": overrides or []},
        "gridPos": pos,
        "id": pid,
        "options": {
            "legend": {
                "calcs": list(calcs),
                "displayMode": "table",
                "placement": "bottom",
                "showLegend": True,
            },
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
        "targets": refs(queries),
        "title": title,
        "type": "timeseries",
    }


def stat(
    lay: Layout,
    title: str,
    description: str,
    queries: list[tuple[str, str]],
    *,
    unit: str = "short",
    w: int = 3,
    h: int = 4,
    steps: Optional[dict[str, Any]] = None,
    mappings: Optional[list[dict[str, Any]]] = None,
    decimals: Optional[int] = None,
    graph: bool = True,
    text_mode: str = "auto",
    instant: bool = False,
) -> Panel:
    pid, pos = lay.place(w, h)
    defaults: dict[str, Any] = {
        "color": {"mode": "thresholds"},
        "mappings": mappings or [],
        "thresholds": steps or thresholds((None, BLUE)),
        "unit": unit,
    }
    if decimals is not None:
        defaults["decimals"] = decimals
    return {
        "datasource": DS,
        "description": description,
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "gridPos": pos,
        "id": pid,
        "options": {
            "colorMode": "background",
            "graphMode": "area" if graph else "none",
            "justifyMode": "auto",
            "orientation": "auto",
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "showPercentChange": False,
            "textMode": text_mode,
            "wideLayout": True,
        },
        "targets": refs(queries, instant=instant),
        "title": title,
        "type": "stat",
    }


def gauge(
    lay: Layout,
    title: str,
    description: str,
    queries: list[tuple[str, str]],
    *,
    unit: str,
    min_: float,
    max_: float,
    steps: dict[str, Any],
    w: int = 6,
    h: int = 8,
) -> Panel:
    pid, pos = lay.place(w, h)
    return {
        "datasource": DS,
        "description": description,
        "fieldConfig": {
            "defaults": {
                "color": {"mode": "thresholds"},
                "mappings": [],
                "max": max_,
                "min": min_,
                "thresholds": steps,
                "unit": unit,
            },
            "overrides": [],
        },
        "gridPos": pos,
        "id": pid,
        "options": {
            "minVizHeight": 75,
            "minVizWidth": 75,
            "orientation": "auto",
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "showThresholdLabels": False,
            "showThresholdMarkers": True,
            "sizing": "auto",
        },
        "targets": refs(queries),
        "title": title,
        "type": "gauge",
    }


def table(
    lay: Layout,
    title: str,
    description: str,
    keys: dict[str, str],
    columns: list[dict[str, Any]],
    *,
    sort_by: str,
    w: int = 24,
    h: int = 8,
) -> Panel:
    """One row per worker: each column is an instant query with the same labels (`keys`: label -> column
    title), merged on those labels.

    columns: {"name", "expr", "unit", optional "decimals", "mappings", "steps" (cell colours)}."""
    pid, pos = lay.place(w, h)
    overrides = []
    index: dict[str, int] = {label: i for i, label in enumerate(keys)}
    for i, col in enumerate(columns):
        ref = chr(ord("A") + i)
        props: list[dict[str, Any]] = [
            {"id": "displayName", "value": col["name"]},
            {"id": "unit", "value": col.get("unit", "short")},
        ]
        if "decimals" in col:
            props.append({"id": "decimals", "value": col["decimals"]})
        if "mappings" in col:
            props.append({"id": "mappings", "value": col["mappings"]})
        if "steps" in col:
            props.append({"id": "thresholds", "value": col["steps"]})
            props.append({"id": "custom.cellOptions", "value": {"type": "color-background", "mode": "basic"}})
        overrides.append({"matcher": {"id": "byName", "options": f"Value #{ref}"}, "properties": props})
        index[f"Value #{ref}"] = len(keys) + i
    return {
        "datasource": DS,
        "description": description,
        "fieldConfig": {
            "defaults": {
                "color": {"mode": "thresholds"},
                "custom": {"align": "auto", "cellOptions": {"type": "auto"}, "inspect": False},
                "mappings": [],
                "thresholds": thresholds((None, GREEN)),
            },
            "overrides": overrides,
        },
        "gridPos": pos,
        "id": pid,
        "options": {
            "cellHeight": "sm",
            "footer": {"countRows": False, "fields": "", "reducer": ["sum"], "show": False},
            "showHeader": True,
            "sortBy": [{"desc": True, "displayName": sort_by}],
        },
        "targets": [
            target(c["expr"], "", chr(ord("A") + i), instant=True, table=True) for i, c in enumerate(columns)
        ],
        "title": title,
        "transformations": [
            {"id": "merge", "options": {}},
            {
                "id": "organize",
                "options": {
                    "excludeByName": {"Time": True},
                    "indexByName": index,
                    "renameByName": dict(keys),
                },
            },
        ],
        "type": "table",
    }


def row(lay: Layout, title: str) -> Panel:
    lay.newline()
    pid, pos = lay.place(24, 1)
    lay.newline()
    return {"collapsed": False, "gridPos": pos, "id": pid, "panels": [], "title": title, "type": "row"}


def axis_right(ref: str, unit: str) -> dict[str, Any]:
    """Override: the series of query `ref` on a right-hand axis in their own unit, drawn dashed."""
    return {
        "matcher": {"id": "byFrameRefID", "options": ref},
        "properties": [
            {"id": "unit", "value": unit},
            {"id": "custom.axisPlacement", "value": "right"},
            {"id": "custom.lineStyle", "value": {"dash": [10, 10], "fill": "dash"}},
        ],
    }


def quantile_queries(expr_for_q: Any, legend_prefix: str = "") -> list[tuple[str, str]]:
    return [(expr_for_q(q), f"{legend_prefix}{name}") for name, q in QUANTILES]


# -- variables and the dashboard envelope --------------------------------------------------------------------
def datasource_var() -> dict[str, Any]:
    return {
        "current": {},
        "hide": 0,
        "includeAll": False,
        "label": "Data source",
        "multi": False,
        "name": "datasource",
        "options": [],
        "query": "prometheus",
        "refresh": 1,
        "regex": "",
        "skipUrlSync": False,
        "type": "datasource",
    }


def query_var(name: str, label: str, query: str, description: str) -> dict[str, Any]:
    return {
        "allValue": ".*",
        "current": {},
        "datasource": DS,
        "definition": query,
        "description": description,
        "hide": 0,
        "includeAll": True,
        "label": label,
        "multi": True,
        "name": name,
        "options": [],
        "query": query,
        "refresh": 2,
        "regex": "",
        "skipUrlSync": False,
        "sort": 1,
        "type": "query",
    }


NAMESPACE_DESC = (
    "Kubernetes namespace (the `namespace` target label). All also matches series scraped "
    "outside Kubernetes, which have no namespace."
)
WORKER_DESC = (
    "Worker id (`ttsc_worker_info{worker}`: the pod name under the operator, host:port otherwise). "
    "The router labels workers by pod name under Kubernetes discovery, by URL under static discovery."
)


def dashboard(
    uid: str,
    title: str,
    description: str,
    tags: list[str],
    panels: list[Panel],
    variables: list[dict[str, Any]],
) -> dict[str, Any]:
    return {
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "description": description,
        "editable": True,
        "fiscalYearStartMonth": 0,
        "graphTooltip": 1,
        "id": None,
        "links": [
            {
                "asDropdown": True,
                "icon": "external link",
                "includeVars": True,
                "keepTime": True,
                "tags": ["tts-cluster"],
                "targetBlank": False,
                "title": "tts-cluster",
                "tooltip": "",
                "type": "dashboards",
                "url": "",
            }
        ],
        "panels": panels,
        "refresh": "30s",
        "schemaVersion": 39,
        "tags": ["tts-cluster", *tags],
        "templating": {"list": [datasource_var(), *variables]},
        "time": {"from": "now-1h", "to": "now"},
        "timepicker": {},
        "timezone": "",
        "title": title,
        "uid": uid,
        "version": 1,
        "weekStart": "",
    }


# -- 1. cluster overview -------------------------------------------------------------------------------------
def overview() -> dict[str, Any]:
    lay = Layout()
    req = f"ttsc_router_requests_total{{{NS}}}"
    ok = f'ttsc_router_requests_total{{{NS}, status=~"2.."}}'
    counted = f'ttsc_router_requests_total{{{NS}, status=~"2..|5..|499"}}'

    def router_quantile(hist: str, window: str = RATE) -> Any:
        return lambda q: f"histogram_quantile({q}, sum by (le) (rate({hist}_bucket{{{NS}}}{window})))"

    e2e = router_quantile("ttsc_router_request_seconds")
    ttfb = router_quantile("ttsc_router_time_to_first_byte_seconds")
    latency_steps = thresholds((None, GREEN), (2, ORANGE), (5, RED))
    ttfb_steps = thresholds((None, GREEN), (1, ORANGE), (3, RED))
    mode_mappings = [
        {
            "type": "range",
            "options": {"from": 2, "to": 1e9, "result": {"color": GREEN, "index": 0, "text": "concurrent"}},
        },
        {
            "type": "value",
            "options": {
                "1": {"color": ORANGE, "index": 1, "text": "single"},
                "0": {"color": RED, "index": 2, "text": "unavailable"},
            },
        },
        {
            "type": "special",
            "options": {
                "match": "null+nan",
                "result": {"color": RED, "index": 3, "text": "unavailable (no router)"},
            },
        },
    ]
    healthy_steps = thresholds((None, RED), (1, ORANGE), (2, GREEN))
    worst_router = f"min(ttsc_router_healthy_workers{{{NS}}})"

    panels: list[Panel] = [
        stat(
            lay,
            "Requests/s",
            "Finished /tts requests per second at the routers, every status (`ttsc_router_requests_total`).",
            [(f"sum(rate({req}{RATE}))", "")],
            unit="reqps",
        ),
        stat(
            lay,
            "Success rate",
            "Over the time range: 2xx / (2xx + 5xx + 499 client gone), as "
            "/concurrent_stats counts; 4xx client errors count in neither.",
            [(f"sum(increase({ok}{RANGE})) / sum(increase({counted}{RANGE}))", "")],
            unit="percentunit",
            decimals=2,
            steps=thresholds((None, RED), (0.95, ORANGE), (0.99, GREEN)),
            graph=False,
            instant=True,
            mappings=[
                {
                    "type": "special",
                    "options": {"match": "nan", "result": {"index": 0, "text": "no requests"}},
                }
            ],
        ),
        stat(
            lay,
            "p95 latency",
            "95th percentile of end-to-end /tts latency at the routers (`ttsc_router_request_seconds`).",
            [(e2e("0.95"), "")],
            unit="s",
            steps=latency_steps,
        ),
        stat(
            lay,
            "p95 first byte",
            "95th percentile from request to the first audio byte sent "
            "(`ttsc_router_time_to_first_byte_seconds`).",
            [(ttfb("0.95"), "")],
            unit="s",
            steps=ttfb_steps,
        ),
        stat(
            lay,
            "Healthy workers",
            "Workers taking requests, as the router that sees fewest reports "
            "(`ttsc_router_healthy_workers`, min over router replicas).",
            [(worst_router, "")],
            w=2,
            steps=healthy_steps,
            decimals=0,
        ),
        stat(
            lay,
            "Mode",
            "The routers' fallback mode from `ttsc_router_healthy_workers` (worst router): "
            "concurrent with 2+ healthy workers, single with 1, unavailable with 0 (then /tts answers 503).",
            [(worst_router, "")],
            steps=healthy_steps,
            mappings=mode_mappings,
            graph=False,
            text_mode="value",
        ),
        stat(
            lay,
            "Retries/s",
            "Requests re-sent to another worker after a failure before any byte "
            "(`ttsc_router_retries_total`).",
            [(f"sum(rate(ttsc_router_retries_total{{{NS}}}{RATE}))", "")],
            unit="reqps",
            w=2,
            steps=thresholds((None, GREEN), (0.1, ORANGE), (1, RED)),
        ),
        stat(
            lay,
            "Ejections",
            "Workers ejected after consecutive failures, over the time range "
            "(`ttsc_router_ejections_total`; the series exists once a first ejection happened).",
            [(f"sum(increase(ttsc_router_ejections_total{{{NS}}}{RANGE})) or vector(0)", "")],
            w=2,
            decimals=0,
            steps=thresholds((None, GREEN), (1, ORANGE), (5, RED)),
            graph=False,
            instant=True,
        ),
        stat(
            lay,
            "Truncated streams",
            "Responses cut off after bytes had reached the client, over the time range "
            "(`ttsc_router_truncated_streams_total`).",
            [(f"sum(increase(ttsc_router_truncated_streams_total{{{NS}}}{RANGE})) or vector(0)", "")],
            decimals=0,
            steps=thresholds((None, GREEN), (1, RED)),
            graph=False,
            instant=True,
        ),
    ]
    lay.newline()
    panels += [
        timeseries(
            lay,
            "Requests/s by status",
            "Finished /tts requests per second at the routers by HTTP status. "
            "499: the client left before an answer; 502: every worker tried failed; 503: all full or "
            "none healthy.",
            [(f"sum by (status) (rate({req}{RATE}))", "{{status}}")],
            unit="reqps",
            stack=True,
        ),
        timeseries(
            lay,
            "Success rate",
            "2xx / (2xx + 5xx + 499) per rate window (4xx client errors excluded).",
            [(f"sum(rate({ok}{RATE})) / sum(rate({counted}{RATE}))", "success rate")],
            unit="percentunit",
            max_=1,
            min_=None,
            steps=thresholds((None, RED), (0.95, ORANGE), (0.99, GREEN)),
        ),
        timeseries(
            lay,
            "End-to-end latency",
            "/tts latency at the routers, from request to the last byte "
            "(`ttsc_router_request_seconds`), all statuses.",
            quantile_queries(e2e),
            unit="s",
        ),
        timeseries(
            lay,
            "Time to first audio byte",
            "From request to the first audio byte sent to the client "
            "(`ttsc_router_time_to_first_byte_seconds`): what a streaming client waits.",
            quantile_queries(ttfb),
            unit="s",
        ),
        timeseries(
            lay,
            "Retries and truncated streams",
            "Retries: requests re-sent to another worker before any "
            "byte. Truncated: responses cut off after bytes had reached the client (never retried).",
            [
                (f"sum(rate(ttsc_router_retries_total{{{NS}}}{RATE}))", "retries/s"),
                (f"sum(rate(ttsc_router_truncated_streams_total{{{NS}}}{RATE}))", "truncated/s"),
            ],
            unit="reqps",
        ),
        timeseries(
            lay,
            "Ejections by worker",
            "Workers ejected after consecutive failures "
            "(`ttsc_router_ejections_total`); a worker is re-admitted as soon as a poll succeeds.",
            [(f"sum by (worker) (increase(ttsc_router_ejections_total{{{NS}}}{RATE}))", "{{worker}}")],
            bars=True,
            calcs=("sum",),
        ),
        timeseries(
            lay,
            "Healthy workers",
            "Workers taking requests as each router sees them: the fewest and the "
            "most over router replicas. 2+: concurrent, 1: single, 0: unavailable.",
            [(worst_router, "fewest (worst router)"), (f"max(ttsc_router_healthy_workers{{{NS}}})", "most")],
            w=8,
            steps=thresholds((None, RED), (1, ORANGE), (2, GREEN)),
            calcs=("min", "lastNotNull"),
        ),
        timeseries(
            lay,
            "Worker load",
            "Across the workers' own gauges: requests waiting for an engine, being "
            "synthesized, and the most the workers admit at once (`max_queue_size` each).",
            [
                (f"sum(ttsc_worker_queue_depth{{{NS}}})", "queued"),
                (f"sum(ttsc_worker_in_flight{{{NS}}})", "in flight"),
                (f"sum(ttsc_worker_capacity{{{NS}}})", "capacity"),
            ],
            w=10,
        ),
        gauge(
            lay,
            "Worker occupancy",
            "Admitted requests (queued + in flight) over capacity, across workers. "
            "At 100% routers hold requests up to capacity_wait, then answer 503.",
            [
                (
                    f"sum(ttsc_worker_queue_depth{{{NS}}} + ttsc_worker_in_flight{{{NS}}}) / "
                    f"sum(ttsc_worker_capacity{{{NS}}})",
                    "",
                )
            ],
            unit="percentunit",
            min_=0,
            max_=1,
            steps=thresholds((None, GREEN), (0.7, ORANGE), (0.9, RED)),
        ),
        timeseries(
            lay,
            "Audio produced",
            "Seconds of audio the workers produce per second of wall time "
            "(`ttsc_worker_audio_seconds_total`): above 1, the cluster speaks faster than real time.",
            [(f"sum(rate(ttsc_worker_audio_seconds_total{{{NS}}}{RATE}))", "audio s/s")],
        ),
        timeseries(
            lay,
            "Requests routed per worker",
            "Finished /tts requests per second by the worker that "
            "answered (router's label: pod name under Kubernetes discovery, URL under static); "
            'refused requests (`worker="none"`) left out. Shows how evenly the policy spreads load.',
            [
                (
                    f'sum by (worker) (rate(ttsc_router_requests_total{{{NS}, worker!="none"}}{RATE}))',
                    "{{worker}}",
                )
            ],
            unit="reqps",
            stack=True,
        ),
    ]
    return dashboard(
        "tts-cluster-overview",
        "tts-cluster / Overview",
        "The cluster as clients see it: router throughput, success, latency, retries, ejections and "
        "fallback mode.",
        ["overview"],
        panels,
        [
            query_var(
                "namespace",
                "Namespace",
                "label_values(ttsc_router_healthy_workers, namespace)",
                NAMESPACE_DESC,
            )
        ],
    )


# -- 2. workers ----------------------------------------------------------------------------------------------
def workers() -> dict[str, Any]:
    lay = Layout()
    ids = "worker, engine, device"

    def per_worker_table(expr: str, agg: str = "max") -> str:
        return f"{agg} by ({ids}) ({by_worker(expr, ids)})"

    ready_mappings = [
        {
            "type": "value",
            "options": {
                "1": {"color": GREEN, "index": 0, "text": "ready"},
                "0": {"color": RED, "index": 1, "text": "not ready"},
            },
        }
    ]
    router_ws = f'{NS}, worker=~"$worker"'
    failures = f'rate(ttsc_worker_requests_total{{{NS}, status!~"2.."}}{RATE})'
    processed = f"rate(ttsc_worker_requests_total{{{NS}}}{RATE})"
    occupancy = (
        f"(ttsc_worker_queue_depth{{{NS}}} + ttsc_worker_in_flight{{{NS}}}) / ttsc_worker_capacity{{{NS}}}"
    )

    def router_quantile(q: str) -> str:
        return (
            f"histogram_quantile({q}, sum by (worker, le) "
            f"(rate(ttsc_router_upstream_seconds_bucket{{{router_ws}}}{RATE})))"
        )

    panels: list[Panel] = [
        table(
            lay,
            "Workers",
            "One row per worker, now (rates over the rate window).",
            {"worker": "Worker", "engine": "Engine", "device": "Device"},
            [
                {
                    "name": "Ready",
                    "expr": per_worker_table(f"ttsc_worker_ready{{{NS}}}"),
                    "mappings": ready_mappings,
                    "steps": thresholds((None, RED), (1, GREEN)),
                },
                {
                    "name": "Queued",
                    "expr": per_worker_table(f"ttsc_worker_queue_depth{{{NS}}}"),
                    "decimals": 0,
                },
                {
                    "name": "In flight",
                    "expr": per_worker_table(f"ttsc_worker_in_flight{{{NS}}}"),
                    "decimals": 0,
                },
                {
                    "name": "Capacity",
                    "expr": per_worker_table(f"ttsc_worker_capacity{{{NS}}}"),
                    "decimals": 0,
                },
                {
                    "name": "Processed/s",
                    "expr": per_worker_table(
                        f'rate(ttsc_worker_requests_total{{{NS}, status=~"2.."}}{RATE})', "sum"
                    ),
                    "unit": "reqps",
                },
                {
                    "name": "Failures/s",
                    "expr": per_worker_table(
                        f'rate(ttsc_worker_requests_total{{{NS}, status!~"2.."}}{RATE})', "sum"
                    ),
                    "unit": "reqps",
                    "steps": thresholds((None, "transparent"), (0.01, RED)),
                },
                {
                    "name": "p95 processing",
                    "expr": worker_quantile("0.95", "ttsc_worker_processing_seconds", ids),
                    "unit": "s",
                },
                {
                    "name": "Audio s/s",
                    "expr": per_worker_table(f"rate(ttsc_worker_audio_seconds_total{{{NS}}}{RATE})", "sum"),
                    "decimals": 2,
                },
            ],
            sort_by="Queued",
        ),
    ]
    panels.append(row(lay, "Load"))
    panels += [
        timeseries(
            lay,
            "Queue depth",
            "Admitted requests waiting for the engine (`ttsc_worker_queue_depth`).",
            [(queue_depth_by_worker(), "{{worker}}")],
            w=8,
        ),
        timeseries(
            lay,
            "In flight",
            "Requests the engine is synthesizing now, 0 or 1 (`ttsc_worker_in_flight`).",
            [(f"max by (worker) ({by_worker(f'ttsc_worker_in_flight{{{NS}}}')})", "{{worker}}")],
            w=8,
        ),
        timeseries(
            lay,
            "Occupancy",
            "Admitted (queued + in flight) over capacity (`ttsc_worker_capacity`, "
            "max_queue_size). At 100% the worker answers 503 with Retry-After.",
            [
                (
                    f"max by (worker) ({by_worker(occupancy)})",
                    "{{worker}}",
                )
            ],
            w=8,
            unit="percentunit",
            max_=1,
            steps=thresholds((None, GREEN), (0.7, ORANGE), (0.9, RED)),
        ),
        stat(
            lay,
            "Ready",
            "`ttsc_worker_ready`: 1 once the engine is loaded and warmed, 0 while draining.",
            [(f"max by (worker) ({by_worker(f'ttsc_worker_ready{{{NS}}}')})", "{{worker}}")],
            w=16,
            h=5,
            mappings=ready_mappings,
            steps=thresholds((None, RED), (1, GREEN)),
            graph=False,
            text_mode="value_and_name",
        ),
        timeseries(
            lay,
            "Capacity",
            "Most requests a worker admits at once (`ttsc_worker_capacity`).",
            [(f"max by (worker) ({by_worker(f'ttsc_worker_capacity{{{NS}}}')})", "{{worker}}")],
            w=8,
            h=5,
            calcs=("lastNotNull",),
        ),
    ]
    panels.append(row(lay, "Latency"))
    panels += [
        timeseries(
            lay,
            title,
            f"{description} (`{metric}`).",
            [(worker_quantile(q, metric), f"{{{{worker}}}} {name}") for name, q in QUANTILES],
            w=8,
            unit="s",
        )
        for title, description, metric in (
            ("Processing time", "Engine time per request", "ttsc_worker_processing_seconds"),
            ("Queue wait", "Time admitted requests waited for the engine", "ttsc_worker_queue_wait_seconds"),
            ("Time to first chunk", "From admission to the first audio chunk",
             "ttsc_worker_time_to_first_chunk_seconds"),
        )
    ]
    panels.append(row(lay, "Throughput"))
    panels += [
        timeseries(
            lay,
            "Processed/s by status",
            "Finished /tts requests per second at each worker by HTTP status (`ttsc_worker_requests_total`).",
            [
                (
                    f"sum by (worker, status) ({by_worker(processed)})",
                    "{{worker}} {{status}}",
                )
            ],
            w=8,
            unit="reqps",
            stack=True,
        ),
        timeseries(
            lay,
            "Failures/s by status",
            "Non-2xx answers per second at each worker: 400 invalid or failed "
            "synthesis, 503 full or draining, 504 past the deadline.",
            [(f"sum by (worker, status) ({by_worker(failures)})", "{{worker}} {{status}}")],
            w=8,
            unit="reqps",
            bars=True,
        ),
        timeseries(
            lay,
            "Audio seconds per second",
            "Seconds of audio produced per second of wall time "
            "(`ttsc_worker_audio_seconds_total`): the worker's real-time factor under load.",
            [
                (
                    f"sum by (worker) ({by_worker(f'rate(ttsc_worker_audio_seconds_total{{{NS}}}{RATE})')})",
                    "{{worker}}",
                )
            ],
            w=8,
        ),
    ]
    panels.append(row(lay, "The router's view"))
    panels += [
        timeseries(
            lay,
            "Healthy (router view)",
            "`ttsc_router_worker_healthy`: 1 when the router sends the "
            "worker requests (answering polls, ready, not ejected, not draining); min over router replicas.",
            [(f"min by (worker) (ttsc_router_worker_healthy{{{router_ws}}})", "{{worker}}")],
            w=8,
            max_=1,
            calcs=("min", "lastNotNull"),
            steps=thresholds((None, RED), (1, GREEN)),
        ),
        timeseries(
            lay,
            "Polled queue depth (router view)",
            "The queue depth each worker reported at the "
            "router's last /stats poll (`ttsc_router_worker_queue_depth`), max over routers; and this "
            "router's own requests in flight to it (`ttsc_router_worker_in_flight`, summed over routers).",
            [
                (f"max by (worker) (ttsc_router_worker_queue_depth{{{router_ws}}})", "{{worker}} queued"),
                (
                    f"sum by (worker) (ttsc_router_worker_in_flight{{{router_ws}}})",
                    "{{worker}} router in flight",
                ),
            ],
            w=8,
        ),
        timeseries(
            lay,
            "Upstream latency (router view)",
            "From the router sending a request to the worker's "
            "response headers (`ttsc_router_upstream_seconds`).",
            [(router_quantile(q), f"{{{{worker}}}} {name}") for name, q in QUANTILES],
            w=8,
            unit="s",
        ),
        timeseries(
            lay,
            "Requests routed by status",
            "Finished /tts requests per second by the worker that "
            "answered and status, at the routers (`ttsc_router_requests_total`).",
            [
                (
                    f"sum by (worker, status) (rate(ttsc_router_requests_total{{{router_ws}}}{RATE}))",
                    "{{worker}} {{status}}",
                )
            ],
            w=24,
            unit="reqps",
            stack=True,
        ),
    ]
    return dashboard(
        "tts-cluster-workers",
        "tts-cluster / Workers",
        "Per worker: queue, capacity, engine latency, throughput, failures and readiness from the workers' "
        "own /metrics, and the router's view of each worker.",
        ["workers"],
        panels,
        [
            query_var("namespace", "Namespace", "label_values(ttsc_worker_info, namespace)", NAMESPACE_DESC),
            query_var(
                "worker",
                "Worker",
                'label_values(ttsc_worker_info{namespace=~"$namespace"}, worker)',
                WORKER_DESC,
            ),
        ],
    )


# -- 3. GPU --------------------------------------------------------------------------------------------------
def gpu() -> dict[str, Any]:
    lay = Layout()
    util = dcgm_joined("DCGM_FI_DEV_GPU_UTIL")
    used = dcgm_joined("DCGM_FI_DEV_FB_USED")
    free = dcgm_joined("DCGM_FI_DEV_FB_FREE")
    power = dcgm_joined("DCGM_FI_DEV_POWER_USAGE")
    gpu_legend = "{{worker}} (GPU {{gpu}} on {{Hostname}})"
    used_pct = f"100 * sum by (worker) ({used}) / (sum by (worker) ({used}) + sum by (worker) ({free}))"
    util_steps = thresholds((None, BLUE), (30, GREEN), (95, ORANGE))
    mem_steps = thresholds((None, GREEN), (80, ORANGE), (95, RED))
    queued_by_ns_worker = queue_depth_by_worker("namespace, worker")

    panels: list[Panel] = [
        stat(
            lay,
            "Worker GPUs",
            "GPUs that dcgm-exporter maps to a tts-cluster worker pod. 0 with GPU workers "
            "running: dcgm-exporter is not scraped, runs without Kubernetes pod mapping, or its `pod` / "
            "`namespace` labels were renamed (`exported_pod`: set honorLabels: true on its ServiceMonitor).",
            [(f"count({util}) or vector(0)", "")],
            w=6,
            decimals=0,
            graph=False,
            steps=thresholds((None, ORANGE), (1, GREEN)),
        ),
        stat(
            lay,
            "Idle GPUs with queued work",
            "Workers with requests waiting while their GPU is below 10% "
            "busy: a stuck engine, or a worker bound by something other than its GPU.",
            [
                (
                    f"count(({queued_by_ns_worker} > 0) and on (namespace, worker) "
                    f"(avg by (namespace, worker) ({util}) < 10)) or vector(0)",
                    "",
                )
            ],
            w=6,
            decimals=0,
            steps=thresholds((None, GREEN), (1, RED)),
        ),
        stat(
            lay,
            "Power",
            "Total board power of the workers' GPUs (`DCGM_FI_DEV_POWER_USAGE`).",
            [(f"sum({power})", "")],
            w=6,
            unit="watt",
        ),
        stat(
            lay,
            "Framebuffer used",
            "Total GPU memory used on the workers' GPUs (`DCGM_FI_DEV_FB_USED`, MiB).",
            [(f"sum({used})", "")],
            w=6,
            unit="mbytes",
        ),
        table(
            lay,
            "GPU per worker",
            "Each worker's GPU now, joined by pod (dcgm-exporter's `pod` = the "
            "worker id), next to the worker's queue.",
            {"worker": "Worker"},
            [
                {
                    "name": "GPU util",
                    "expr": f"avg by (worker) ({util})",
                    "unit": "percent",
                    "decimals": 0,
                    "steps": util_steps,
                },
                {
                    "name": "Memory used",
                    "expr": used_pct,
                    "unit": "percent",
                    "decimals": 1,
                    "steps": mem_steps,
                },
                {"name": "FB used", "expr": f"sum by (worker) ({used})", "unit": "mbytes"},
                {"name": "FB free", "expr": f"sum by (worker) ({free})", "unit": "mbytes"},
                {"name": "Power", "expr": f"sum by (worker) ({power})", "unit": "watt"},
                {"name": "Queued", "expr": queue_depth_by_worker(), "decimals": 0},
                {
                    "name": "In flight",
                    "expr": f"max by (worker) ({by_worker(f'ttsc_worker_in_flight{{{NS}}}')})",
                    "decimals": 0,
                },
            ],
            sort_by="GPU util",
        ),
        gauge(
            lay,
            "GPU utilisation",
            "`DCGM_FI_DEV_GPU_UTIL` per worker (average over its GPUs).",
            [(f"avg by (worker) ({util})", "{{worker}}")],
            unit="percent",
            min_=0,
            max_=100,
            steps=util_steps,
            w=12,
        ),
        gauge(
            lay,
            "GPU memory used",
            "`DCGM_FI_DEV_FB_USED` / (used + `DCGM_FI_DEV_FB_FREE`) per worker.",
            [(used_pct, "{{worker}}")],
            unit="percent",
            min_=0,
            max_=100,
            steps=mem_steps,
            w=12,
        ),
        timeseries(
            lay,
            "GPU utilisation and queue depth",
            "GPU busy % (solid, left axis) next to the worker's "
            "queue depth (dashed, right axis), per worker: a full queue on a busy GPU needs more workers; "
            "a full queue on an idle GPU is a stuck engine.",
            [(util, gpu_legend), (queue_depth_by_worker(), "{{worker}} queued")],
            w=24,
            unit="percent",
            max_=100,
            overrides=[axis_right("B", "short")],
        ),
        timeseries(
            lay,
            "GPU utilisation",
            "`DCGM_FI_DEV_GPU_UTIL`, per worker's GPU.",
            [(util, gpu_legend)],
            unit="percent",
            max_=100,
        ),
        timeseries(
            lay,
            "Worker queue depth",
            "`ttsc_worker_queue_depth` per worker, beside its GPU's load.",
            [(queue_depth_by_worker(), "{{worker}}")],
        ),
        timeseries(
            lay,
            "Framebuffer used",
            "`DCGM_FI_DEV_FB_USED` (MiB), per worker's GPU.",
            [(used, gpu_legend)],
            w=8,
            unit="mbytes",
        ),
        timeseries(
            lay,
            "Framebuffer free",
            "`DCGM_FI_DEV_FB_FREE` (MiB), per worker's GPU.",
            [(free, gpu_legend)],
            w=8,
            unit="mbytes",
        ),
        timeseries(
            lay,
            "Power usage",
            "`DCGM_FI_DEV_POWER_USAGE` (W), per worker's GPU.",
            [(power, gpu_legend)],
            w=8,
            unit="watt",
        ),
    ]
    return dashboard(
        "tts-cluster-gpu",
        "tts-cluster / GPU",
        "NVIDIA dcgm-exporter GPU metrics of the worker pods (joined on pod = worker id), next to each "
        "worker's queue. Needs dcgm-exporter with Kubernetes pod mapping, scraped with honorLabels: true.",
        ["gpu"],
        panels,
        [
            query_var("namespace", "Namespace", "label_values(ttsc_worker_info, namespace)", NAMESPACE_DESC),
            query_var(
                "worker",
                "Worker",
                'label_values(ttsc_worker_info{namespace=~"$namespace"}, worker)',
                WORKER_DESC,
            ),
        ],
    )


DASHBOARDS = {
    "tts-cluster-overview.json": overview,
    "tts-cluster-workers.json": workers,
    "tts-cluster-gpu.json": gpu,
}


def render(build: Any) -> str:
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if a JSON file is not what this script writes"
    )
    args = parser.parse_args(argv)
    stale = []
    for name, build in DASHBOARDS.items():
        path = HERE / name
        text = render(build)
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
    if stale:
        print(f"out of date (run python dashboards/generate.py): {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
