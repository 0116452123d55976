"""JSON error answers in api_v2's shape: `{"message": ...}`, never FastAPI's bare `detail`, never a 500 page."""

from __future__ import annotations

import logging
from typing import Any, Optional

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("tts_common.http")


def error(
    status: int,
    message: str,
    field: Optional[str] = None,
    exception: Optional[str] = None,
    headers: Optional[dict[str, str]] = None,
) -> JSONResponse:
    body: dict[str, Any] = {"message": message}
    if field:
        body["field"] = field
    if exception is not None:
        body["Exception"] = exception
    return JSONResponse(status_code=status, content=body, headers=headers)


def _field_of(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("query", "body")]
    return ".".join(parts) or "body"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        # The first error, named by field, as one 400 (api_v2 answers 422 with a list; the contract allows 400).
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        field = _field_of(tuple(first.get("loc", ())))
        if first.get("type") == "json_invalid":
            return error(400, "body: invalid JSON", "body")
        if field == "body" and first.get("type") in ("missing", "model_attributes_type", "dict_type"):
            return error(400, "body: expected a JSON object", "body")
        return error(400, f"{field}: {first.get('msg', 'invalid value')}", field)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        # 404, 405 and the like: `message` as everywhere, and FastAPI's own `detail` for clients that read it.
        return JSONResponse({"message": str(exc.detail), "detail": exc.detail}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s", request.url.path)
        return error(500, f"internal error: {type(exc).__name__}")
