"""The cluster benchmark's plots: latency CDFs, throughput and p99 against offered load, throughput against
workers, and a killed worker's run over time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .loadgen import Run


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# One colour per balancer in every plot.
COLOURS = {"least-work": "tab:blue", "least-loaded": "tab:orange", "power-of-two": "tab:green",
           "round-robin": "tab:red", "nginx-least_conn": "tab:purple", "nginx-round-robin": "tab:brown"}


def _cdf(ax: Any, values: list[float], **kw: Any) -> None:
    v = sorted(values)
    ax.plot(v, [(i + 1) / len(v) for i in range(len(v))], **kw)


def _ok_latencies(run: Run) -> list[float]:
    return [s.latency for s in run.samples if 200 <= s.status < 300]


def plot_cluster(report: dict[str, Any], policies: dict[str, Run], policies_ideal: list[float],
                 hetero: dict[str, Run], hetero_ideal: list[float], killed: dict[str, Run], out: Path) -> list[str]:
    plt = _plt()
    written = []

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    for ax, runs, ideal, title in (
        (axes[0], policies, policies_ideal, f"open loop, {report['policies']['load']:.0%} load, "
                                             f"{report['workers']} equal workers"),
        (axes[1], hetero, hetero_ideal, f"one worker {report['heterogeneous']['slow_factor']:g}x slower"),
    ):
        for name, run in runs.items():
            if _ok_latencies(run):
                _cdf(ax, _ok_latencies(run), label=name, color=COLOURS.get(name))
        _cdf(ax, ideal, label="ideal central queue", color="black", linestyle="--")
        ax.set(title=title, xlabel="latency (s)", ylabel="fraction of requests")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    written.append(_save(plt, fig, out / "cluster-latency-cdf.png"))

    sweep = report["load_sweep"]
    loads = sorted(sweep, key=float)
    names = [k for k in sweep[loads[0]] if k != "ideal_central_queue"]
    fig, (tp, p99) = plt.subplots(1, 2, figsize=(12, 4.2))
    # Each load's actual offer (its seeded arrivals), the same for every balancer at that load.
    offered = [sweep[x][names[0]]["offered_rate"] for x in loads]
    for name in [*names, "ideal_central_queue"]:
        style = ({"color": "black", "linestyle": "--"} if name == "ideal_central_queue"
                 else {"marker": "o", "color": COLOURS.get(name)})
        label = "ideal central queue" if name == "ideal_central_queue" else name
        if name != "ideal_central_queue":
            tp.plot(offered, [sweep[x][name]["throughput"] for x in loads], label=label, **style)
        p99.plot(offered, [sweep[x][name]["p99_s"] for x in loads], label=label, **style)
    tp.plot(offered, offered, color="grey", linestyle=":", label="offered")
    tp.set(title="throughput vs offered load", xlabel="offered load (req/s)", ylabel="answered (req/s)")
    p99.set(title="p99 latency vs offered load", xlabel="offered load (req/s)", ylabel="p99 latency (s)")
    for ax in (tp, p99):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    written.append(_save(plt, fig, out / "cluster-load.png"))

    scaling = report["scaling"]
    ks = sorted(scaling, key=int)
    fig, ax = plt.subplots(figsize=(6, 4.2))
    ax.plot([int(k) for k in ks], [scaling[k]["throughput"] for k in ks], marker="o", label="behind the router")
    ax.plot([int(k) for k in ks], [scaling[k]["ideal"] for k in ks], color="black", linestyle="--",
            label="ideal: N x one worker")
    ax.set(title="peak throughput vs workers", xlabel="workers", ylabel="req/s")
    ax.set_xticks([int(k) for k in ks])
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    written.append(_save(plt, fig, out / "cluster-scaling.png"))

    fig, axes = plt.subplots(1, len(killed), figsize=(6 * len(killed), 4.2), squeeze=False)
    for ax, (name, run) in zip(axes[0], killed.items(), strict=True):
        ok = [s for s in run.samples if 200 <= s.status < 300]
        bad = [s for s in run.samples if not 200 <= s.status < 300]
        ax.scatter([s.offered_at for s in ok], [s.latency for s in ok], s=6, label="answered")
        ax.scatter([s.offered_at for s in bad], [s.latency for s in bad], s=14, marker="x", color="red",
                   label=f"failed ({len(bad)})")
        ax.axvline(run.extra["killed_at_s"], color="black", linestyle=":", label="worker killed")
        ax.set(title=f"worker killed mid-run: {name}", xlabel="sent at (s)", ylabel="latency (s)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    written.append(_save(plt, fig, out / "cluster-killed.png"))
    return written


def _save(plt: Any, fig: Any, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


VOICE_RUN_COLOURS = {"one-voice": "black", "voice-aware": "tab:blue", "voice-blind": "tab:red"}


def plot_voices(report: dict[str, Any], runs: dict[str, Run], path: Path) -> str:
    """Latency CDF of each run; each run's voice loads per 1000 answered requests (bars, labelled with the share
    that waited for a load); loads so far and requests admitted across the workers over the measured phase."""
    plt = _plt()
    fig, ((cdf, bars), (loads, admitted)) = plt.subplots(2, 2, figsize=(12, 8))
    for name, run in runs.items():
        if _ok_latencies(run):
            _cdf(cdf, _ok_latencies(run), label=name, color=VOICE_RUN_COLOURS.get(name))
    cdf.set(title=f"latency, {report['load']:.0%} load, {len(report['voices'])} voices on {report['workers']} "
                  f"workers x {report['max_loaded_voices']}", xlabel="latency (s)", ylabel="fraction of requests")
    rows = report["runs"]
    names = list(rows)
    heights = [rows[n]["loads_per_1000"] or 0.0 for n in names]
    drawn = bars.bar(names, heights, color=[VOICE_RUN_COLOURS.get(n, "grey") for n in names])
    for rect, n in zip(drawn, names, strict=True):
        share = rows[n]["waited_share"]
        bars.annotate("" if share is None else f"{share:.1%} waited", (rect.get_x() + rect.get_width() / 2,
                      rect.get_height()), ha="center", va="bottom", fontsize=8)
    bars.set(title=f"voice loads ({report['voice_load_seconds']:g} s each)", ylabel="loads per 1000 answered requests")
    for name, series in report["timeline"].items():
        points = series["points"]
        colour = VOICE_RUN_COLOURS.get(name)
        loads.plot([p[0] for p in points], [p[1] for p in points], label=name, color=colour)
        admitted.plot([p[0] for p in points], [p[2] for p in points], label=name, color=colour)
    loads.set(title="voice loads so far, measured phase", xlabel="seconds", ylabel="loads")
    admitted.set(title="requests admitted across the workers (queued + running)", xlabel="seconds",
                 ylabel="requests")
    for ax in (cdf, bars, loads, admitted):
        ax.grid(alpha=0.3)
    for ax in (cdf, loads, admitted):
        ax.legend(fontsize=8)
    return _save(plt, fig, path)


def plot_batching(report: dict[str, Any], path: Path) -> str:
    """T2S tokens/s, requests/s and p95 latency against concurrency, batching off and on."""
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for mode, colour in (("off", "tab:grey"), ("on", "tab:blue")):
        runs = report["runs"][mode]
        levels = [r["concurrency"] for r in runs]
        for ax, key in zip(axes, ("t2s_tokens_per_s", "requests_per_s", "p95_s"), strict=True):
            ax.plot(levels, [r[key] for r in runs], marker="o", label=f"batching {mode}", color=colour)
    for ax, title in zip(axes, ("T2S tokens/s", "requests/s", "p95 latency (s)"), strict=True):
        ax.set(title=title, xlabel="concurrent requests")
        ax.legend()
    fig.suptitle(f"GPT-SoVITS worker on {report['device']}: T2S {report['t2s_layers']} layers, "
                 f"max_batch {report['max_batch']}")
    return _save(plt, fig, path)
