"""The gpt-sovits engine, one concept per module:

- `upstream`: importing GPT-SoVITS (a checkout or an installed distribution) and every process-wide patch of its
  modules, each with why;
- `pairs`: model pairs, what one voice is on the one `TTS` object, and what every voice shares;
- `reference`: reference clips' features, kept per clip;
- `engine`: `GPTSoVITSEngine`, one request at a time through `TTS.run`, as api_v2 does;
- `session`: the batched session (`--batching`), which sees the engine only through `session.BatchHost`;
- `rows`, `stream`, `t2s`, `vocoder`: a request's rows in the batch, streaming modes 2 and 3, the batched T2S
  decoder, and the vocoder thread.

Importing this package imports neither torch nor GPT-SoVITS: `engine` does, on `load`, and `session` once batching
is used.
"""

from .engine import GPTSoVITSEngine
from .upstream import import_pipeline

__all__ = ["GPTSoVITSEngine", "import_pipeline"]
