"""API keys for `/tts` and `/v1/*`: a file of keys (a mounted Secret), each with an id for logs and metrics and its
own limits. No file configured: no keys asked, as api_v2.

    keys:
      - id: web-frontend          # in logs and metrics; default: the first 8 hex digits of the key's SHA-256
        key: sk-0123456789abcdef  # or `sha256: <64 hex digits>`, so the file need not hold the key itself
        requests_per_second: 5    # token bucket; with `burst` (default: the rate, at least 1)
        max_concurrent: 2         # requests in flight at once
      - key: sk-fedcba9876543210  # no limits
    defaults: {requests_per_second: 10, max_concurrent: 4}   # for keys that set none

A file that is not a mapping is read as one key per line (`#` comments and blank lines skipped), with no limits.
Keys are compared in constant time (every key's digest, always); a key itself is never logged, its id is.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from .watched_file import FileProblem, WatchedFile, read_yaml

MAX_KEYS = 10_000
MAX_KEYS_BYTES = 4 << 20
MIN_KEY_CHARS = 16
KEY_ID_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"
_KEY_ID = re.compile(KEY_ID_PATTERN)
# The character set of a bearer token (RFC 6750's b64token), which also keeps keys out of YAML's quoting traps.
_KEY_CHARS = re.compile(r"^[A-Za-z0-9._~+/=-]+$")


class KeysError(ValueError):
    """A keys file that cannot be used; the message names the file, the entry and the field (never a key)."""


class KeyLimits(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    requests_per_second: Optional[float] = Field(None, gt=0, le=1_000_000)
    burst: Optional[int] = Field(None, ge=1, le=1_000_000)
    max_concurrent: Optional[int] = Field(None, ge=1, le=1_000_000)

    def over(self, defaults: "KeyLimits") -> "KeyLimits":
        return KeyLimits(
            requests_per_second=self.requests_per_second if self.requests_per_second is not None
            else defaults.requests_per_second,
            burst=self.burst if self.burst is not None else defaults.burst,
            max_concurrent=self.max_concurrent if self.max_concurrent is not None else defaults.max_concurrent,
        )

    @property
    def bucket_size(self) -> float:
        rate = self.requests_per_second or 0.0
        return float(self.burst if self.burst is not None else max(1, math.ceil(rate)))


class KeyEntry(KeyLimits):
    id: Optional[str] = Field(None, pattern=KEY_ID_PATTERN)
    key: Optional[SecretStr] = None
    sha256: Optional[str] = Field(None, pattern=r"^[0-9a-fA-F]{64}$")

    @field_validator("key")
    @classmethod
    def _strong_enough(cls, v: Optional[SecretStr]) -> Optional[SecretStr]:
        if v is not None:
            check_key(v.get_secret_value())
        return v

    @model_validator(mode="after")
    def _one_secret(self) -> "KeyEntry":
        if (self.key is None) == (self.sha256 is None):
            raise ValueError("give exactly one of key and sha256")
        return self


class KeysDocument(BaseModel):
    model_config = ConfigDict(extra="forbid")

    keys: list[KeyEntry] = Field(min_length=1, max_length=MAX_KEYS)
    defaults: KeyLimits = KeyLimits()


def check_key(key: str) -> None:
    if len(key) < MIN_KEY_CHARS:
        raise ValueError(f"a key needs at least {MIN_KEY_CHARS} characters")
    if not _KEY_CHARS.match(key):
        raise ValueError("a key may hold only letters, digits and . _ ~ + / = -")


def digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def default_id(key_digest: bytes) -> str:
    return key_digest.hex()[:8]


@dataclass(frozen=True)
class ApiKey:
    id: str
    digest: bytes
    limits: KeyLimits


class KeyRing:
    """The keys in force. `match` takes an `Authorization` header and gives its key, or None."""

    def __init__(self, keys: list[ApiKey]) -> None:
        self.keys = keys

    def ids(self) -> set[str]:
        return {k.id for k in self.keys}

    def match(self, authorization: str) -> Optional[ApiKey]:
        scheme, _, given = authorization.partition(" ")
        given = given.strip()
        if scheme.lower() != "bearer" or not given:
            return None
        probe = digest(given)
        found: Optional[ApiKey] = None
        # Every digest is compared, whatever matched: the time taken says nothing about which key came close.
        for key in self.keys:
            if hmac.compare_digest(probe, key.digest):
                found = key
        return found


def _where(loc: tuple[Any, ...], data: Any) -> str:
    if len(loc) >= 2 and loc[0] == "keys" and isinstance(loc[1], int):
        entry = data["keys"][loc[1]] if isinstance(data.get("keys"), list) else None
        name = entry.get("id") if isinstance(entry, dict) else None
        rest = ".".join(str(p) for p in loc[2:]) or "entry"
        return f"key {name!r}: {rest}" if isinstance(name, str) else f"keys[{loc[1]}]: {rest}"
    return ".".join(str(p) for p in loc) or "file"


def parse_keys(data: Any, source: str) -> KeyRing:
    if isinstance(data, str) or data is None:
        raise KeysError(f"{source}: expected a mapping with `keys`, or one key per line")
    try:
        doc = KeysDocument.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        # The message only: pydantic's would quote the input, and the input may be a key.
        raise KeysError(f"{source}: {_where(tuple(first['loc']), data)}: {first['msg']}") from None
    keys: list[ApiKey] = []
    for n, entry in enumerate(doc.keys):
        d = digest(entry.key.get_secret_value()) if entry.key is not None else bytes.fromhex(entry.sha256 or "")
        keys.append(ApiKey(entry.id or default_id(d), d, KeyLimits(
            requests_per_second=entry.requests_per_second, burst=entry.burst, max_concurrent=entry.max_concurrent,
        ).over(doc.defaults)))
        if len({k.id for k in keys}) < len(keys):
            raise KeysError(f"{source}: keys[{n}]: id {keys[-1].id!r} is given twice")
        if len({k.digest for k in keys}) < len(keys):
            raise KeysError(f"{source}: keys[{n}] (id {keys[-1].id!r}): the same key is given twice")
    return KeyRing(keys)


def _lines(raw: str) -> dict[str, Any]:
    keys = [line.strip() for line in raw.splitlines() if line.strip() and not line.strip().startswith("#")]
    return {"keys": [{"key": k} for k in keys]} if keys else {}


def load_keys(path: Path) -> KeyRing:
    try:
        data = read_yaml(path, MAX_KEYS_BYTES)
    except FileProblem as exc:
        raise KeysError(str(exc)) from None
    if not isinstance(data, dict):
        # One key per line: YAML reads that as one string (or fails on a key it takes for syntax); read the text.
        data = _lines(path.read_text(encoding="utf-8", errors="replace"))
    return parse_keys(data, str(path))


class KeysFile(WatchedFile[KeyRing]):
    """The keys file, re-read when it changes (a rotated Secret); a bad change keeps the last good keys."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, load_keys)


def valid_key_id(value: str) -> bool:
    return bool(_KEY_ID.match(value))
