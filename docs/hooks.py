"""MkDocs hooks (mkdocs.yml `hooks:`): the site's home page is README.md, and the benchmark plots come from
bench/results/, so each has one source in the repository rather than a copy under docs/ that could drift.

- README.md becomes index.md, its links into docs/ made relative to the site (`docs/install.md` -> `install.md`).
  Any other relative link in it stays as written, and `mkdocs build --strict` fails on it: the front page links
  only into the docs.
- Every file under bench/results/ that git tracks is published at bench/results/ (the benchmarks page shows the
  plots; the JSON results can be downloaded beside them).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[1]
RESULTS = "bench/results"
# A Markdown link or image target that starts with docs/: `](docs/x.md#a)`.
_DOCS_LINK = re.compile(r"\]\(docs/")


def readme_as_index(text: str) -> str:
    return _DOCS_LINK.sub("](", text)


def _results() -> list[str]:
    try:
        out = subprocess.run(["git", "ls-files", RESULTS], cwd=ROOT, capture_output=True, text=True, check=True)
        tracked = [line for line in out.stdout.splitlines() if line]
    except (OSError, subprocess.CalledProcessError):  # not a git checkout (an unpacked archive): what is there
        tracked = [p.relative_to(ROOT).as_posix() for p in sorted((ROOT / RESULTS).glob("*")) if p.is_file()]
    return [p for p in tracked if "/." not in p[len(RESULTS):] and (ROOT / p).is_file()]


def on_files(files: Files, config: MkDocsConfig, **_: Any) -> Files:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    files.append(File.generated(config, "index.md", content=readme_as_index(readme)))
    for path in _results():
        files.append(File(path, src_dir=str(ROOT), dest_dir=config.site_dir,
                          use_directory_urls=config.use_directory_urls))
    return files
