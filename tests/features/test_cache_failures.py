"""Known cache failures end in one line (issue 13): a busy cache, a full disk, a read-only cache.
On a full disk the shards already written stay and a rerun goes on from them; a no-op extract on a
complete cache writes nothing (so it works on a read-only disk)."""

from __future__ import annotations

import errno
import os

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import emofuse.features.cache as cache_mod
from emofuse.cli import app
from emofuse.corpora.base import MANIFEST_COLUMNS, Manifest
from emofuse.features.cache import CacheBusyError, CacheEntry
from emofuse.features.encoders.hf import build_encoder
from emofuse.features.extract import extract
from emofuse.labels import LabelSet
from emofuse.media.audio import write_wav


@pytest.fixture
def corpus(tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    for i in range(6):
        wav = write_wav(tmp_path / f"a{i}.wav", (0.2 * rng.standard_normal(4000)).astype(np.float32))
        rows.append({c: "" for c in MANIFEST_COLUMNS} | {"id": f"a{i}", "split": "train", "fold": -1, "label": "happy",
                                                         "audio": str(wav)})
    m = Manifest("fail", LabelSet("two", ("happy", "sad")), pd.DataFrame(rows, columns=MANIFEST_COLUMNS), {})
    m.save(tmp_path / "m.csv")
    return tmp_path, m


def _cli(*args):
    r = CliRunner().invoke(app, [str(a) for a in args])
    return r.exit_code, r.output


def _full_disk_after(n_shards: int, monkeypatch):
    real, written = cache_mod.atomic_write_bytes, []

    def write(path, fn):
        if path.name.startswith("shard-"):
            if len(written) >= n_shards:
                raise OSError(errno.ENOSPC, "No space left on device", str(path))
            written.append(path)
        return real(path, fn)

    monkeypatch.setattr(cache_mod, "atomic_write_bytes", write)
    return written


def test_a_full_disk_keeps_the_shards_written_and_says_so_in_one_line(corpus, monkeypatch):
    d, m = corpus
    written = _full_disk_after(2, monkeypatch)
    code, out = _cli("extract", "--manifest", d / "m.csv", "-e", "mfcc", "--cache", d / "cache", "--shard-size", 2)
    assert code == 1 and "no space left on the device" in out and "Traceback" not in out
    assert len([line for line in out.splitlines() if line.startswith("error:")]) == 1
    assert len(written) == 2
    monkeypatch.undo()
    (e,) = extract(m, ["mfcc"], d / "cache", shard_size=2, progress=False)
    assert e.stats["cached"] == 4 and e.stats["computed"] == 2 and e.complete  # 4 rows survived the full disk


def test_a_busy_cache_is_one_line(corpus):
    d, m = corpus
    entry = CacheEntry.open(d / "cache", "fail", build_encoder("mfcc"))
    (entry.path / ".lock").write_text(str(os.getppid()))  # a live process that is not us
    with pytest.raises(CacheBusyError):
        extract(m, ["mfcc"], d / "cache", progress=False)
    code, out = _cli("extract", "--manifest", d / "m.csv", "-e", "mfcc", "--cache", d / "cache")
    assert code == 1 and "is being written by process" in out and "Traceback" not in out
    code, out = _cli("--debug", "extract", "--manifest", d / "m.csv", "-e", "mfcc", "--cache", d / "cache")
    assert code == 1 and isinstance(CliRunner().invoke(app, ["--debug", "extract", "--manifest", str(d / "m.csv"), "-e",
                                                             "mfcc", "--cache", str(d / "cache")]).exception, CacheBusyError)


def test_a_complete_cache_is_read_never_rewritten(corpus, monkeypatch):
    d, m = corpus
    extract(m, ["mfcc"], d / "cache", progress=False)

    def read_only(path, fn):
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr(cache_mod, "atomic_write_bytes", read_only)
    (e,) = extract(m, ["mfcc"], d / "cache", progress=False)  # no-op: nothing written
    assert e.stats["cached"] == 6 and e.stats["computed"] == 0
    # a new row on the read-only cache: one line naming the folder
    m.df = pd.concat([m.df, m.df.iloc[[0]].assign(id="new")], ignore_index=True)
    m.save(d / "m2.csv")
    monkeypatch.setattr(cache_mod, "atomic_write_bytes", read_only)
    code, out = _cli("extract", "--manifest", d / "m2.csv", "-e", "mfcc", "--cache", d / "cache")
    assert code == 1 and "the folder is read-only" in out and "Traceback" not in out


def test_unreadable_manifest_is_one_line(tmp_path):
    (tmp_path / "m.csv").write_text("id,split\n1,train\n")
    (tmp_path / "m.meta.json").write_text("{not json")
    code, out = _cli("extract", "--manifest", tmp_path / "m.csv", "-e", "mfcc", "--cache", tmp_path / "c")
    assert code == 1 and "error:" in out and "Traceback" not in out
