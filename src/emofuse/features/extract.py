"""Extract features for a manifest into the cache: decode each modality once (media.decode), feed
every encoder of that modality, write shards as they fill, and never recompute a row the cache
already holds.

Rows without the modality (empty text; neither audio nor video for audio, or a video without an
audio track; no video for video, or a clip with no video track) are stored as a zero vector with present=False, so the data layer can mask them. A row that fails to
decode or encode does not stop the run: it is stored the same way and its id and message go to
meta.json's `errors` (retried with retry_errors=True). An encoder whose first items (two or more,
before any success) all fail with one and the same message is broken (missing weights, wrong
output shape), not its data: that stops the run after saving what was done.

Speed: the rows still to compute are pooled (sort_window items) and sorted by length before they are
cut into batches, so that a batch pads little; the encoder keeps one batch in flight (on a GPU the
next batch is tokenised while the current one runs); shards are written by a background thread.

Distributed: under torchrun (WORLD_SIZE > 1 in the environment) each rank computes every
WORLD_SIZE-th row still to compute (rank 0 decides which, from the cache), on its own device
(cuda:LOCAL_RANK when there are GPUs), and writes shards named by its rank; rank 0 holds the cache
lock, and at the end gathers the ranks' row errors and marks the folder complete. See
docs/distributed.md.
"""

from __future__ import annotations

import datetime
import hashlib
import logging
import os
import sys
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
from emofuse.features.cache import CacheEntry, EntryLock, entry_dir, row_keys
from emofuse.features.encoders.base import MODALITIES, Encoded, Encoder
from emofuse.features.encoders.hf import build_encoder
from emofuse.media.decode import ABSENT, Decoder, parse_sampling

log = logging.getLogger(__name__)


class EncoderBroken(RuntimeError):
    """An encoder failed on its first items, before any success, with one and the same error."""


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
# cache writes off the encoding thread


class _Writer:
    """Cache writes (shards, then meta.json or the rank's report) on one background thread, in the
    order given, so that encoding never waits for the disk; at most `depth` writes queued. After a
    failed write (a full disk) nothing more is written, and the error is raised in the caller's
    thread at its next put or wait."""

    def __init__(self, depth: int = 2):
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="emofuse-write")
        self._queued: deque[Future] = deque()
        self._failed = False
        self.depth = depth

    def put(self, fn: Callable[[], None]) -> None:
        while self._queued and (self._queued[0].done() or len(self._queued) >= self.depth):
            self._queued.popleft().result()  # raises a failed write's error here
        self._queued.append(self._pool.submit(self._run, fn))

    def _run(self, fn: Callable[[], None]) -> None:
        if self._failed:
            return
        try:
            fn()
        except BaseException:
            self._failed = True
            raise

    def wait(self) -> None:
        """Until everything put so far is on disk; raises the first failed write's error."""
        while self._queued:
            self._queued.popleft().result()

    def close(self) -> None:
        try:
            self.wait()
        finally:
            self._queued.clear()
            self._pool.shutdown(wait=True)


# ---------------------------------------------------------------------------------------------
# one encoder's work: pending inputs -> sorted batches -> encoded rows -> shards

# Items pooled and sorted by length before batching, in batches: text is tiny, so many; audio waves
# and video frames weigh (8 batches of 16 ten-second clips: 80 MB), so few.
SORT_BATCHES = {"text": 64, "audio": 8, "video": 1}


def _size(item: Any) -> int:
    return len(item) if isinstance(item, (str, np.ndarray, list)) else 0


@dataclass
class _Job:
    encoder: Encoder
    entry: CacheEntry
    todo: set[str]  # the ids this process computes
    batch_size: int
    window: int  # items pooled and sorted by length before they are cut into batches
    shard_size: int
    flush_every_s: float
    writer: _Writer
    keys: dict[str, str] = field(default_factory=dict)  # id -> media key (features.cache.media_key)
    rank: int | None = None  # distributed: this process's rank (shard names, its report)
    n_todo: int = 0  # ids to compute, all ranks together
    old_errors: list[dict] = field(default_factory=list)  # meta.json's errors when the run began
    errors: dict[str, str] = field(default_factory=dict)  # id -> message, new this run
    done_ok: set[str] = field(default_factory=set)  # ids computed without error this run
    no_face: list[str] = field(default_factory=list)  # ids whose clips showed no face (the decoder's list)
    pending: list[tuple[str, Any]] = field(default_factory=list)  # (id, input) awaiting a batch
    in_flight: deque = field(default_factory=deque)  # (batch, handle): submitted, results not yet taken
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

    def add_input(self, rid: str, item: Any) -> None:
        self.pending.append((rid, item))
        if len(self.pending) >= self.window:
            self._dispatch(final=False)

    def finish(self) -> None:
        """Encode what is pending and take every result."""
        self._dispatch(final=True)
        while self.in_flight:
            self._collect(*self.in_flight.popleft())

    def _dispatch(self, final: bool) -> None:
        """Sort the pending items by length and submit them in batches; unless final, a remainder
        smaller than a batch (the longest items) waits for the next window."""
        self.pending.sort(key=lambda p: _size(p[1]))  # stable: equal lengths keep their row order
        n = len(self.pending) if final else len(self.pending) // self.batch_size * self.batch_size
        todo, self.pending = self.pending[:n], self.pending[n:]
        for i in range(0, n, self.batch_size):
            batch = todo[i : i + self.batch_size]
            t0 = time.perf_counter()
            try:
                handle: Any = self.encoder.submit([x for _, x in batch])
            except Exception as e:  # taken per item in _collect
                handle = e
            self.seconds += time.perf_counter() - t0
            self.in_flight.append((batch, handle))
            while len(self.in_flight) > 1:  # one batch in flight while the next is submitted
                self._collect(*self.in_flight.popleft())

    def _collect(self, batch: list[tuple[str, Any]], handle: Any) -> None:
        t0 = time.perf_counter()
        try:
            if isinstance(handle, Exception):
                raise handle
            results: list[Encoded | str] = self._checked(handle(), len(batch))
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
        if not any(isinstance(r, Encoded) or r is None for r in results) and not self.done_ok:
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
            elif r is None:
                self.rows.append((rid, self.zero, False))
                self.n_absent += 1
            else:
                self.rows.append((rid, r, True))
                self.done_ok.add(rid)
                self.n_computed += 1
        self.maybe_flush()

    def close(self) -> None:
        """After an interruption: keep the batches already encoded (their results are ready or
        nearly), then write every row held. Pending inputs are left for the next run."""
        while self.in_flight:
            batch, handle = self.in_flight.popleft()
            try:
                results = self._checked(handle(), len(batch)) if not isinstance(handle, Exception) else []
            except Exception:
                continue
            for (rid, _), r in zip(batch, results):
                if isinstance(r, Encoded):
                    self.rows.append((rid, r, True))
                    self.done_ok.add(rid)
                    self.n_computed += 1
        self.flush()

    def maybe_flush(self) -> None:
        if len(self.rows) >= self.shard_size or time.monotonic() - self.last_flush > self.flush_every_s:
            self.flush()

    def _checked(self, results: list[Encoded | None], n: int) -> list[Encoded | str | None]:
        """The encoder's results, with each one that breaks the interface replaced by its message
        (None, an item the encoder found nothing in, passes as it is)."""
        if len(results) != n:
            raise ValueError(f"encode returned {len(results)} results for {n} items")
        d, out = self.encoder.dim, []
        for r in results:
            if r is None:  # the encoder found nothing to describe (a clip under one frame): absent
                out.append(None)
                continue
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
        """Hand the rows done so far to the writer (as shards of at most shard_size rows: a failed
        write, a full disk, loses one at most), with the errors to record beside them."""
        self.last_flush = time.monotonic()
        if not self.rows:
            return
        rows, self.rows = self.rows, []
        self.n_shards += -(-len(rows) // self.shard_size)
        # what to record is taken now, on this thread; the writer only writes it
        errors = self.merged_errors() if self.rank is None else None
        report = self.report() if self.rank is not None else None
        self.writer.put(lambda: self._write(rows, errors, report))

    def _write(self, rows: list[tuple[str, Encoded, bool]], errors: list[dict] | None, report: dict | None) -> None:
        for i in range(0, len(rows), self.shard_size):
            part = rows[i : i + self.shard_size]
            ids = [rid for rid, _, _ in part]
            seqs = [r.sequence for _, r, _ in part] if self.encoder.gives_sequence else None
            self.entry.write_shard(ids, np.stack([r.vector for _, r, _ in part]), np.array([p for _, _, p in part]), seqs,
                                   keys=[self.keys.get(rid, "") for rid in ids], rank=self.rank)
        if report is not None:
            self.entry.write_rank_report(self.rank, report)
        else:
            self.entry.save_meta(errors=errors)

    def report(self) -> dict:
        """This rank's record for rank 0 (features.cache.CacheEntry.merge_rank_reports)."""
        old = {e["id"] for e in self.old_errors}
        return {"errors": [{"id": k, "message": m} for k, m in self.errors.items()],
                "fixed": sorted(self.done_ok & old), "no_face": sorted(self.no_face)}

    def merged_errors(self) -> list[dict]:
        # Earlier errors stay unless this run computed the row again; this run's errors are added.
        redone = self.done_ok | set(self.errors)
        old = [e for e in self.old_errors if e["id"] not in redone]
        return old + [{"id": k, "message": m} for k, m in self.errors.items()]


# ---------------------------------------------------------------------------------------------
# torch.distributed: who we are, and the two messages the ranks exchange


@dataclass
class _Dist:
    rank: int
    world: int
    local_rank: int
    local_world: int
    group: Any = None  # the process group of the control messages (gloo); None: the default one

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's obj, on every rank."""
        import torch.distributed as dist

        box = [obj]
        dist.broadcast_object_list(box, src=0, group=self.group)
        return box[0]

    def gather(self, obj: Any) -> list:
        """Every rank's obj, in rank order, on every rank."""
        import torch.distributed as dist

        out: list = [None] * self.world
        dist.all_gather_object(out, obj, group=self.group)
        return out


_GLOO_GROUP: Any = None  # made once when the caller's default group cannot carry objects on the CPU


def _distributed(timeout: datetime.timedelta) -> _Dist | None:
    """The torchrun context: None in a single process. Initialises the default process group (gloo,
    from the environment torchrun sets: MASTER_ADDR/PORT, RANK, WORLD_SIZE) when WORLD_SIZE > 1 and
    no group exists yet; a group the caller made is used as it is (with a gloo group beside it when
    its backend is NCCL alone). The group is left initialised for the next extract of the process."""
    global _GLOO_GROUP
    env_world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if env_world < 2 and "torch" not in sys.modules:
        return None  # nobody can have made a group: do not import torch for a single process
    import torch.distributed as dist

    if not dist.is_available():
        if env_world > 1:
            raise RuntimeError(f"WORLD_SIZE={env_world}, but this torch build has no torch.distributed")
        return None
    group = None
    if dist.is_initialized():
        if dist.get_world_size() < 2:
            return None
        if "gloo" not in str(dist.get_backend()):
            if _GLOO_GROUP is None:
                _GLOO_GROUP = dist.new_group(backend="gloo", timeout=timeout)
            group = _GLOO_GROUP
    elif env_world > 1:
        # Only control messages travel (ids, statuses): gloo carries them on the CPU, and a rank
        # that waits longer than the timeout for the others raises instead of hanging.
        dist.init_process_group("gloo", timeout=timeout)
    else:
        return None
    world = dist.get_world_size()
    return _Dist(dist.get_rank(), world, int(os.environ.get("LOCAL_RANK", "0") or 0),
                 int(os.environ.get("LOCAL_WORLD_SIZE", str(world)) or world), group)


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


# ---------------------------------------------------------------------------------------------
# the driver


class _Unset:
    """An extract option not given (its value then comes from the manifest or DECODING_DEFAULTS)."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET = _Unset()
# the video decoding of a manifest that records none (clips of people, faces searched for)
DECODING_DEFAULTS = {"video_sampling": "k_uniform=8", "face_size": 224, "no_face": "centre", "images_are_faces": False}


def extract(
    manifest: Manifest,
    encoders: Sequence[str | Encoder],
    cache_dir: str | Path,
    *,
    batch_size: int | None = None,
    sort_window: int | None = None,
    device: str | None = None,
    video_sampling: str | dict | None | _Unset = UNSET,
    face_size: int | _Unset = UNSET,
    no_face: str | _Unset = UNSET,
    images_are_faces: bool | _Unset = UNSET,
    retry_errors: bool = False,
    shard_size: int = 512,
    flush_every_s: float = 120.0,
    workers: int | None = None,
    progress: bool = True,
    dist_timeout_min: float | None = None,
) -> list[CacheEntry]:
    """Compute the features of every manifest row not yet cached, for each encoder.

    encoders: spec strings (see build_encoder) or Encoder objects.
    batch_size: items per encoder pass; default: the encoder's own `batch_size` (hf encoders: 32
      text / 16 audio and video on CPU, 256 text / 32 audio and video on a GPU), else 16.
    sort_window: rows pooled and sorted by length before they are cut into batches (the cache stores
      rows by id, so the order is free); default 64 batches for text, 8 for audio, 1 for video.
    device: where encoders with a device choice run ('cpu', 'cuda', 'cuda:1'); default: each
      encoder's own, except under torchrun with GPUs, where a GPU encoder runs on cuda:LOCAL_RANK.
    video_sampling, face_size, no_face, images_are_faces (the video decoding): each one not given is
      taken from the manifest's meta "decoding" (written by corpora of face images: FER2013, CK+,
      bench paired), else from DECODING_DEFAULTS; so every command extracting on a manifest decodes
      it as its corpus says.
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
    workers: decoding threads (default: min(4, CPUs), the CPUs shared among the ranks of a machine).
    dist_timeout_min: under torchrun, how long a rank waits for the others (rank 0 for the slowest
      at the end) before it gives up with an error; default $EMOFUSE_DIST_TIMEOUT_MIN, else 60.
    Returns one CacheEntry per encoder, with `.stats` saying what this run did (under torchrun:
    rank 0's, all ranks together; the other ranks', their own)."""
    given = {k: v for k, v in (("video_sampling", video_sampling), ("face_size", face_size), ("no_face", no_face),
                               ("images_are_faces", images_are_faces)) if not isinstance(v, _Unset)}
    d = decoding_for(manifest, **given)
    if d["no_face"] not in ("centre", "absent"):
        raise ValueError(f"no_face must be 'centre' or 'absent', not {d['no_face']!r}")
    if (batch_size is not None and batch_size < 1) or shard_size < 1:
        raise ValueError("batch_size and shard_size must be positive")
    minutes = dist_timeout_min if dist_timeout_min is not None else float(os.environ.get("EMOFUSE_DIST_TIMEOUT_MIN", 60))
    dist = _distributed(datetime.timedelta(minutes=minutes))
    gpu_only = False
    threads = None
    if dist is not None:
        import torch

        progress = progress and dist.rank == 0
        if device is None and torch.cuda.is_available():
            device, gpu_only = f"cuda:{dist.local_rank}", True  # moves the encoders that run on a GPU
            torch.cuda.set_device(dist.local_rank)
        # N ranks on one machine share its cores instead of each taking all of them
        threads = torch.get_num_threads()
        torch.set_num_threads(max(1, _cpus() // dist.local_world))
    try:
        cpus = max(1, _cpus() // (dist.local_world if dist else 1))
        workers = workers if workers is not None else min(4, cpus)
        encs = _unique([_placed(build_encoder(e), device, gpu_only) for e in encoders])
        return _extract(manifest, encs, Path(cache_dir), dist, batch_size=batch_size, sort_window=sort_window,
                        decode=dict(sampling=parse_sampling(d["video_sampling"]), face_size=d["face_size"],
                                    no_face=d["no_face"], images_are_faces=d["images_are_faces"]),
                        retry_errors=retry_errors, shard_size=shard_size, flush_every_s=flush_every_s, workers=workers,
                        progress=progress)
    finally:
        if threads is not None:
            import torch

            torch.set_num_threads(threads)


def decoding_for(manifest: Manifest, **given) -> dict:
    """The video decoding extract uses on `manifest`: the options given, else the manifest's meta
    "decoding", else DECODING_DEFAULTS."""
    recorded = dict(manifest.meta.get("decoding") or {})
    if unknown := sorted(set(recorded) - set(DECODING_DEFAULTS)):
        raise ValueError(f"manifest {manifest.corpus!r}: meta decoding has unknown options {unknown}; "
                         f"known: {', '.join(DECODING_DEFAULTS)}")
    return {**DECODING_DEFAULTS, **recorded, **given}


def _placed(enc: Encoder, device: str | None, gpu_only: bool) -> Encoder:
    if device is None or (gpu_only and not str(getattr(enc, "device", "")).startswith("cuda")):
        return enc
    return enc.to(device)


def _extract(manifest: Manifest, encs: list[Encoder], cache_dir: Path, dist: _Dist | None, *, batch_size, sort_window,
             decode: dict, retry_errors: bool, shard_size: int, flush_every_s: float, workers: int,
             progress: bool) -> list[CacheEntry]:
    for enc in encs:
        if enc.modality not in MODALITIES:
            raise ValueError(f"encoder {enc.name!r} has modality {enc.modality!r}, not one of {MODALITIES}")
    rows = manifest.df.to_dict("records")
    all_ids = [str(r["id"]) for r in rows]
    rank = dist.rank if dist is not None else 0
    # the video decoding is part of the entry (its folder); each row's media identity is its key
    decoding = {"video_sampling": decode["sampling"], "face_size": decode["face_size"], "no_face": decode["no_face"],
                "images_are_faces": decode["images_are_faces"]}
    jobs: list[_Job] = []
    failure: BaseException | None = None  # distributed: this rank's, raised once the others know
    with ExitStack() as locks:
        writer = _Writer()
        try:
            # 1. rank 0 (or the only process) reads the cache, takes the locks and says what is to do
            plan: dict[str, Any] = {}
            if rank == 0:
                try:
                    plan = _plan(manifest, encs, cache_dir, decoding, all_ids, retry_errors, locks)
                except BaseException as e:
                    if dist is None:
                        raise
                    failure, plan = e, {"error": f"{type(e).__name__}: {e}"}
            if dist is not None:
                plan = dist.broadcast(plan)
            # 2. every rank computes its share of each encoder's rows
            try:
                if failure is None and plan.get("error"):
                    raise RuntimeError(f"rank 0 could not start: {plan['error']}")
                if failure is None:
                    jobs = _jobs(plan, encs, cache_dir, manifest.corpus, decoding, all_ids, dist, writer,
                                 batch_size, sort_window, shard_size, flush_every_s)
                    for job in jobs:
                        if rank == 0 and job.n_todo:
                            # Until this run ends the folder lacks rows of this manifest, whatever it said before.
                            job.entry.save_meta(complete=False, n_expected=len(all_ids))
                    _run(jobs, rows, decode, workers, progress)
            except BaseException as e:
                if dist is None:
                    raise
                failure = e
        finally:
            writer.close()
        # 3. rank 0 finishes the folders (under torchrun once every rank has said how it went)
        if dist is None:
            for job in jobs:
                _finish(job, all_ids, _job_stats(job), errors=job.merged_errors())
        else:
            _finish_distributed(jobs, all_ids, dist, failure)
    if rank == 0:
        _summary([j.entry for j in jobs], jobs, progress)
    return [j.entry for j in jobs]


def _finish_distributed(jobs: list[_Job], all_ids: list[str], dist: _Dist, failure: BaseException | None) -> None:
    """Every rank reports (its error, its stats); rank 0 merges the ranks' row errors into meta.json
    and finishes the folders while the others wait, so that every rank returns finished folders.
    Raises this rank's failure, and on rank 0 one naming every rank that failed."""
    mine = {"error": None if failure is None else f"{type(failure).__name__}: {failure}",
            "stats": [_job_stats(j) for j in jobs]}
    if failure is not None:
        log.error("rank %d failed: %s", dist.rank, mine["error"])
    statuses = dist.gather(mine)
    if dist.rank == 0:
        try:
            for i, job in enumerate(jobs):
                job.entry.merge_rank_reports()
                per_rank = [s["stats"][i] for s in statuses if len(s["stats"]) > i]
                _finish(job, all_ids, _add_stats(per_rank), errors=job.entry.meta.get("errors", []))
        except BaseException as e:
            failure = failure or e
    dist.broadcast(None)  # the folders are finished
    if dist.rank != 0:
        for job in jobs:
            job.entry.meta = CacheEntry(job.entry.path).meta
            job.entry.stats = _job_stats(job) | {"cached": len(all_ids) - job.n_todo}
    if failure is not None:
        raise failure
    failed = {r: s["error"] for r, s in enumerate(statuses) if s["error"]}
    if failed and dist.rank == 0:
        raise RuntimeError("extract failed on " + "; ".join(f"rank {r}: {m}" for r, m in failed.items())
                           + ". The rows every rank wrote are kept: run the same command again to compute the rest.")


def _plan(manifest: Manifest, encs: list[Encoder], cache_dir: Path, decoding: dict, all_ids: list[str],
          retry_errors: bool, stack: ExitStack) -> dict[str, Any]:
    """For each encoder, the ids to compute (in manifest order) and the media keys of the rows;
    takes the lock of each folder that will be written (kept until `stack` closes)."""
    keys = {m: row_keys(manifest.df, m) for m in {e.modality for e in encs}}
    todo: list[list[str]] = []
    for enc in encs:
        entry = CacheEntry.open(cache_dir, manifest.corpus, enc, decoding if enc.modality == "video" else None)
        locked = False
        if entry.rank_reports():  # left by a distributed run that did not finish: their errors first
            stack.enter_context(EntryLock(entry))
            locked = entry.merge_rank_reports()
        cached = entry.cached_pairs()  # rows stored without a key (older caches) are computed again
        ids = [k for k, key in zip(all_ids, keys[enc.modality]) if (k, key) not in cached]
        if retry_errors:
            failed = {e["id"] for e in entry.meta.get("errors", [])} - set(ids)
            ids += [k for k in all_ids if k in failed]
        if ids and not locked:
            stack.enter_context(EntryLock(entry))
        todo.append(ids)
    ids_digest = hashlib.sha1("\n".join(all_ids).encode()).hexdigest()
    return {"error": None, "ids": ids_digest, "keys": keys, "todo": todo,
            "fingerprints": [e.fingerprint() for e in encs]}


def _jobs(plan: dict, encs: list[Encoder], cache_dir: Path, corpus: str, decoding: dict, all_ids: list[str],
          dist: _Dist | None, writer: _Writer, batch_size: int | None, sort_window: int | None, shard_size: int,
          flush_every_s: float) -> list[_Job]:
    """One job per encoder: its folder and this rank's share of the ids to compute (every
    world-th of them, from the rank's own position: deterministic, and balanced whatever the
    manifest's order)."""
    rank, world = (dist.rank, dist.world) if dist is not None else (0, 1)
    if rank != 0:  # the ranks must agree on the rows and the encoders, or their shards would not fit
        if hashlib.sha1("\n".join(all_ids).encode()).hexdigest() != plan["ids"]:
            raise RuntimeError(f"rank {rank} read another manifest than rank 0 (different ids); give every rank the same file")
        for enc, fp in zip(encs, plan["fingerprints"]):
            if enc.fingerprint() != fp:
                raise RuntimeError(
                    f"rank {rank}'s encoder {enc.name!r} has fingerprint {enc.fingerprint()[:12]}, rank 0's "
                    f"{fp[:12]}: every rank needs the same weights, options and precision (the same kind of device)")
    jobs = []
    for enc, ids in zip(encs, plan["todo"]):
        video = decoding if enc.modality == "video" else None
        if rank == 0:
            entry = CacheEntry.open(cache_dir, corpus, enc, video)  # read again: _plan may have merged reports
        else:
            path = entry_dir(cache_dir, corpus, enc.name, enc.fingerprint(), video)
            if not (path / "meta.json").is_file():
                raise RuntimeError(f"rank {rank} does not see rank 0's cache folder {path}: on several machines the "
                                   "cache must be on a file system they all mount at the same path")
            entry = CacheEntry(path)
        bs = batch_size or int(getattr(enc, "batch_size", 0) or 16)
        window = max(bs, sort_window if sort_window is not None else SORT_BATCHES[enc.modality] * bs)
        jobs.append(_Job(enc, entry, set(ids[rank::world]), bs, window, shard_size, flush_every_s, writer,
                         keys=dict(zip(all_ids, plan["keys"][enc.modality])),
                         rank=dist.rank if dist is not None else None, n_todo=len(ids),
                         old_errors=list(entry.meta.get("errors", []))))
    return jobs


def _job_stats(job: _Job) -> dict[str, Any]:
    return {"computed": job.n_computed, "absent": job.n_absent, "errors": len(job.errors),
            "seconds": round(job.seconds, 3),
            "per_item_s": round(job.seconds / job.n_computed, 5) if job.n_computed else None}


def _add_stats(per_rank: list[dict]) -> dict[str, Any]:
    """The ranks' stats together; per_item_s: encoder seconds per item on one rank."""
    total = {k: sum(s[k] for s in per_rank) for k in ("computed", "absent", "errors")}
    seconds = sum(s["seconds"] for s in per_rank)
    return total | {"seconds": round(seconds, 3),
                    "per_item_s": round(seconds / total["computed"], 5) if total["computed"] else None}


def _finish(job: _Job, all_ids: list[str], stats: dict, errors: list[dict]) -> None:
    """(rank 0) The folder's counts, errors and complete flag; stats: what this run did."""
    stored = job.entry.cached_pairs()
    final = {"n": len(stored), "n_present": _count_present(job.entry), "n_expected": len(all_ids),
             "complete": set(job.keys.items()) <= stored, "errors": errors}
    # nothing computed and nothing to change: read, never rewritten (a read-only cache works)
    if job.n_todo or any(job.entry.meta.get(k) != v for k, v in final.items()):
        job.entry.save_meta(**final)
    job.entry.stats = stats | {"cached": len(all_ids) - job.n_todo}


def _unique(encs: list[Encoder]) -> list[Encoder]:
    seen: dict[tuple[str, str], Encoder] = {}
    for e in encs:
        seen.setdefault((e.name, e.fingerprint()), e)
    names = [n for n, _ in seen]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"two different encoders are both named {dup}; give them different options or names")
    return list(seen.values())


def _run(jobs: list[_Job], rows: list[dict], decode: dict, workers: int, progress: bool) -> None:
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
            decoder = Decoder(modality, sampling=decode["sampling"], face_size=decode["face_size"],
                              no_face=decode["no_face"], images_are_faces=decode["images_are_faces"])
            for j in group:
                j.no_face = decoder.no_face_ids  # the same list, filled as clips are decoded
            task = bar.add_task(f"{modality}: {', '.join(j.encoder.name for j in group)}", total=len(needed))
            try:
                for row, item, error in _prefetch(needed, decoder, workers if modality != "text" else 1):
                    rid = str(row["id"])
                    for j in group:
                        if rid not in j.todo:
                            continue
                        if error is not None:
                            j.add_absent(rid, error)
                        elif item is ABSENT:
                            j.add_absent(rid)
                        else:
                            j.add_input(rid, item)
                    bar.advance(task)
                for j in group:
                    j.finish()
            finally:
                # Whatever happened (Ctrl-C, a broken encoder), keep the rows already computed.
                for j in group:
                    j.close()
                    if j.rank is not None:  # its errors and no-face ids, for rank 0 (also after a failure)
                        j.writer.put(lambda j=j, report=j.report(): j.entry.write_rank_report(j.rank, report))
                group[0].writer.wait()
                if decoder.no_face_ids and group[0].rank is None:
                    for j in group:
                        new = set(decoder.no_face_ids)
                        prev = [k for k in j.entry.meta.get("no_face", []) if k not in new]
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
        if s["errors"] > min(3, len(j.errors)):
            lines.append(f"    … {s['errors'] - min(3, len(j.errors))} more errors in {e.path / 'meta.json'}")
    if progress:
        from rich.console import Console

        Console(stderr=True, highlight=False).print("\n".join(lines), markup=False)
    for line in lines:
        log.info(line)
