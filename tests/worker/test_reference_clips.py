"""The batching gpt-sovits engine's per-clip references, without torch: what is found again, and what is read anew
(another file at the path, other models, evicted), on real files."""

from __future__ import annotations

import gc
import os
from pathlib import Path

import pytest

from tts_worker.engines.gpt_sovits.reference import ClipKey, Reference, ReferenceClips, Stamp

pytestmark = pytest.mark.unit


class Model:
    """Stands for an installed model: only its identity matters here."""


def key(path: Path, model: object, prompt: tuple[str, str] | None = ("a test", "en"),
        aux: tuple[str, ...] = ()) -> ClipKey:
    return ClipKey(id(model), "torch.float32", str(path), aux, prompt)


class Reads:
    """A compute function that counts its calls and tells its references apart."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, stamps: tuple[Stamp, ...]) -> Reference:
        assert len(stamps) >= 1  # the files as stamped before the read: main clip, then aux
        self.count += 1
        return Reference(self.count, [], None, {}, None)


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    path = tmp_path / "clip.wav"
    path.write_bytes(b"RIFF one")
    return path


def test_the_same_clip_and_models_are_found_again(clip: Path) -> None:
    clips, reads, model = ReferenceClips(4), Reads(), Model()
    first = clips.get(key(clip, model), (model,), reads)
    assert clips.get(key(clip, model), (model,), reads) is first
    assert (reads.count, clips.hits, clips.misses) == (1, 1, 1)
    # another prompt text, or none (ref-free), is another reference of the clip
    other = clips.get(key(clip, model, ("another", "en")), (model,), reads)
    free = clips.get(key(clip, model, None), (model,), reads)
    assert len({first.prompt, other.prompt, free.prompt}) == 3 and len(clips) == 3


def test_a_file_rewritten_at_the_path_is_read_again(clip: Path) -> None:
    clips, reads, model = ReferenceClips(4), Reads(), Model()
    first = clips.get(key(clip, model), (model,), reads)
    stat = clip.stat()
    clip.write_bytes(b"RIFF two")  # same size, same inode: only the modification time tells
    os.utime(clip, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    second = clips.get(key(clip, model), (model,), reads)
    assert second is not first and reads.count == 2
    assert len(clips) == 1  # it took the old one's place
    assert clips.get(key(clip, model), (model,), reads) is second


def test_an_aux_clip_changing_reads_the_reference_again(clip: Path, tmp_path: Path) -> None:
    aux = tmp_path / "aux.wav"
    clips, reads, model = ReferenceClips(4), Reads(), Model()
    first = clips.get(key(clip, model, aux=(str(aux),)), (model,), reads)  # aux missing: GPT-SoVITS skips it
    aux.write_bytes(b"RIFF aux")
    assert clips.get(key(clip, model, aux=(str(aux),)), (model,), reads) is not first


def test_other_models_at_the_same_id_read_it_again(clip: Path) -> None:
    """The key's model id alone is never trusted: the entry checks the very objects, weakly held."""
    clips, reads = ReferenceClips(4), Reads()
    old, new = Model(), Model()
    same_id = ClipKey(1, "torch.float32", str(clip), (), None)
    first = clips.get(same_id, (old, None), reads)
    assert clips.get(same_id, (new, None), reads) is not first
    third = Model()
    assert clips.get(same_id, (new, third), reads).prompt == 3  # None where a model now is
    assert clips.get(same_id, (new, third), reads).prompt == 3


def test_entries_of_models_gone_are_dropped(tmp_path: Path) -> None:
    """An evicted voice's or replaced weights' entries can never be found again: the next keep drops them (their
    tensors with them), without waiting for the least recently used order."""
    paths = [tmp_path / f"{name}.wav" for name in "ab"]
    for path in paths:
        path.write_bytes(path.name.encode())
    clips, reads = ReferenceClips(8), Reads()
    old, kept = Model(), Model()
    clips.get(key(paths[0], old), (old,), reads)
    clips.get(key(paths[1], kept), (kept,), reads)
    assert len(clips) == 2
    del old
    gc.collect()
    new = Model()
    clips.get(key(paths[0], new), (new,), reads)  # the switch's first request: a miss, kept
    assert len(clips) == 2 and reads.count == 3  # the old model's entry went; the other voice's stays
    assert clips.get(key(paths[1], kept), (kept,), reads).prompt == 2


def test_the_least_recently_used_clip_goes_first(tmp_path: Path) -> None:
    paths = []
    for name in "abc":
        path = tmp_path / f"{name}.wav"
        path.write_bytes(name.encode())
        paths.append(path)
    a, b, c = paths
    clips, reads, model = ReferenceClips(2), Reads(), Model()
    clips.get(key(a, model), (model,), reads)
    clips.get(key(b, model), (model,), reads)
    clips.get(key(a, model), (model,), reads)  # a is now the more recent
    clips.get(key(c, model), (model,), reads)  # evicts b
    assert len(clips) == 2 and reads.count == 3
    clips.get(key(a, model), (model,), reads)
    assert reads.count == 3
    clips.get(key(b, model), (model,), reads)
    assert reads.count == 4


def test_a_failed_read_keeps_nothing_and_a_missing_clip_is_never_found(clip: Path, tmp_path: Path) -> None:
    clips, model = ReferenceClips(4), Model()

    def broken(stamps: tuple[Stamp, ...]) -> Reference:
        raise ValueError("not a wav file")

    with pytest.raises(ValueError, match="not a wav file"):
        clips.get(key(clip, model), (model,), broken)
    assert len(clips) == 0 and clips.misses == 1
    missing, reads = tmp_path / "missing.wav", Reads()
    clips.get(key(missing, model), (model,), reads)
    clips.get(key(missing, model), (model,), reads)
    assert reads.count == 2


def test_a_prompt_cache_holds_the_clip_files_it_was_marked_read_from(clip: Path, tmp_path: Path) -> None:
    from tts_worker.engines.gpt_sovits.reference import holds_clip, mark_read, stamps_of

    cache: dict[str, object] = {"ref_audio_path": str(clip)}
    stamps = stamps_of(str(clip), ())
    assert not holds_clip(cache, str(clip), (), stamps)  # a path alone vouches for nothing (TTS.run's own check)
    mark_read(cache, str(clip), (), stamps)
    assert holds_clip(cache, str(clip), (), stamps_of(str(clip), ()))
    aux = tmp_path / "aux.wav"
    aux.write_bytes(b"RIFF aux")
    assert not holds_clip(cache, str(clip), (str(aux),), stamps_of(str(clip), (str(aux),)))
    stat = clip.stat()
    clip.write_bytes(b"RIFF 1ne")  # rewritten in place, the same size: its modification time tells
    os.utime(clip, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert not holds_clip(cache, str(clip), (), stamps_of(str(clip), ()))
    missing = str(tmp_path / "missing.wav")
    mark_read(cache, missing, (), stamps_of(missing, ()))
    assert not holds_clip(cache, missing, (), stamps_of(missing, ()))
