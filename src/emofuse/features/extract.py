"""Extract features for a manifest into the cache: decode each modality once, feed every encoder of
that modality, write shards as they fill, and never recompute a row the cache already holds.

Rows without the modality (empty text; neither audio nor video for audio, or a video without an
audio track; no video for video, or a clip with no video track) are stored as a zero vector with present=False, so the data layer can mask them. A row that fails to
decode or encode does not stop the run: it is stored the same way and its id and message go to
meta.json's `errors` (retried with retry_errors=True). An encoder whose first items (two or more,
before any success) all fail with one and the same message is broken (missing weights, wrong
output shape), not its data: that stops the run after saving what was done.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from contextlib import ExitStack
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from emofuse.corpora.base import Manifest
from emofuse.features.cache import CacheEntry, EntryLock, row_keys
from emofuse.features.encoders.base import MODALITIES, Encoded, Encoder
from emofuse.features.encoders.hf import build_encoder

log = logging.getLogger(__name__)

AUDIO_SR = 16000
# A video cell holding one of these is a still image, decoded as a one-frame clip.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
_ABSENT = object()  # a decoded row without this modality


class EncoderBroken(RuntimeError):
    """An encoder failed on its first items, before any success, with one and the same error."""


def parse_sampling(spec: str | dict | None) -> dict[str, Any]:
    """'k_uniform=8' | 'fps=2' | 'every_n=5' | {'k_uniform': 8} -> keyword arguments of face_track."""
    if spec is None or spec == "":
        return {}
    if isinstance(spec, dict):
        items = dict(spec)
    else:
        items = {}
        for part in str(spec).split(","):
            k, eq, v = part.partition("=")
            if not eq:
                raise ValueError(f"video_sampling {spec!r}: expected key=value, e.g. k_uniform=8")
            items[k.strip()] = v.strip()
    valid = {"k_uniform": int, "every_n": int, "fps": float}
    unknown = sorted(set(items) - set(valid))
    if unknown or len(items) > 1:
        raise ValueError(f"video_sampling {spec!r}: give one of {', '.join(valid)} (e.g. k_uniform=8)")
    return {k: valid[k](v) for k, v in items.items()}


# ---------------------------------------------------------------------------------------------
# decoding one row per modality


class _Decoder:
    """row -> encoder input, or _ABSENT. Raises on a broken file (caught per row by the caller)."""

    def __init__(self, modality: str, *, sampling: dict, face_size: int, no_face: str, images_are_faces: bool = False):
        self.modality = modality
        self.sampling = sampling
        self.face_size = face_size
        self.no_face = no_face
        self.images_are_faces = images_are_faces
        self.no_face_ids: list[str] = []
        self._local = threading.local()
        # Imported here, not per row, so a missing media module stops the run at once.
        if modality == "audio":
            from emofuse.media.audio import load_audio

            self._load_audio = load_audio
        elif modality == "video":
            from emofuse.media.faces import FaceDetector, crop_image_file, face_track

            self._face_track, self._detector_cls, self._crop_image = face_track, FaceDetector, crop_image_file

    def __call__(self, row: dict) -> Any:
        if self.modality == "text":
            text = str(row.get("text") or "").strip()
            return text if text else _ABSENT
        if self.modality == "audio":
            # A clip's own audio file first, else the audio track of its video.
            video = row.get("video") or ""
            path = row.get("audio") or (video if Path(video).suffix.lower() not in IMAGE_SUFFIXES else "")
            if not path or (not row.get("audio") and not _has_stream(path, "audio")):
                return _ABSENT  # no audio file, or a video without an audio track: absent, not an error
            wave = self._load_audio(path, sr=AUDIO_SR)  # (n_samples,) float32
            if len(wave) == 0:
                raise ValueError(f"{path}: no audio samples")
            return wave
        path = row.get("video")
        if not path:
            return _ABSENT
        if Path(path).suffix.lower() not in IMAGE_SUFFIXES and not _has_stream(path, "video"):
            return _ABSENT  # a clip with sound only: no video track, so video is absent, not an error
        if Path(path).suffix.lower() in IMAGE_SUFFIXES:  # a still image is a one-frame clip
            if self.images_are_faces:  # already a face crop (FER2013): the whole image, no cascade
                return self._crop_image(path, self.face_size, detect=False).image[None]  # (1, S, S, 3)
            crop = self._crop_image(path, self.face_size, detector=self._detector())
            crops, found = crop.image[None], np.array([crop.found])
        else:
            track = self._face_track(path, size=self.face_size, detector=self._detector(), **self.sampling)
            crops, found = track.crops, track.found
        if found.any():
            return crops[found]  # (F_found, S, S, 3)
        self.no_face_ids.append(str(row["id"]))
        if self.no_face == "absent":
            return _ABSENT
        # Emotion corpora film one speaker close up, so the centre square mostly holds the face.
        return crops  # (F, S, S, 3) centre squares

    def _detector(self):
        detector = getattr(self._local, "detector", None)
        if detector is None:  # one per thread: OpenCV's cascade is not documented as thread-safe
            detector = self._local.detector = self._detector_cls()
        return detector


def _has_stream(path: str, kind: str) -> bool:
    """Whether a media file has a stream of `kind` ("audio" / "video"); a file that cannot be
    opened raises MediaError (an error row, as before)."""
    from emofuse.media.errors import open_container

    with open_container(path) as container:
        return any(s.type == kind for s in container.streams)


def _prefetch(rows: list[dict], decode: Callable[[dict], Any], workers: int) -> Iterator[tuple[dict, Any, str | None]]:
    """(row, decoded, error message) in row order, decoding up to 4*workers rows ahead in threads."""

    def safe(row):
        try:
            return decode(row), None
        except Exception as e:  # one broken file must not stop the run
            return None, f"{type(e).__name__}: {e}"

    if workers <= 1:
        for row in rows:
            yield (row, *safe(row))
        return
    with ThreadPoolExecutor(workers, thread_name_prefix="emofuse-decode") as pool:
        pending: deque[tuple[dict, Future]] = deque()
        it = iter(rows)
        for row in it:
            pending.append((row, pool.submit(safe, row)))
            if len(pending) >= 4 * workers:
                break
        try:
            while pending:
                row, fut = pending.popleft()
                nxt = next(it, None)
                if nxt is not None:
                    pending.append((nxt, pool.submit(safe, nxt)))
                yield (row, *fut.result())
        finally:  # the consumer stopped early (Ctrl-C, a broken encoder): drop what is queued
            for _, fut in pending:
                fut.cancel()


# ---------------------------------------------------------------------------------------------
# one encoder's work: pending inputs -> encoded rows -> shards


@dataclass
class _Job:
    encoder: Encoder
    entry: CacheEntry
    todo: set[str]
    shard_size: int
    flush_every_s: float
    keys: dict[str, str] = field(default_factory=dict)  # id -> media key (features.cache.media_key)
    errors: dict[str, str] = field(default_factory=dict)  # id -> message, new this run
    done_ok: set[str] = field(default_factory=set)  # ids computed without error this run
    pending: list[tuple[str, Any]] = field(default_factory=list)  # (id, input) awaiting encode
    rows: list[tuple[str, Encoded, bool]] = field(default_factory=list)  # (id, result, present) awaiting a shard
    n_computed: int = 0
    n_absent: int = 0
    n_shards: int = 0
    seconds: float = 0.0
    head_failures: list[str] = field(default_factory=list)  # messages of failures before any success
    last_flush: float = field(default_factory=time.monotonic)

    @property
    def zero(self) -> Encoded:
        d = self.encoder.dim
        return Encoded(np.zeros(d, np.float32), np.zeros((0, d), np.float32) if self.encoder.gives_sequence else None)

    def add_absent(self, rid: str, error: str | None = None) -> None:
        self.rows.append((rid, self.zero, False))
        if error is None:
            self.n_absent += 1
        else:
            self.errors[rid] = error
        self.maybe_flush()

    def add_input(self, rid: str, item: Any, batch_size: int) -> None:
        self.pending.append((rid, item))
        if len(self.pending) >= batch_size:
            self.run_pending()

    def run_pending(self) -> None:
        if not self.pending:
            return
        batch, self.pending = self.pending, []
        t0 = time.perf_counter()
        try:
            results: list[Encoded | str] = self._checked(self.encoder.encode([x for _, x in batch]), len(batch))
        except Exception as e:
            if len(batch) == 1:
                results = [f"{type(e).__name__}: {e}"]
            else:  # find the item(s) at fault
                results = []
                for _, x in batch:
                    try:
                        results += self._checked(self.encoder.encode([x]), 1)
                    except Exception as e1:
                        results.append(f"{type(e1).__name__}: {e1}")
        self.seconds += time.perf_counter() - t0
        if not any(isinstance(r, Encoded) for r in results) and not self.done_ok:
            self.head_failures += results  # type: ignore[arg-type]
            if len(self.head_failures) >= 2 and len(set(self.head_failures)) == 1:
                self.flush()
                raise EncoderBroken(
                    f"encoder {self.encoder.name!r} failed on each of the first {len(self.head_failures)} items "
                    f"with the same error, so it is the encoder, not the data: {self.head_failures[0]}"
                )
        for (rid, _), r in zip(batch, results):
            if isinstance(r, str):
                self.rows.append((rid, self.zero, False))
                self.errors[rid] = r
            else:
                self.rows.append((rid, r, True))
                self.done_ok.add(rid)
                self.n_computed += 1
        self.maybe_flush()

    def maybe_flush(self) -> None:
        if len(self.rows) >= self.shard_size or time.monotonic() - self.last_flush > self.flush_every_s:
            self.flush()

    def _checked(self, results: list[Encoded], n: int) -> list[Encoded | str]:
        """The encoder's results, with each one that breaks the interface replaced by its message."""
        if len(results) != n:
            raise ValueError(f"encode returned {len(results)} results for {n} items")
        d, out = self.encoder.dim, []
        for r in results:
            v = np.asarray(r.vector, dtype=np.float32)
            s = None if r.sequence is None else np.asarray(r.sequence, dtype=np.float32)
            if v.shape != (d,):
                out.append(f"ValueError: vector of shape {v.shape}, expected ({d},)")
            elif not np.isfinite(v).all():
                out.append("ValueError: vector has non-finite values")
            elif self.encoder.gives_sequence and (s is None or s.ndim != 2 or s.shape[1] != d):
                out.append(f"ValueError: sequence of shape {None if s is None else s.shape}, expected (T, {d})")
            else:
                out.append(Encoded(v, s if self.encoder.gives_sequence else None))
        return out

    def flush(self) -> None:
        """Write the rows done so far as one shard and record the errors beside it."""
        self.last_flush = time.monotonic()
        if not self.rows:
            return
        while self.rows:  # shards of at most shard_size rows: a failed write (full disk) loses one at most
            part = self.rows[: self.shard_size]
            ids = [rid for rid, _, _ in part]
            seqs = [r.sequence for _, r, _ in part] if self.encoder.gives_sequence else None
            self.entry.write_shard(ids, np.stack([r.vector for _, r, _ in part]), np.array([p for _, _, p in part]), seqs,
                                   keys=[self.keys.get(rid, "") for rid in ids])
            self.n_shards += 1
            self.rows = self.rows[len(part):]
        self.entry.save_meta(errors=self.merged_errors())

    def merged_errors(self) -> list[dict]:
        # Earlier errors stay unless this run computed the row again; this run's errors are added.
        redone = self.done_ok | set(self.errors)
        old = [e for e in self.entry.meta.get("errors", []) if e["id"] not in redone]
        return old + [{"id": k, "message": m} for k, m in self.errors.items()]


# ---------------------------------------------------------------------------------------------
# the driver


def extract(
    manifest: Manifest,
    encoders: Sequence[str | Encoder],
    cache_dir: str | Path,
    *,
    batch_size: int = 16,
    video_sampling: str | dict | None = "k_uniform=8",
    face_size: int = 224,
    no_face: str = "centre",
    images_are_faces: bool = False,
    retry_errors: bool = False,
    shard_size: int = 512,
    flush_every_s: float = 120.0,
    workers: int | None = None,
    progress: bool = True,
) -> list[CacheEntry]:
    """Compute the features of every manifest row not yet cached, for each encoder.

    encoders: spec strings (see build_encoder) or Encoder objects.
    batch_size: items per encode call.
    video_sampling: frames per video clip, as face_track takes them: 'k_uniform=8' (8 frames spread
      evenly), 'fps=2' or 'every_n=5'.
    face_size: side of the face crops (224 suits most image models; fer2013 resizes to 64 itself).
    no_face: 'centre' (default: use the centre squares of a clip where no face is found in any
      sampled frame; its ids are listed in meta.json's no_face) | 'absent' (store present=False).
    images_are_faces: a video cell may also hold a still image (.jpg, .png, ...), decoded as a
      one-frame clip through the same face path; True says those images are already face crops
      (FER2013's 48x48 faces), so they are used whole instead of searched for a face. Videos are
      unaffected.
    retry_errors: compute again the rows that failed in an earlier run.
    shard_size, flush_every_s: a shard is written every shard_size rows or flush_every_s seconds,
      which bounds the work an interruption can lose.
    workers: decoding threads (default: min(4, CPUs)).
    Returns one CacheEntry per encoder, with `.stats` saying what this run did."""
    if no_face not in ("centre", "absent"):
        raise ValueError(f"no_face must be 'centre' or 'absent', not {no_face!r}")
    if batch_size < 1 or shard_size < 1:
        raise ValueError("batch_size and shard_size must be positive")
    sampling = parse_sampling(video_sampling)
    workers = workers if workers is not None else min(4, os.cpu_count() or 1)
    encs = _unique([build_encoder(e) for e in encoders])
    rows = manifest.df.to_dict("records")
    all_ids = [str(r["id"]) for r in rows]

    # the video decoding is part of the entry (its folder); each row's media identity is its key
    decoding = {"video_sampling": sampling, "face_size": face_size, "no_face": no_face,
                "images_are_faces": images_are_faces}
    keys = {m: dict(zip(all_ids, row_keys(manifest.df, m))) for m in {e.modality for e in encs}}
    jobs: list[_Job] = []
    for enc in encs:
        if enc.modality not in MODALITIES:
            raise ValueError(f"encoder {enc.name!r} has modality {enc.modality!r}, not one of {MODALITIES}")
        entry = CacheEntry.open(cache_dir, manifest.corpus, enc, decoding if enc.modality == "video" else None)
        cached = entry.cached_pairs()  # rows stored without a key (older caches) are computed again
        todo = {k for k in all_ids if (k, keys[enc.modality][k]) not in cached}
        if retry_errors:
            todo |= {e["id"] for e in entry.meta.get("errors", [])} & set(all_ids)
        jobs.append(_Job(enc, entry, todo, shard_size, flush_every_s, keys[enc.modality]))

    with ExitStack() as stack:
        for job in jobs:
            if job.todo:
                stack.enter_context(EntryLock(job.entry))
                # Until this run ends the folder lacks rows of this manifest, whatever it said before.
                job.entry.save_meta(complete=False, n_expected=len(all_ids))
        _run(jobs, rows, batch_size, sampling, face_size, no_face, workers, progress, images_are_faces)
        for job in jobs:
            stored = job.entry.cached_pairs()
            final = {"n": len(stored), "n_present": _count_present(job.entry), "n_expected": len(all_ids),
                     "complete": set(job.keys.items()) <= stored, "errors": job.merged_errors()}
            # nothing computed and nothing to change: read, never rewritten (a read-only cache works)
            if job.todo or any(job.entry.meta.get(k) != v for k, v in final.items()):
                job.entry.save_meta(**final)
            job.entry.stats = {
                "computed": job.n_computed, "cached": len(all_ids) - len(job.todo), "absent": job.n_absent,
                "errors": len(job.errors), "seconds": round(job.seconds, 3),
                "per_item_s": round(job.seconds / job.n_computed, 5) if job.n_computed else None,
            }
    _summary([j.entry for j in jobs], jobs, progress)
    return [j.entry for j in jobs]


def _unique(encs: list[Encoder]) -> list[Encoder]:
    seen: dict[tuple[str, str], Encoder] = {}
    for e in encs:
        seen.setdefault((e.name, e.fingerprint()), e)
    names = [n for n, _ in seen]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"two different encoders are both named {dup}; give them different options or names")
    return list(seen.values())


def _run(jobs, rows, batch_size, sampling, face_size, no_face, workers, progress, images_are_faces=False) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    by_modality: dict[str, list[_Job]] = {}
    for j in jobs:
        if j.todo:
            by_modality.setdefault(j.encoder.modality, []).append(j)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TimeRemainingColumn())
    with Progress(*columns, disable=not progress, transient=False) as bar:
        for modality, group in by_modality.items():
            needed = [r for r in rows if any(str(r["id"]) in j.todo for j in group)]
            decoder = _Decoder(modality, sampling=sampling, face_size=face_size, no_face=no_face,
                               images_are_faces=images_are_faces)
            task = bar.add_task(f"{modality}: {', '.join(j.encoder.name for j in group)}", total=len(needed))
            try:
                for row, item, error in _prefetch(needed, decoder, workers if modality != "text" else 1):
                    rid = str(row["id"])
                    for j in group:
                        if rid not in j.todo:
                            continue
                        if error is not None:
                            j.add_absent(rid, error)
                        elif item is _ABSENT:
                            j.add_absent(rid)
                        else:
                            j.add_input(rid, item, batch_size)
                    bar.advance(task)
                for j in group:
                    j.run_pending()
            finally:
                # Whatever happened (Ctrl-C, a broken encoder), keep the rows already computed.
                for j in group:
                    j.flush()
                if decoder.no_face_ids:
                    for j in group:
                        prev = [k for k in j.entry.meta.get("no_face", []) if k not in set(decoder.no_face_ids)]
                        j.entry.save_meta(no_face=prev + decoder.no_face_ids)


def _count_present(entry: CacheEntry) -> int:
    last: dict[str, bool] = {}
    for p in entry.shard_paths():
        with np.load(p, allow_pickle=False) as z:
            last.update(zip(z["ids"].tolist(), z["present"].tolist()))
    return sum(last.values())


def _summary(entries: Iterable[CacheEntry], jobs: list[_Job], progress: bool) -> None:
    lines = []
    for e, j in zip(entries, jobs):
        s = e.stats
        rate = f", {1 / s['per_item_s']:.1f} items/s" if s["per_item_s"] else ""
        lines.append(
            f"{e.name} ({e.meta['modality']}, {e.meta['dim']}-d): {s['computed']} computed{rate}, {s['cached']} cached, "
            f"{s['absent']} absent, {s['errors']} errors -> {e.path}"
        )
        for err in list(j.errors.items())[:3]:
            lines.append(f"    error {err[0]}: {err[1]}")
        if len(j.errors) > 3:
            lines.append(f"    … {len(j.errors) - 3} more errors in {e.path / 'meta.json'}")
    if progress:
        from rich.console import Console

        Console(stderr=True, highlight=False).print("\n".join(lines), markup=False)
    for line in lines:
        log.info(line)
