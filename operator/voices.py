"""`spec.voices` as the workers' voice catalog: checked by the catalog's own model (`tts_common.voices`), so the
operator refuses exactly what a worker would, and rendered to the `voices.yaml` the workers read.

`minWorkers` is the operator's alone (it becomes the catalog's `placement`), so it is taken off each entry before
the entry is checked as a `Voice`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Optional

import yaml
from pydantic import ValidationError

from tts_common.voices import CatalogError, OpenAINames, VoiceCatalog, parse_catalog

MAX_MIN_WORKERS = 256  # as many as workers.maxReplicas allows


@dataclass(frozen=True)
class VoicesSpec:
    catalog: VoiceCatalog  # the voices and the default; its placement is the operator's to fill in
    min_workers: dict[str, int]  # voice -> workers that keep it loaded, in spec order

    @property
    def empty(self) -> bool:
        return not self.catalog.voices


def read_voices(entries: Sequence[Any], default: Optional[str],
                openai: Optional[Mapping[str, Any]] = None) -> VoicesSpec:
    """spec.voices, spec.defaultVoice and spec.openai, checked; CatalogError names the voice and the field."""
    plain: list[Any] = []
    counts: list[int] = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, Mapping):
            raise CatalogError(f"spec.voices[{index}]: an object with a name, not {type(entry).__name__}")
        rest = dict(entry)
        count = rest.pop("minWorkers", 0)
        if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= MAX_MIN_WORKERS:
            raise CatalogError(f"spec.voices: {_label(rest, index)}: minWorkers: {count!r} is not a whole number "
                               f"from 0 to {MAX_MIN_WORKERS}")
        plain.append(rest)
        counts.append(count)
    catalog = parse_catalog({"voices": plain}, "spec.voices")
    if default is not None and catalog.get(default) is None:
        raise CatalogError(f"spec.defaultVoice: {default!r} is not a voice of spec.voices "
                           f"({', '.join(catalog.names()) or 'none'})")
    names = _openai_names(openai, catalog)
    return VoicesSpec(VoiceCatalog(voices=catalog.voices, default=default, openai=names),
                      {v.name: n for v, n in zip(catalog.voices, counts, strict=True)})


def _openai_names(openai: Optional[Mapping[str, Any]], catalog: VoiceCatalog) -> OpenAINames:
    if not openai:
        return OpenAINames()
    try:
        names = OpenAINames.model_validate(dict(openai))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "openai"
        raise CatalogError(f"spec.openai.{where}: {first['msg']}") from None
    for alias, target in names.voices.items():
        if catalog.get(target) is None:
            raise CatalogError(f"spec.openai.voices.{alias}: {target!r} is not a voice of spec.voices "
                               f"({', '.join(catalog.names()) or 'none'})")
    return names


def catalog_yaml(voices: VoicesSpec, placement: Mapping[str, Sequence[str]]) -> str:
    """The `voices.yaml` of the workers: the catalog with its placement, in a stable order so an unchanged spec
    writes an unchanged ConfigMap. Validated once more as a whole, as the worker will read it."""
    catalog = VoiceCatalog(voices=voices.catalog.voices, default=voices.catalog.default,
                           placement={w: list(vs) for w, vs in sorted(placement.items())},
                           openai=voices.catalog.openai)
    return _dump(catalog)


def empty_catalog_yaml() -> str:
    """The catalog of a cluster whose spec.voices never was valid: no voices, as a worker without a catalog."""
    return _dump(VoiceCatalog())


def _dump(catalog: VoiceCatalog) -> str:
    # The OpenAI names table is written only when the spec sets one: an unchanged default keeps the file as it was.
    unset = {"openai"} if catalog.openai == OpenAINames() else set()
    return yaml.safe_dump(catalog.model_dump(mode="json", exclude_none=True, exclude=unset), sort_keys=False)


def _label(entry: Mapping[str, Any], index: int) -> str:
    name = entry.get("name")
    return f"voice {name!r}" if isinstance(name, str) else f"voices[{index}]"
