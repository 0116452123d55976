"""Introspection: liveness, readiness, the load signal the router polls, and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from tts_common.schemas import Health, WorkerStats

from .service import service_of

router = APIRouter()


@router.get("/healthz", response_model=Health, summary="alive")
async def healthz() -> Health:
    return Health(status="ok")


@router.get("/readyz", response_model=Health, summary="engine loaded and warmed, not draining",
            responses={503: {"model": Health}})
async def readyz(request: Request) -> JSONResponse:
    svc = service_of(request.app.state)
    if svc.ready:
        return JSONResponse({"status": "ready"})
    return JSONResponse({"status": "draining"}, status_code=503, headers={"Retry-After": "1"})


@router.get("/stats", response_model=WorkerStats, summary="queue depth, capacity and counters")
async def stats(request: Request) -> WorkerStats:
    return service_of(request.app.state).stats()


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    svc = service_of(request.app.state)
    return Response(generate_latest(svc.metrics.registry), media_type=CONTENT_TYPE_LATEST)
