"""The feature cache: one folder per (corpus, encoder, fingerprint[, video decoding]), rows stored
with their ids and the identity of the media they came from.

    CACHE/<corpus>/<encoder.name>-<fingerprint[:12]>[-v<decoding[:8]>]/
        meta.json            encoder name, modality, dim, full fingerprint, config, decoding (video:
                             sampling, face size, no-face policy, images as faces), created/updated,
                             n (rows stored), n_present, n_expected, complete, errors [{id, message}]
        shard-00000.npz      ids (N,) unicode, keys (N,) the media identity of each row (media_key),
        shard-00001.npz      vectors (N, D) float32, present (N,) bool and, for encoders that give
                             sequences, sequences (sum T, D) float32 + offsets (N+1,)
        shard-00002-r001.npz a shard written by rank 1 of a distributed extract (torchrun)
        errors-r001.json     rank 1's row errors and no-face ids while a distributed extract runs;
                             rank 0 merges them into meta.json at the end (or the next run does)

A row's key is the identity of what its features were computed from: the size and content of the
file the decoder reads (the whole file up to 3 MiB, beyond that its first, middle and last MiB; the
text itself for text), with the row's id. So two corpora with the same name and ids never share
features and an edited file is extracted again, while data copied, moved or unpacked again (new
paths and modification times, same bytes) keeps its features; the video decoding options are part
of the folder. Shards written before keys existed are
read by id, and extract computes their rows again.

Every file is written to a temporary name and moved into place (os.replace), so a killed run leaves
whole shards only; the next run reads the ids already stored and computes the rest. Rows are always
found by id, never by position. When an id occurs in more than one shard (a row retried after an
error), the later shard wins (shards are ordered by number, then rank). One writer per folder at a
time, enforced by a lock file; a distributed extract is one writer: rank 0 holds the lock, every rank
writes shards named by its rank, and the ranks' rows are disjoint.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from emofuse.media.decode import media_path

if TYPE_CHECKING:
    from emofuse.features.encoders.base import Encoder

log = logging.getLogger(__name__)

META = "meta.json"
_SHARD = re.compile(r"^shard-(\d{5,})(?:-r(\d{3,}))?\.npz$")
_REPORT = re.compile(r"^errors-r(\d{3,})\.json$")


class MissingFeaturesError(KeyError):
    """Ids asked for that the cache does not hold."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


_SAMPLE = 1 << 20  # bytes read at each of three places of a file larger than 3 of them


def content_fingerprint(path: str) -> list:
    """[size, sha1] of a file: all of it up to 3 MiB, beyond that its size with its first, middle and
    last MiB (a long video costs three reads, not the whole file). Stable under copying and moving."""
    size = os.path.getsize(path)
    h = hashlib.sha1()
    with open(path, "rb") as f:
        if size <= 3 * _SAMPLE:
            h.update(f.read())
        else:
            for at in (0, size // 2 - _SAMPLE // 2, size - _SAMPLE):
                f.seek(at)
                h.update(f.read(_SAMPLE))
    return [size, h.hexdigest()]


def media_key(row: dict, modality: str) -> str:
    """The identity of what a row's `modality` features are computed from: its id and the text, or
    the size and content of the file it is decoded from (media_path, content_fingerprint; 16 hex
    characters)."""
    ident: list = [str(row.get("id", "")), modality]
    if modality == "text":
        ident.append(str(row.get("text") or "").strip())
    elif path := media_path(row, modality):
        try:
            ident += content_fingerprint(path)
        except OSError:
            ident += [os.path.realpath(path), "missing"]
    return hashlib.sha1(json.dumps(ident).encode()).hexdigest()[:16]


def row_keys(df, modality: str) -> list[str]:
    """media_key of every row of a manifest table, in order."""
    return [media_key(r, modality) for r in df.to_dict("records")]


def decoding_tag(decoding: dict | None) -> str:
    """8 hex characters naming a video decoding (its options), '' for none."""
    if not decoding:
        return ""
    return hashlib.sha1(json.dumps(decoding, sort_keys=True).encode()).hexdigest()[:8]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def atomic_write_bytes(path: Path, write) -> None:
    """Call write(fileobj) on a temporary file beside `path`, then move it into place."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_json(path: Path, obj: dict) -> None:
    atomic_write_bytes(path, lambda f: f.write(json.dumps(obj, indent=2, sort_keys=False).encode()))


# ---------------------------------------------------------------------------------------------
# the table that readers get


@dataclass
class FeatureTable:
    """Features of one encoder on one corpus, row i belonging to ids[i]."""

    ids: list[str]
    vectors: np.ndarray  # (N, D) float32; zeros where not present
    sequences: list[np.ndarray] | None  # N arrays (T_i, D); (0, D) where not present; None: encoder gives none
    meta: dict = field(default_factory=dict)
    present: np.ndarray | None = None  # (N,) bool: False where the modality was absent or failed to decode
    keys: list[str] | None = None  # (N,) media_key of each row; "" for rows stored before keys existed

    def __post_init__(self) -> None:
        if self.present is None:
            self.present = np.ones(len(self.ids), dtype=bool)
        if self.keys is None:
            self.keys = [""] * len(self.ids)
        self._index = {k: i for i, k in enumerate(self.ids)}  # an id stored with several keys: the last
        self._pair = {(k, key): i for i, (k, key) in enumerate(zip(self.ids, self.keys))}
        self._keyed = {k for k, key in zip(self.ids, self.keys) if key}

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def indices(self, ids: list[str], keys: list[str] | None = None) -> np.ndarray:
        """Row index of each id (with keys: of each (id, media key) pair; a row stored without a key
        answers for its id); raises MissingFeaturesError naming the ids not held, or whose media
        are not those the features were computed from."""
        if keys is not None:
            idx, stale = [], []
            for k, key in zip(ids, keys):
                if (k, key) in self._pair:
                    idx.append(self._pair[(k, key)])
                elif k in self._index and k not in self._keyed:  # stored before keys existed
                    idx.append(self._index[k])
                elif k in self._index:
                    stale.append(k)
                else:
                    idx.append(-1)
            if stale:
                shown = ", ".join(map(repr, stale[:5])) + (f", … {len(stale) - 5} more" if len(stale) > 5 else "")
                raise MissingFeaturesError(
                    f"{len(stale)} rows' media are not those their {self.meta.get('encoder', '')} features in "
                    f"{self.meta.get('path', 'the cache')} were computed from (edited or moved files, or another corpus "
                    f"with the same name and ids): {shown}; run extract on this manifest again")
            if -1 not in idx:
                return np.array(idx, dtype=np.int64)
        missing = [k for k in ids if k not in self._index]
        if missing:
            shown = ", ".join(map(repr, missing[:10])) + (f", … {len(missing) - 10} more" if len(missing) > 10 else "")
            where = self.meta.get("path", "the cache")
            raise MissingFeaturesError(
                f"{len(missing)} of {len(ids)} ids have no {self.meta.get('encoder', '')} features in {where}: "
                f"{shown} (run extract on the manifest that holds them)"
            )
        return np.array([self._index[k] for k in ids], dtype=np.int64)

    def lookup(self, ids: list[str], keys: list[str] | None = None) -> "FeatureTable":
        """The rows of `ids`, in that order (aligned by id, whatever order the cache holds them in);
        with keys (media_key of each), the rows computed from exactly those media."""
        ids = [str(k) for k in ids]
        idx = self.indices(ids, keys)
        seqs = [self.sequences[i] for i in idx] if self.sequences is not None else None
        return FeatureTable(ids, self.vectors[idx], seqs, self.meta, self.present[idx], [self.keys[i] for i in idx])


# ---------------------------------------------------------------------------------------------
# one cache folder


def entry_dir(cache_dir: str | Path, corpus: str, name: str, fingerprint: str, decoding: dict | None = None) -> Path:
    tag = decoding_tag(decoding)
    return Path(cache_dir) / corpus / (f"{name}-{fingerprint[:12]}" + (f"-v{tag}" if tag else ""))


class CacheEntry:
    """One folder of the cache: the features of one encoder (at one fingerprint) on one corpus."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        meta_path = self.path / META
        if not meta_path.is_file():
            raise FileNotFoundError(f"not a feature cache folder (no {META}): {self.path}")
        self.meta: dict[str, Any] = json.loads(meta_path.read_text())
        self.stats: dict[str, Any] = {}  # what the last extract did here (filled by extract)

    def __repr__(self) -> str:
        return (f"CacheEntry({self.name!r}, corpus={self.corpus!r}, n={self.meta.get('n', 0)}, "
                f"complete={self.meta.get('complete', False)}, path={str(self.path)!r})")

    @property
    def name(self) -> str:
        return self.meta["encoder"]

    @property
    def corpus(self) -> str:
        return self.meta["corpus"]

    @property
    def fingerprint(self) -> str:
        return self.meta["fingerprint"]

    @property
    def complete(self) -> bool:
        return bool(self.meta.get("complete", False))

    @classmethod
    def open(cls, cache_dir: str | Path, corpus: str, encoder: "Encoder", decoding: dict | None = None) -> "CacheEntry":
        """The folder for `encoder` on `corpus` (and, for video, `decoding`: the decoding options),
        created with its meta.json when new."""
        fp = encoder.fingerprint()
        path = entry_dir(cache_dir, corpus, encoder.name, fp, decoding)
        if (path / META).is_file():
            entry = cls(path)
            if entry.fingerprint != fp:  # 48 bits of sha256 collided, or the folder was edited by hand
                raise CacheError(f"{path} holds fingerprint {entry.fingerprint}, not {fp}; move it away")
            return entry
        path.mkdir(parents=True, exist_ok=True)
        meta = {
            "encoder": encoder.name,
            "corpus": corpus,
            "modality": encoder.modality,
            "dim": int(encoder.dim),
            "gives_sequence": bool(encoder.gives_sequence),
            "fingerprint": fp,
            "config": encoder.config(),
            "decoding": decoding or {},
            "weights_digest": encoder.weights_digest(),
            "created": _now(),
            "updated": _now(),
            "n": 0,
            "n_present": 0,
            "n_expected": None,
            "complete": False,
            "errors": [],
        }
        _write_json(path / META, meta)
        return cls(path)

    def save_meta(self, **updates: Any) -> None:
        self.meta.update(updates, updated=_now())
        _write_json(self.path / META, self.meta)

    # -- shards ----------------------------------------------------------------------------------

    def shard_paths(self) -> list[Path]:
        """The shards in the order they were written: by number, then rank (ranks of one run hold
        disjoint rows, so their relative order does not matter)."""
        found = [((int(m.group(1)), int(m.group(2) or -1)), p) for p in self.path.iterdir() if (m := _SHARD.match(p.name))]
        return [p for _, p in sorted(found)]

    def write_shard(
        self,
        ids: list[str],
        vectors: np.ndarray,
        present: np.ndarray,
        sequences: list[np.ndarray] | None = None,
        keys: list[str] | None = None,
        rank: int | None = None,
    ) -> Path:
        """Store rows as the next shard (atomically). vectors (N, D); sequences N arrays (T_i, D);
        keys: the media_key of each row (rows without one are read by id and extracted again);
        rank: the writer's rank in a distributed extract (in the file name, so ranks never collide)."""
        dim = int(self.meta["dim"])
        vectors = np.asarray(vectors, dtype=np.float32).reshape(len(ids), dim)
        arrays: dict[str, np.ndarray] = {
            "ids": np.asarray([str(k) for k in ids], dtype=str),
            "vectors": vectors,
            "present": np.asarray(present, dtype=bool).reshape(len(ids)),
        }
        if keys is not None:
            if len(keys) != len(ids):
                raise ValueError(f"{len(keys)} keys for {len(ids)} ids")
            arrays["keys"] = np.asarray([str(k) for k in keys], dtype=str)
        if sequences is not None:
            if len(sequences) != len(ids):
                raise ValueError(f"{len(sequences)} sequences for {len(ids)} ids")
            lengths = [len(s) for s in sequences]
            arrays["offsets"] = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
            arrays["sequences"] = (
                np.concatenate([np.asarray(s, dtype=np.float32).reshape(-1, dim) for s in sequences])
                if sum(lengths) else np.zeros((0, dim), np.float32)
            )
        paths = self.shard_paths()
        index = max(int(_SHARD.match(p.name).group(1)) for p in paths) + 1 if paths else 0
        path = self.path / (f"shard-{index:05d}" + (f"-r{rank:03d}" if rank is not None else "") + ".npz")
        atomic_write_bytes(path, lambda f: np.savez(f, **arrays))
        return path

    # -- the ranks' reports (distributed extract) ------------------------------------------------

    def rank_reports(self) -> list[Path]:
        return sorted(p for p in self.path.iterdir() if _REPORT.match(p.name))

    def write_rank_report(self, rank: int, report: dict) -> None:
        """report: {"errors": [{id, message}] new this run, "fixed": ids of earlier errors computed
        again without one, "no_face": ids}. Replaced at each write; merged by merge_rank_reports."""
        _write_json(self.path / f"errors-r{rank:03d}.json", report)

    def merge_rank_reports(self) -> bool:
        """Fold the ranks' reports into meta.json (errors: the earlier ones not computed again, then
        the new ones; no_face likewise) and delete them. False when there were none."""
        paths = self.rank_reports()
        if not paths:
            return False
        reports = [json.loads(p.read_text()) for p in paths]
        new = [e for r in reports for e in r.get("errors", [])]
        redone = {e["id"] for e in new} | {k for r in reports for k in r.get("fixed", [])}
        no_face = [k for r in reports for k in r.get("no_face", [])]
        updates: dict[str, Any] = {"errors": [e for e in self.meta.get("errors", []) if e["id"] not in redone] + new}
        if no_face:
            seen = set(no_face)
            updates["no_face"] = [k for k in self.meta.get("no_face", []) if k not in seen] + no_face
        self.save_meta(**updates)
        for p in paths:
            p.unlink(missing_ok=True)
        return True

    def cached_ids(self) -> set[str]:
        """Ids stored in the shards (with or without a media key)."""
        return {k for k, _ in self.cached_pairs(with_legacy=True)}

    def cached_pairs(self, with_legacy: bool = False) -> set[tuple[str, str]]:
        """(id, media key) of the rows stored; rows of shards written before keys existed only with
        with_legacy (key ""). A shard that cannot be read is renamed *.corrupt (its rows are then
        computed again) rather than stopping the run."""
        ids: set[tuple[str, str]] = set()
        for p in self.shard_paths():
            try:
                with np.load(p, allow_pickle=False) as z:
                    if "keys" in z.files:
                        ids.update(zip(z["ids"].tolist(), z["keys"].tolist()))
                    elif with_legacy:
                        ids.update((k, "") for k in z["ids"].tolist())
            except Exception as e:  # zipfile.BadZipFile, KeyError, ValueError, OSError
                log.warning("unreadable shard %s (%s); moved aside as .corrupt, its rows will be recomputed", p, e)
                os.replace(p, p.with_name(p.name + ".corrupt"))
        return ids

    def load(self) -> FeatureTable:
        dim = int(self.meta["dim"])
        with_seq = bool(self.meta.get("gives_sequence"))
        where: dict[tuple[str, str], tuple[int, int]] = {}  # (id, key) -> (shard, row); later shards overwrite
        shards = []
        for s, p in enumerate(self.shard_paths()):
            try:
                with np.load(p, allow_pickle=False) as z:
                    data = {k: z[k] for k in z.files}
            except Exception as e:
                raise CacheError(f"cannot read feature shard {p}: {e}; delete it and run extract again") from e
            shards.append(data)
            keys = data["keys"].tolist() if "keys" in data else [""] * len(data["ids"])
            for r, pair in enumerate(zip(data["ids"].tolist(), keys)):
                where.pop(pair, None)  # re-inserted: the newest row of an id comes last
                where[pair] = (s, r)
        pairs = list(where)
        ids = [k for k, _ in pairs]
        vectors = np.zeros((len(ids), dim), np.float32)
        present = np.zeros(len(ids), bool)
        sequences: list[np.ndarray] | None = [] if with_seq else None
        for i, pair in enumerate(pairs):
            s, r = where[pair]
            d = shards[s]
            vectors[i] = d["vectors"][r]
            present[i] = d["present"][r]
            if sequences is not None:
                if "offsets" in d:
                    a, b = d["offsets"][r], d["offsets"][r + 1]
                    sequences.append(d["sequences"][a:b])
                else:
                    sequences.append(np.zeros((0, dim), np.float32))
        meta = dict(self.meta, path=str(self.path))
        return FeatureTable(ids, vectors, sequences, meta, present, [key for _, key in pairs])


# ---------------------------------------------------------------------------------------------
# lock: one writer per folder


class CacheError(RuntimeError):
    """A feature cache that cannot be used as asked (busy, incomplete, damaged); the message names
    the folder and what to do."""


class CacheBusyError(CacheError):
    """Another live process is writing the cache folder."""


class EntryLock:
    """An exclusive lock file (O_EXCL) holding the writer's pid; a lock left by a dead process is taken over."""

    def __init__(self, entry: CacheEntry):
        self.path = entry.path / ".lock"

    def __enter__(self) -> "EntryLock":
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                try:
                    pid = int(self.path.read_text().strip() or 0)
                except (OSError, ValueError):
                    pid = 0
                if pid and _alive(pid):
                    raise CacheBusyError(
                        f"{self.path.parent} is being written by process {pid}; wait for it, or delete "
                        f"{self.path} if that process is not an emofuse extract"
                    ) from None
                self.path.unlink(missing_ok=True)  # stale
                continue
            with os.fdopen(fd, "w") as f:
                f.write(str(os.getpid()))
            return self
        raise RuntimeError(f"could not take the lock {self.path}")

    def __exit__(self, *exc) -> None:
        self.path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ---------------------------------------------------------------------------------------------
# readers


def list_entries(cache_dir: str | Path, corpus: str, encoder_name: str | None = None) -> list[CacheEntry]:
    """Cache folders of `corpus` (of one encoder name when given), oldest first."""
    root = Path(cache_dir) / corpus
    if not root.is_dir():
        return []
    out = []
    for d in root.iterdir():
        if not (d / META).is_file():
            continue
        if encoder_name is not None and not re.fullmatch(re.escape(encoder_name) + r"-[0-9a-f]{12}(-v[0-9a-f]{8})?", d.name):
            continue
        try:
            e = CacheEntry(d)
        except (OSError, ValueError) as err:
            log.warning("skipping unreadable cache folder %s: %s", d, err)
            continue
        if encoder_name is None or e.name == encoder_name:
            out.append(e)
    return sorted(out, key=lambda e: (e.meta.get("updated", ""), e.path.name))


def load_features(
    cache_dir: str | Path,
    corpus: str,
    encoder_name: "str | Encoder",
    fingerprint: str | None = None,
) -> FeatureTable:
    """The cached features of one encoder on one corpus.

    encoder_name: a name (e.g. 'minilm', 'hf-roberta-base'), a spec string as extract takes it
      ('hf:FacebookAI/roberta-base@layers=last4' -> its name), or an Encoder (its fingerprint is then used).
    fingerprint: the full fingerprint or a prefix of it (12 characters, as in the folder name). Without
    it, the newest complete folder is used, with a warning when there are several. (A spec string
    does not pin the fingerprint: features made on a GPU in bf16 stay usable on a CPU machine.)"""
    if isinstance(encoder_name, str) and (encoder_name.startswith("hf:") or "@" in encoder_name):
        from emofuse.features.encoders.hf import build_encoder

        encoder_name = build_encoder(encoder_name).name
    if not isinstance(encoder_name, str):
        fingerprint = fingerprint or encoder_name.fingerprint()
        encoder_name = encoder_name.name
    entries = list_entries(cache_dir, corpus, encoder_name)
    if not entries:
        have = sorted({e.name for e in list_entries(cache_dir, corpus)})
        corpora = sorted(p.name for p in Path(cache_dir).iterdir() if p.is_dir()) if Path(cache_dir).is_dir() else []
        raise FileNotFoundError(
            f"no cached {encoder_name!r} features for corpus {corpus!r} in {cache_dir}; "
            f"cached encoders for {corpus!r}: {', '.join(have) or 'none'}; corpora in the cache: {', '.join(corpora) or 'none'}"
        )
    if fingerprint is not None:
        chosen = [e for e in entries if e.fingerprint.startswith(fingerprint)]
        if not chosen:
            raise FileNotFoundError(
                f"no {encoder_name!r} features with fingerprint {fingerprint[:12]}… for {corpus!r}; "
                f"cached fingerprints: {', '.join(e.fingerprint[:12] for e in entries)}"
            )
        entry = chosen[-1]
        if not entry.complete:
            log.warning("%s is incomplete (%s of %s rows); loading what is there", entry.path,
                        entry.meta.get("n"), entry.meta.get("n_expected"))
        return entry.load()
    complete = [e for e in entries if e.complete]
    if not complete:
        e = entries[-1]
        raise CacheError(
            f"the cached {encoder_name!r} features for {corpus!r} are incomplete ({e.meta.get('n')} of "
            f"{e.meta.get('n_expected')} rows in {e.path}); run extract again to finish them, or pass fingerprint= to load them anyway"
        )
    entry = complete[-1]
    if len(entries) > 1:
        log.warning(
            "%d cached versions of %r for %r (fingerprints %s); using the newest complete one, %s (updated %s). "
            "Pass fingerprint= to choose another.",
            len(entries), encoder_name, corpus, ", ".join(e.fingerprint[:12] for e in entries),
            entry.fingerprint[:12], entry.meta.get("updated"),
        )
    return entry.load()
