"""The Grafana dashboards in dashboards/: well-formed, and asking only for metrics that really exist.

Every PromQL query of every dashboard (panel targets and templating variables) may only name a metric that
a real router or worker exposes at /metrics after some traffic, sample name for sample name (`..._total`,
`..._bucket`, `..._sum`, `..._count`, `..._created`). The one exception is NVIDIA's dcgm-exporter, a
separate exporter the GPU dashboard reads: its `DCGM_FI_*` metrics are allowed without being exported by
our processes, and only those listed in DCGM_FIELDS (fields of dcgm-exporter's default counters), so a
misspelt one still fails.
"""

from __future__ import annotations

import importlib.util
import json
import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import tts_params

DASHBOARD_DIR = Path(__file__).resolve().parents[1] / "dashboards"
DASHBOARD_FILES = ("tts-cluster-overview.json", "tts-cluster-workers.json", "tts-cluster-gpu.json")

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


# -- a small PromQL metric-name extractor --------------------------------------------------------------------
AGGREGATIONS = frozenset(
    """
    sum min max avg group stddev stdvar count count_values bottomk topk quantile limitk limit_ratio
""".split()
)
FUNCTIONS = frozenset(
    """
    abs absent absent_over_time acos acosh asin asinh atan atanh avg_over_time ceil changes clamp clamp_max
    clamp_min cos cosh count_over_time day_of_month day_of_week day_of_year days_in_month deg delta deriv
    double_exponential_smoothing end exp floor histogram_avg histogram_count histogram_fraction
    histogram_quantile histogram_stddev histogram_stdvar histogram_sum holt_winters hour idelta increase info
    irate label_join label_replace last_over_time ln log10 log2 mad_over_time max_over_time min_over_time
    minute month pi predict_linear present_over_time quantile_over_time rad rate resets round scalar sgn sin
    sinh sort sort_by_label sort_by_label_desc sort_desc sqrt start stddev_over_time stdvar_over_time
    sum_over_time tan tanh time timestamp vector year
""".split()
)
# Followed by a parenthesised list of label names, not of expressions.
LABEL_LIST_KEYWORDS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
KEYWORDS = LABEL_LIST_KEYWORDS | {"and", "or", "unless", "bool", "offset", "atan2", "inf", "nan"}

_TOKEN = re.compile(
    r"""
      (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)   # label values, label_replace arguments
    | (?P<var>\$\{[^}]*\}|\$\w+|\[\[[^\]]*\]\])                 # Grafana variables
    | (?P<range>\[[^\]]*\])                                     # [5m], [$__rate_interval], subqueries [1h:5m]
    | (?P<number>(?:\d|\.\d)[\w.]*)                             # 0.95, 1e3, 5m after offset
    | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
    | (?P<space>\s+)
    | (?P<punct>.)
    """,
    re.VERBOSE | re.DOTALL,
)


class PromQLNameError(ValueError):
    pass


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects: identifiers outside braces and label lists that are neither
    functions, aggregations nor keywords. An unknown function or a selector by `__name__` raises
    PromQLNameError."""
    tokens = [(m.lastgroup, m.group()) for m in _TOKEN.finditer(expr)]
    significant = [(kind, text) for kind, text in tokens if kind not in ("space", "string", "var", "number")]
    names: set[str] = set()
    braces = 0
    skip_parens = 0  # depth inside a `by (...)`-style label list
    i = 0
    while i < len(significant):
        kind, text = significant[i]
        following = significant[i + 1][1] if i + 1 < len(significant) else ""
        if kind == "punct":
            if text == "{":
                braces += 1
            elif text == "}":
                braces -= 1
            elif skip_parens and text == "(":
                skip_parens += 1
            elif skip_parens and text == ")":
                skip_parens -= 1
        elif kind == "ident" and braces:
            if text == "__name__":
                raise PromQLNameError(f"selects metrics by __name__, which cannot be checked: {expr}")
        elif kind == "ident" and skip_parens:
            pass
        elif kind == "ident" and text in LABEL_LIST_KEYWORDS:
            if following == "(":
                skip_parens = 1
                i += 1
        elif kind == "ident" and (text in KEYWORDS or text in AGGREGATIONS):
            pass  # an aggregation may be followed by its `by (...)` before its parentheses
        elif kind == "ident" and following == "(":
            if text not in FUNCTIONS and text not in AGGREGATIONS:
                raise PromQLNameError(f"unknown PromQL function {text!r} in: {expr}")
        elif kind == "ident":
            names.add(text)
        i += 1
    if braces or skip_parens:
        raise PromQLNameError(f"unbalanced braces or parentheses in: {expr}")
    return names


_LABEL_VALUES = re.compile(
    r"^label_values\((?:(?P<expr>.+),\s*)?(?P<label>[A-Za-z_][A-Za-z0-9_]*)\)\s*$", re.S
)
_QUERY_RESULT = re.compile(r"^query_result\((?P<expr>.+)\)\s*$", re.S)


def variable_expr(query: str) -> str:
    """The PromQL inside a Grafana Prometheus variable query ('' when it names no metric)."""
    query = query.strip()
    if m := _LABEL_VALUES.match(query):
        return m.group("expr") or ""
    if m := _QUERY_RESULT.match(query):
        return m.group("expr")
    if query.startswith(("label_names(", "metrics(")):
        return ""
    raise PromQLNameError(f"unrecognised variable query: {query}")


# -- the dashboards ------------------------------------------------------------------------------------------
def load(name: str) -> dict[str, Any]:
    return json.loads((DASHBOARD_DIR / name).read_text(encoding="utf-8"))


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


@pytest.fixture(scope="module")
def dashboards() -> dict[str, dict[str, Any]]:
    return {name: load(name) for name in DASHBOARD_FILES}


def test_metric_name_extractor() -> None:
    assert metric_names(
        'histogram_quantile(0.95, sum by (worker, le) (rate(ttsc_a_bucket{namespace=~"$namespace", le!="x"}'
        '[$__rate_interval]) * on (job, instance) group_left (worker, engine) ttsc_info{worker=~"$worker"}))'
    ) == {"ttsc_a_bucket", "ttsc_info"}
    assert metric_names(
        'label_replace(DCGM_FI_DEV_GPU_UTIL{pod=~"$worker"}, "worker", "$1", "pod", "(.+)") > bool 10 '
        "or sum without (gpu) (up offset 5m) / ignoring (x) count(bare_metric) or vector(0) "
        "unless on() absent(m2)"
    ) == {"DCGM_FI_DEV_GPU_UTIL", "up", "bare_metric", "m2"}
    assert metric_names("sum(rate(x_total[5m:1m])) by (status) / 1e3 + max_over_time(y[${__range}])") == {
        "x_total",
        "y",
    }
    assert metric_names("rate(colon:recorded:rule[5m])") == {"colon:recorded:rule"}
    with pytest.raises(PromQLNameError, match="unknown PromQL function 'rates'"):
        metric_names("rates(x_total[5m])")
    with pytest.raises(PromQLNameError, match="__name__"):
        metric_names('{__name__=~"ttsc_.*"}')
    assert (
        variable_expr('label_values(ttsc_worker_info{namespace=~"$namespace"}, worker)')
        == 'ttsc_worker_info{namespace=~"$namespace"}'
    )
    assert variable_expr("label_values(namespace)") == ""


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


def test_dashboard_uids_are_unique(dashboards: dict[str, dict[str, Any]]) -> None:
    uids = [d["uid"] for d in dashboards.values()]
    assert len(uids) == len(set(uids)), uids


def test_dashboards_match_their_generator() -> None:
    """dashboards/generate.py writes the JSON files; a hand edit there is lost at the next generation."""
    spec = importlib.util.spec_from_file_location("dashboards_generate", DASHBOARD_DIR / "generate.py")
    assert spec and spec.loader
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    assert set(gen.DASHBOARDS) == set(DASHBOARD_FILES)
    for name, build in gen.DASHBOARDS.items():
        assert (DASHBOARD_DIR / name).read_text(encoding="utf-8") == gen.render(build), (
            f"{name} differs from what dashboards/generate.py writes: edit the generator and run it"
        )


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


def test_dashboard_queries_name_only_exported_metrics(
    spawn_worker, spawn_router, dashboards, tmp_path
) -> None:
    # The router starts while the workers do (it learns them from its workers file, re-read every second): the
    # process starts are most of this test's time.
    workers_file = tmp_path / "workers.txt"
    workers_file.write_text("")
    router = spawn_router(
        args=("--workers-file", str(workers_file), "--policy", "round-robin", "--eject-after", "1"),
        wait_ready=False,
    )
    fast = ("--num-warmup", "0", "--synthetic-base-seconds", "0.01", "--synthetic-seconds-per-char", "0.0002")
    with ThreadPoolExecutor(2) as pool:
        workers = list(pool.map(lambda _: spawn_worker(*fast), range(2)))
    stub = _FailingWorker(httpx.get(f"{workers[0].url}/stats", timeout=5).json())
    try:
        workers_file.write_text("".join(f"{u}\n" for u in (workers[0].url, workers[1].url, stub.url)))
        with httpx.Client(base_url=router.url, timeout=10) as client:
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
                params = tts_params(streaming_mode="true") if n == 1 else tts_params()
                r = client.get("/tts", params=params)
                assert r.status_code == 200, r.text
                if n >= 2 and "ttsc_router_ejections_total{" in client.get("/metrics").text:
                    break
            bad = client.get("/tts", params=tts_params(text_lang="xx"))
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
        for place, expr in queries(dashboard):
            for name in sorted(metric_names(expr)):
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
