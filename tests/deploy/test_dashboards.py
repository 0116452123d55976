"""The Grafana dashboards in helm/tts-cluster/dashboards/: well-formed, and asking only for metrics that really exist.

Every PromQL query of every dashboard (panel targets and templating variables) is parsed with promql-parser and
may only name a metric that a real router or worker exposes at /metrics after some traffic, sample name for
sample name (`..._total`, `..._bucket`, `..._sum`, `..._count`, `..._created`). The one exception is NVIDIA's
dcgm-exporter, a separate exporter the GPU dashboard reads: its `DCGM_FI_*` metrics are allowed without being
exported by our processes, and only those listed in DCGM_FIELDS (fields of dcgm-exporter's default counters), so
a misspelt one still fails.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import promql_parser
import pytest
from prometheus_client.parser import text_string_to_metric_families

from support.params import tts_params
from support.paths import DASHBOARDS
from tts_cli.processes import ServiceProcess

DASHBOARD_DIR = DASHBOARDS
DASHBOARD_FILES = tuple(sorted(p.name for p in DASHBOARD_DIR.glob("*.json")))

# Not ours: NVIDIA dcgm-exporter's metrics (fields of its default-counters.csv). The only names a dashboard
# may use without our router or workers exporting them.
EXTERNAL_PREFIX = "DCGM_FI_"
DCGM_FIELDS = frozenset(
    """
    DCGM_FI_DEV_GPU_UTIL DCGM_FI_DEV_MEM_COPY_UTIL DCGM_FI_DEV_ENC_UTIL DCGM_FI_DEV_DEC_UTIL
    DCGM_FI_DEV_FB_USED DCGM_FI_DEV_FB_FREE DCGM_FI_DEV_POWER_USAGE DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION
    DCGM_FI_DEV_GPU_TEMP DCGM_FI_DEV_MEMORY_TEMP DCGM_FI_DEV_SM_CLOCK DCGM_FI_DEV_MEM_CLOCK
    DCGM_FI_DEV_XID_ERRORS DCGM_FI_DEV_PCIE_REPLAY_COUNTER
""".split()
)


# -- metric names, from promql-parser's syntax tree ---------------------------------------------------------
# What Grafana puts in place of its variables before the query reaches Prometheus: a duration for the interval
# variables (they stand in ranges, `[$__rate_interval]`), a number for their `_s` / `_ms` forms, and for any other
# variable the dashboards' "All" value `.*` (they stand in label matchers, `namespace=~"$namespace"`). A variable
# elsewhere, where `.*` is no PromQL, makes the query fail to parse.
GRAFANA_VALUES = {
    "__interval": "1m",
    "__rate_interval": "5m",
    "__range": "1h",
    "__interval_ms": "60000",
    "__range_s": "3600",
    "__range_ms": "3600000",
}
_GRAFANA_VAR = re.compile(r"\$(\w+)|\$\{(\w+)(?::\w+)?\}|\[\[(\w+)(?::\w+)?\]\]")


def grafana_to_promql(expr: str) -> str:
    """The query with Grafana's variables replaced by values they could take (`$1`, a label_replace group, stays)."""

    def value(m: re.Match[str]) -> str:
        name = next(g for g in m.groups() if g)
        return m.group() if name.isdigit() else GRAFANA_VALUES.get(name, ".*")

    return _GRAFANA_VAR.sub(value, expr)


def selector_names(sel: promql_parser.VectorSelector) -> set[str]:
    """The metric names a vector selector selects: `name{...}`, or `{__name__="name"}` (also in `or` groups).
    A selector that names no metric exactly (`{__name__=~"ttsc_.*"}`, `{job="x"}`) cannot be checked: ValueError."""
    if sel.name:
        return {sel.name}
    names: set[str] = set()
    for group in (sel.matchers.matchers, *sel.matchers.or_matchers):
        exact = {m.value for m in group if m.name == "__name__" and m.op == promql_parser.MatchOp.Equal}
        if group and not exact:
            raise ValueError(f"selector {sel} names no metric exactly, which cannot be checked")
        names |= exact
    return names


def metric_names(expr: str) -> set[str]:
    """Every metric name a Grafana PromQL query selects, wherever its vector selectors sit (binary operands,
    aggregations and their parameters, call arguments, matrix selectors, subqueries, parentheses, unary minus).
    A query that is not PromQL raises promql-parser's ValueError."""
    names: set[str] = set()
    if not expr.strip():
        return names  # a variable listing label values of every metric

    def visit(node: promql_parser.Expr) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            names.update(selector_names(node))

    promql_parser.walk(promql_parser.parse(grafana_to_promql(expr)), pre_visit=visit)
    return names


_LABEL_VALUES = re.compile(
    r"^label_values\((?:(?P<expr>.+),\s*)?(?P<label>[A-Za-z_][A-Za-z0-9_]*)\)\s*$", re.S
)
_QUERY_RESULT = re.compile(r"^query_result\((?P<expr>.+)\)\s*$", re.S)


def variable_expr(query: str) -> str:
    """The PromQL inside a Grafana Prometheus variable query ('' when it names no metric); any other query is
    returned as it is, for the PromQL parser to judge."""
    query = query.strip()
    if m := _LABEL_VALUES.match(query):
        return m.group("expr") or ""
    if m := _QUERY_RESULT.match(query):
        return m.group("expr")
    if query.startswith(("label_names(", "metrics(")):
        return ""
    return query


# -- the dashboards ------------------------------------------------------------------------------------------
def load(name: str) -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads((DASHBOARD_DIR / name).read_text(encoding="utf-8"))
    return dashboard


def all_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel, including those folded inside collapsed rows."""
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels", []))


def queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, PromQL) for every panel target and every query variable of a dashboard."""
    for panel in all_panels(dashboard["panels"]):
        for t in panel.get("targets", []):
            yield f"panel {panel.get('title')!r} ({t.get('refId')})", t.get("expr", "")
    for var in dashboard["templating"]["list"]:
        if var.get("type") == "query":
            q = var.get("query")
            q = q.get("query", "") if isinstance(q, dict) else q
            yield f"variable ${var['name']}", variable_expr(q)


def query_metric_names(file: str, dashboard: dict[str, Any]) -> Iterator[tuple[str, set[str]]]:
    """(where, metric names) for every query of a dashboard; one that does not parse fails the test, naming the
    dashboard, the panel or variable, and the query."""
    for place, expr in queries(dashboard):
        try:
            names = metric_names(expr)
        except ValueError as e:
            pytest.fail(f"{file}: {place}: not a PromQL query this test can check ({e}):\n  {expr}", pytrace=False)
        yield place, names


@pytest.fixture(scope="module")
def dashboards() -> dict[str, dict[str, Any]]:
    return {name: load(name) for name in DASHBOARD_FILES}


@pytest.mark.unit
def test_metric_name_extractor() -> None:
    assert metric_names('sum by (le) (rate(a_bucket{x="y"}[5m])) / on (job) group_left (worker) b') == {
        "a_bucket",
        "b",
    }
    assert metric_names('label_replace(c, "w", "$1", "pod", "(.*)")') == {"c"}
    assert metric_names('{__name__="d"}') == {"d"}
    assert metric_names('{__name__="d1", job="x" or __name__="d2"}') == {"d1", "d2"}
    assert metric_names("max_over_time(e[1h:5m])") == {"e"}
    assert metric_names("0.95") == set()
    assert metric_names('count_values("version", f) or vector(0)') == {"f"}
    assert metric_names("-(g offset 5m) > bool 1 unless topk(scalar(h), i)") == {"g", "h", "i"}
    assert metric_names("rate(colon:recorded:rule[5m])") == {"colon:recorded:rule"}
    # Grafana's variables, in ranges and in label matchers, become values Prometheus would get.
    assert metric_names(
        'histogram_quantile(0.95, sum by (le) (rate(j_bucket{namespace=~"$namespace", w=~"${worker:regex}"}'
        "[$__rate_interval]))) + max_over_time(k[${__range}]) * [[__range_s]]"
    ) == {"j_bucket", "k"}
    assert metric_names("") == set()
    with pytest.raises(ValueError, match="unknown function"):
        metric_names("rates(x_total[5m])")
    with pytest.raises(ValueError, match="unclosed left parenthesis"):
        metric_names("sum(rate(x_total[5m])")
    with pytest.raises(ValueError, match="names no metric exactly"):
        metric_names('{__name__=~"ttsc_.*"}')
    assert (
        variable_expr('label_values(ttsc_worker_info{namespace=~"$namespace"}, worker)')
        == 'ttsc_worker_info{namespace=~"$namespace"}'
    )
    assert variable_expr("label_values(namespace)") == ""
    assert variable_expr("query_result(topk(3, l))") == "topk(3, l)"


@pytest.mark.unit
@pytest.mark.parametrize("name", DASHBOARD_FILES)
def test_dashboard_is_well_formed(name: str) -> None:
    d = load(name)  # valid JSON, or this raises
    where = f"{name}:"
    assert isinstance(d.get("title"), str) and d["title"].strip(), f"{where} no title"
    assert isinstance(d.get("uid"), str) and re.fullmatch(r"[A-Za-z0-9_-]{1,40}", d["uid"]), (
        f"{where} bad uid"
    )
    assert isinstance(d.get("schemaVersion"), int) and d["schemaVersion"] >= 36, f"{where} schemaVersion"
    variables = {v["name"]: v for v in d["templating"]["list"]}
    ds_vars = [
        v for v in variables.values() if v.get("type") == "datasource" and v.get("query") == "prometheus"
    ]
    assert [v["name"] for v in ds_vars] == ["datasource"], f"{where} needs one Prometheus datasource variable"

    panels = list(all_panels(d["panels"]))
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), f"{where} duplicate panel ids"
    charts = [p for p in panels if p.get("type") != "row"]
    assert charts, f"{where} no panels"
    for p in charts:
        title = p.get("title")
        assert isinstance(title, str) and title.strip(), f"{where} panel {p['id']} has no title"
        assert p.get("type") in {"timeseries", "stat", "gauge", "table", "bargauge", "text"}, (where, title)
        assert {"h", "w", "x", "y"} <= set(p.get("gridPos", {})), f"{where} panel {title!r} has no gridPos"
        assert p.get("datasource", {}).get("uid") == "${datasource}", f"{where} panel {title!r} datasource"
        targets = p.get("targets") or []
        assert targets, f"{where} panel {title!r} has no targets"
        refs = [t.get("refId") for t in targets]
        assert len(set(refs)) == len(refs) and all(refs), f"{where} panel {title!r} refIds {refs}"
        for t in targets:
            assert t.get("expr", "").strip(), f"{where} panel {title!r} target {t.get('refId')} has no expr"
            assert t.get("datasource", {}).get("uid") == "${datasource}", (
                f"{where} panel {title!r} target datasource"
            )

    # Every $variable a query or variable uses is defined here (Grafana's own $__... aside).
    for place, expr in queries(d):
        for var in re.findall(r"\$\{?(\w+)", expr):
            assert var.startswith("__") or var.isdigit() or var in variables, (
                f"{where} {place} uses undefined ${var}"
            )


@pytest.mark.unit
@pytest.mark.parametrize("name", DASHBOARD_FILES)
def test_dashboard_queries_parse(name: str) -> None:
    for _place, _names in query_metric_names(name, load(name)):
        pass


@pytest.mark.unit
def test_dashboard_uids_are_unique(dashboards: dict[str, dict[str, Any]]) -> None:
    assert len(dashboards) >= 3, f"dashboards missing from {DASHBOARD_DIR}: {sorted(dashboards)}"
    uids = [d["uid"] for d in dashboards.values()]
    assert len(uids) == len(set(uids)), uids


# -- the live check ------------------------------------------------------------------------------------------
class _FailingWorker:
    """A stand-in worker that answers /stats as a healthy one (a copy of a real worker's) but hangs up on
    every /tts without answering: the router retries elsewhere and, with --eject-after 1, ejects it, so the
    retry counter and the labelled ejection counter get samples too."""

    def __init__(self, stats: dict[str, Any]) -> None:
        body = json.dumps({**stats, "worker_id": "failing-stub", "queue_depth": 0, "in_flight": 0}).encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = urlsplit(self.path).path
                if path in ("/stats", "/readyz", "/healthz"):
                    payload = body if path == "/stats" else b'{"status":"ready"}'
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                else:
                    self.close_connection = True  # /tts: drop the connection, no status line

            do_POST = do_GET

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def sample_names(text: str) -> tuple[set[str], set[str]]:
    """(names of the samples a /metrics page has, names of the families it declares without any sample)."""
    samples: set[str] = set()
    empty: set[str] = set()
    for family in text_string_to_metric_families(text):
        samples.update(s.name for s in family.samples)
        if not family.samples:
            empty.add(family.name)
    return samples, empty


def _healthy_workers(client: httpx.Client) -> int:
    try:
        return int(client.get("/concurrent_stats").json()["gpu_count"])
    except httpx.HTTPError:
        return -1  # not listening yet


@pytest.mark.process
def test_dashboard_queries_name_only_exported_metrics(
    spawn_worker: Callable[..., ServiceProcess],
    spawn_router: Callable[..., ServiceProcess],
    dashboards: dict[str, dict[str, Any]],
    tmp_path: Path,
) -> None:
    # The router starts while the workers do (it learns them from its workers file, re-read every second): the
    # process starts are most of this test's time.
    workers_file = tmp_path / "workers.txt"
    workers_file.write_text("")
    keys = tmp_path / "keys.txt"  # with a key, the per-key panels have series too
    keys.write_text("sk-dashboards-0123456789\n")
    router = spawn_router(
        args=("--workers-file", str(workers_file), "--policy", "round-robin", "--eject-after", "1",
              "--api-keys-file", str(keys)),
        wait_ready=False,
    )
    catalog = tmp_path / "voices.yaml"
    catalog.write_text("voices:\n  - name: narrator\n    synthetic: {tone_hz: 440}\n")
    fast = ("--num-warmup", "0", "--synthetic-base-seconds", "0.01", "--synthetic-seconds-per-char", "0.0002",
            "--voices", str(catalog))
    with ThreadPoolExecutor(2) as pool:
        workers = list(pool.map(lambda _: spawn_worker(*fast), range(2)))
    stub = _FailingWorker(httpx.get(f"{workers[0].url}/stats", timeout=5).json())
    try:
        workers_file.write_text("".join(f"{u}\n" for u in (workers[0].url, workers[1].url, stub.url)))
        with httpx.Client(base_url=router.url, timeout=10,
                          headers={"Authorization": "Bearer sk-dashboards-0123456789"}) as client:
            deadline = time.monotonic() + 30
            while _healthy_workers(client) < 3:  # both workers and the stub take requests
                assert router.proc.poll() is None, router.log_text()
                assert time.monotonic() < deadline, (
                    f"router never saw 3 healthy workers:\n{router.log_text()}"
                )
                time.sleep(0.05)
            # Round-robin over three: the stub is hit within the first three requests, fails, is ejected and
            # the request retried on a real worker. Keep going (bounded) until the ejection shows in /metrics.
            for n in range(12):
                params: dict[str, Any] = tts_params(streaming_mode="true") if n == 1 else tts_params()
                r = client.get("/tts", params=params)
                assert r.status_code == 200, r.text
                if n >= 2 and "ttsc_router_ejections_total{" in client.get("/metrics").text:
                    break
            for worker in workers:  # a catalog voice on each worker: the voice panels' series
                voiced = httpx.post(f"{worker.url}/tts", json=tts_params(voice="narrator"), timeout=10)
                assert voiced.status_code == 200, voiced.text
            bad_params: dict[str, Any] = tts_params(text_lang="xx")
            bad = client.get("/tts", params=bad_params)
            assert bad.status_code == 400, bad.text
            pages = {"router": client.get("/metrics").text}
        for i, w in enumerate(workers):
            pages[f"worker {i}"] = httpx.get(f"{w.url}/metrics", timeout=5).text
    finally:
        stub.stop()

    exported: set[str] = set()
    declared_empty: set[str] = set()
    for page in pages.values():
        names, empty = sample_names(page)
        exported |= names
        declared_empty |= empty
    # The traffic reached what the dashboards chart: the retry, ejection and both latency paths.
    for name in (
        "ttsc_router_ejections_total",
        "ttsc_router_retries_total",
        "ttsc_router_upstream_seconds_bucket",
        "ttsc_worker_time_to_first_chunk_seconds_bucket",
        "ttsc_worker_info",
    ):
        assert name in exported, f"{name} has no sample after the test's traffic"

    missing: list[str] = []
    for file, dashboard in dashboards.items():
        for place, names in query_metric_names(file, dashboard):
            for name in sorted(names):
                if name in exported or name in DCGM_FIELDS:
                    continue
                if name.startswith(EXTERNAL_PREFIX):
                    why = "is not a dcgm-exporter field this test knows (DCGM_FIELDS)"
                elif any(name.startswith(f) for f in declared_empty):
                    why = "is declared by /metrics but had no sample after this test's traffic"
                else:
                    why = "is exported by neither the router nor a worker"
                missing.append(f"{file}: {place}: {name} {why}")
    assert not missing, "dashboard queries name metrics nothing exports:\n" + "\n".join(missing)
