"""`tts-cluster`: one command, a subcommand per component."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Optional

from .flags import add_settings_flags, settings_from

# Each command's line in `tts-cluster --help`.
SUMMARIES = {
    "up": "a local cluster: N workers and a router on this machine, supervised",
    "worker": "serve one TTS engine on one device (GPT-SoVITS api_v2 contract)",
    "router": "the public entry: balance /tts over workers, retry, stream, /concurrent_stats",
    "operator": "the kopf operator for TTSCluster resources",
    "voices": "prepare the voice directory, or check a voice catalog",
    "bench": "benchmarks: print a table, write JSON to bench/results/",
    "healthcheck": "probe the health endpoint of the server a container runs (the images' HEALTHCHECK)",
}

WORKER_EPILOG = """\
Every flag can also come from an environment variable (shown with each flag) or, for GPT-SoVITS keys and the
seed's enable_concurrent_tts / num_gpus / max_queue_size / num_warmup, from the tts_infer.yaml given by -c.
Precedence: flag > env > tts_infer.yaml > default.

examples:
  tts-cluster worker                                  # bundled English Piper voice on CPU, port 9880
  tts-cluster worker -a 0.0.0.0 -p 9881 --device cuda:1 --max-queue-size 10
  tts-cluster worker --engine synthetic --synthetic-seconds-per-char 0.01   # load tests only
"""


def _worker_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from tts_worker.settings import WorkerSettings

    p = sub.add_parser(
        "worker",
        help=SUMMARIES["worker"],
        description="One worker process = one engine on one device, with a bounded queue, behind the "
        "GPT-SoVITS api_v2 HTTP contract (/tts, /control, /set_*), plus /healthz, /readyz, /stats, /metrics.",
        epilog=WORKER_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_settings_flags(
        p,
        WorkerSettings,
        "TTSC_",
        short={"bind_addr": "-a", "port": "-p", "tts_config": "-c"},
        skip=("gpt_sovits_config", "admin_token"),  # secrets never on a command line, where `ps` shows them
    )
    p.set_defaults(func=_run_worker)


# What the `worker` extra brings (pyproject.toml): the router's image leaves it out.
WORKER_EXTRA_MODULES = frozenset({"numpy", "soundfile", "av"})


def _run_worker(args: argparse.Namespace) -> int:
    from tts_worker.settings import WorkerSettings

    try:
        from tts_worker.server import run
    except ModuleNotFoundError as exc:
        if exc.name not in WORKER_EXTRA_MODULES:
            raise
        print(f"tts-cluster worker: {exc.name} is not installed. A worker needs the `worker` extra: "
              "pip install 'tts-cluster[worker,piper]' (the router image has no worker dependencies; "
              "run workers from the worker image).", file=sys.stderr)
        return 2

    settings = settings_from(args, WorkerSettings, "worker")
    return 2 if settings is None else run(settings)


ROUTER_EPILOG = """\
Every flag can also come from an environment variable (shown with each flag). Precedence: flag > env > default.

examples:
  tts-cluster router --worker http://127.0.0.1:9881 --worker http://127.0.0.1:9882
  tts-cluster router --workers-file workers.txt --policy power-of-two
  tts-cluster router --discovery kubernetes --k8s-service tts-workers      # in a pod
"""


def _router_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from tts_router.settings import RouterSettings

    p = sub.add_parser(
        "router",
        help=SUMMARIES["router"],
        description="The public entry (GPT-SoVITS api_v2 on port 9880): discovers workers, polls their /stats, "
        "sends each request to the least-loaded one, retries elsewhere before the first byte, streams audio "
        "through, and serves /concurrent_stats and /metrics.",
        epilog=ROUTER_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_settings_flags(p, RouterSettings, "TTSC_ROUTER_", short={"bind_addr": "-a", "port": "-p"},
                       skip=("admin_token",))
    p.set_defaults(func=_run_router)


def _run_router(args: argparse.Namespace) -> int:
    from tts_router.server import run
    from tts_router.settings import RouterSettings

    settings = settings_from(args, RouterSettings, "router")
    if settings is None:
        return 2
    if settings.discovery == "static" and not settings.worker and not settings.workers_file:
        print("tts-cluster router: no workers: give --worker URL (repeatable) or --workers-file", file=sys.stderr)
        return 2
    return run(settings)


def _up_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from .up import __doc__ as up_doc
    from .up import add_arguments

    p = sub.add_parser(
        "up",
        help=SUMMARIES["up"],
        description=up_doc,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(p)


def _operator_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from tts_operator.settings import OperatorSettings

    p = sub.add_parser(
        "operator",
        help=SUMMARIES["operator"],
        description="Reconciles TTSCluster resources: a router Deployment and Service, one worker Pod per GPU "
        "behind a headless Service, scaling with drain, replacement of failed workers, autoscaling, status.",
        epilog="Every flag can also come from an environment variable (shown with each flag).",
    )
    add_settings_flags(p, OperatorSettings, "TTSC_OPERATOR_")
    p.set_defaults(func=_run_operator)


def _run_operator(args: argparse.Namespace) -> int:
    from tts_operator.main import run
    from tts_operator.settings import OperatorSettings

    settings = settings_from(args, OperatorSettings, "operator")
    if settings is None:
        return 2
    if not settings.namespace and not settings.all_namespaces:
        print("tts-cluster operator: give --namespace NS (repeatable) or --all-namespaces", file=sys.stderr)
        return 2
    return run(settings)


def _voices_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "voices",
        help=SUMMARIES["voices"],
        description="init: write reference.wav into the voice directory with the bundled Piper voice, so the usual "
        "GPT-SoVITS call with ref_audio_path=reference.wav works out of the box. check: validate a voice catalog "
        "(voices.yaml) and list its voices per engine; exit 2 naming the voice and field of the first error.",
    )
    p.add_argument("action", choices=["init", "check"], help="init: the directory and its reference clip; "
                   "check: a voice catalog")
    p.add_argument("--voice-dir", type=Path, default=Path("voices"), help="directory to fill [default voices]")
    p.add_argument("--force", action="store_true", help="rewrite reference.wav even if it exists")
    p.add_argument("--catalog", type=Path, default=Path("voices.yaml"),
                   help="check: the catalog file [default voices.yaml]")
    p.add_argument("--models-dir", type=Path, default=None,
                   help="check: also check that the weight files each voice names are in this directory (and its "
                   "reference clips in --voice-dir); exit 2 naming the voice and field of each missing one")
    p.set_defaults(func=_run_voices)


def _run_voices(args: argparse.Namespace) -> int:
    if args.action == "check":
        from tts_common.voices import CatalogError, load_catalog

        try:
            catalog = load_catalog(args.catalog)
        except CatalogError as exc:
            print(f"tts-cluster voices check: {exc}", file=sys.stderr)
            return 2
        print(f"{args.catalog}: {len(catalog.voices)} voice(s); default: {catalog.default or 'the tts_infer.yaml weights'}")
        problems: list[str] = []
        for engine in ("gpt-sovits", "piper", "synthetic"):
            names = [v.name for v in catalog.for_engine(engine)]
            print(f"  {engine}: {', '.join(names) if names else '-'}")
            if args.models_dir is not None:
                from tts_worker.voices import missing_files

                for voice in catalog.for_engine(engine):
                    problems += [f"voice {voice.name!r}: {p}"
                                 for p in missing_files(voice, engine, args.models_dir, args.voice_dir)]
        for problem in problems:
            print(f"tts-cluster voices check: {problem}", file=sys.stderr)
        return 2 if problems else 0
    from tts_worker.reference import write_reference_clip

    path = write_reference_clip(args.voice_dir, force=args.force)
    print(path)
    return 0


def _bench_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from tts_bench.cli import add_arguments

    p = sub.add_parser(
        "bench",
        help=SUMMARIES["bench"],
        description="Benchmarks of tts-cluster. 'worker': one worker's real-time factor and requests/s, and "
        "the worker's HTTP + queue overhead against calling the engine directly. 'policies': routing policies "
        "side by side behind several router replicas.",
    )
    add_arguments(p)


def _healthcheck_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from .healthcheck import __doc__ as doc
    from .healthcheck import add_arguments, run

    p = sub.add_parser("healthcheck", help=SUMMARIES["healthcheck"], description=doc,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    p.set_defaults(func=run, parser_for=build_parser)


# Each command's parser. A full parser imports its command's settings (the bench's imports every benchmark), so
# `main` builds only the one asked for: all of them took half a second of a router's restart (issue 30).
COMMANDS: dict[str, Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]] = {
    "up": _up_parser,
    "worker": _worker_parser,
    "router": _router_parser,
    "operator": _operator_parser,
    "voices": _voices_parser,
    "bench": _bench_parser,
    "healthcheck": _healthcheck_parser,
}


def build_parser(only: Optional[str] = None) -> argparse.ArgumentParser:
    """Every command's parser; with `only` (a command's name), that one's, and a one-line stand-in for others."""
    parser = argparse.ArgumentParser(
        prog="tts-cluster",
        description="Kubernetes-native multi-GPU text-to-speech serving with the GPT-SoVITS api_v2 contract.",
    )
    sub = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    for name, add in COMMANDS.items():
        if only is None or only == name:
            add(sub)
        else:
            sub.add_parser(name, help=SUMMARIES[name])
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    given = list(sys.argv[1:] if argv is None else argv)
    command = given[0] if given and given[0] in COMMANDS else None
    args = build_parser(command).parse_args(given)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
