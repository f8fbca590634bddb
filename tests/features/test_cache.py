"""The feature cache and the extract driver, with fake text encoders that count their calls."""

from __future__ import annotations

import hashlib
import json
import logging
import os

import numpy as np
import pandas as pd
import pytest

from emofuse.corpora.base import MANIFEST_COLUMNS, Manifest
from emofuse.features import FeatureTable, MissingFeaturesError, extract, load_features
from emofuse.features.cache import CacheEntry, EntryLock, list_entries
from emofuse.features.encoders.base import Encoded, Encoder
from emofuse.features.extract import EncoderBroken
from emofuse.labels import MER6


class CountingEncoder(Encoder):
    """Text -> a deterministic vector from the text's hash; sequence = one row per word."""

    modality = "text"
    gives_sequence = True

    def __init__(self, name="fake", dim=4, version=1, fail_on=(), interrupt_after=None):
        self.name, self.dim, self.version = name, dim, version
        self.fail_on = set(fail_on)
        self.interrupt_after = interrupt_after
        self.calls = 0
        self.items = 0

    def config(self):
        return {"kind": "fake", "version": self.version, "dim": self.dim}

    @staticmethod
    def word_vec(word: str, dim: int) -> np.ndarray:
        h = hashlib.sha256(word.encode()).digest()
        return np.frombuffer(h, dtype=np.uint8)[:dim].astype(np.float32) / 255.0

    def encode(self, items):
        self.calls += 1
        out = []
        for text in items:
            if self.interrupt_after is not None and self.items >= self.interrupt_after:
                raise KeyboardInterrupt
            if text in self.fail_on:
                raise ValueError(f"cannot encode {text!r}")
            self.items += 1
            seq = np.stack([self.word_vec(w, self.dim) for w in text.split()])  # (T, dim)
            out.append(Encoded(seq.mean(0), seq))
        return out


def make_manifest(n=10, corpus="toy", empty=()) -> Manifest:
    rows = []
    for i in range(n):
        rows.append({c: "" for c in MANIFEST_COLUMNS} | {
            "id": f"utt{i:03d}", "split": "train", "fold": -1, "label": MER6.classes[i % 6],
            "text": "" if i in empty else f"sentence number {i} " + "word " * (i % 3),
        })
    return Manifest(corpus, MER6, pd.DataFrame(rows, columns=MANIFEST_COLUMNS))


def expected_vector(text: str, dim=4) -> np.ndarray:
    return np.stack([CountingEncoder.word_vec(w, dim) for w in text.split()]).mean(0)


def test_extract_then_load_aligned_by_id(tmp_path):
    m = make_manifest(10, empty={3})
    enc = CountingEncoder()
    (entry,) = extract(m, [enc], tmp_path, batch_size=4, shard_size=3, progress=False)
    assert entry.path == tmp_path / "toy" / f"fake-{enc.fingerprint()[:12]}"
    assert entry.complete and entry.meta["n"] == 10 and entry.meta["n_present"] == 9
    assert entry.stats["computed"] == 9 and entry.stats["absent"] == 1
    meta = json.loads((entry.path / "meta.json").read_text())
    assert meta["fingerprint"] == enc.fingerprint() and meta["dim"] == 4 and meta["modality"] == "text"
    assert meta["config"] == enc.config() and meta["complete"] and meta["errors"] == []
    # Shards: ids stored with the arrays, readable without pickle; no temporary files left.
    shards = sorted(entry.path.glob("shard-*.npz"))
    assert len(shards) == 5  # batches of 4 rows, shards of at most 3: 3 + 1, 3 + 1, 2
    with np.load(shards[0], allow_pickle=False) as z:
        assert set(z.files) == {"ids", "keys", "vectors", "present", "sequences", "offsets"}
        assert z["ids"].dtype.kind == "U" and z["vectors"].dtype == np.float32
        assert z["offsets"][-1] == len(z["sequences"])
    assert not [p for p in entry.path.iterdir() if p.name.startswith(".")]

    table = load_features(tmp_path, "toy", "fake")
    ids = m.ids
    rng = np.random.default_rng(0)
    shuffled = [ids[i] for i in rng.permutation(len(ids))]
    sub = table.lookup(shuffled)
    texts = dict(zip(m.df["id"], m.df["text"]))
    for k, v, s, p in zip(sub.ids, sub.vectors, sub.sequences, sub.present):
        if texts[k]:
            assert p
            np.testing.assert_allclose(v, expected_vector(texts[k]), rtol=1e-6)
            assert s.shape == (len(texts[k].split()), 4)
        else:  # absent modality: zero vector, empty sequence, present=False
            assert not p and not v.any() and s.shape == (0, 4)


def test_second_run_computes_nothing(tmp_path):
    m = make_manifest(7)
    enc = CountingEncoder()
    extract(m, [enc], tmp_path, batch_size=2, progress=False)
    calls = enc.calls
    before = sorted(p.name for p in (tmp_path / "toy").rglob("*"))
    (entry,) = extract(m, [enc], tmp_path, batch_size=2, progress=False)
    assert enc.calls == calls and entry.stats["computed"] == 0 and entry.stats["cached"] == 7
    assert sorted(p.name for p in (tmp_path / "toy").rglob("*")) == before
    # A bigger manifest computes only the new rows.
    (entry,) = extract(make_manifest(9), [enc], tmp_path, batch_size=2, progress=False)
    assert entry.stats["computed"] == 2 and entry.complete and entry.meta["n"] == 9


def test_resume_after_an_interruption(tmp_path):
    m = make_manifest(10)
    (entry,) = extract(make_manifest(2), [CountingEncoder()], tmp_path, progress=False)
    assert entry.complete
    enc = CountingEncoder(interrupt_after=3)
    with pytest.raises(KeyboardInterrupt):
        extract(m, [enc], tmp_path, batch_size=1, shard_size=2, progress=False)
    (folder,) = (tmp_path / "toy").iterdir()
    entry = CacheEntry(folder)
    # The finished rows were kept; the folder no longer claims to be complete.
    assert len(entry.cached_ids()) == 5 and not entry.complete
    assert not (folder / ".lock").exists()
    enc2 = CountingEncoder()
    (entry,) = extract(m, [enc2], tmp_path, batch_size=1, progress=False)
    assert enc2.items == 5 and entry.complete
    np.testing.assert_allclose(load_features(tmp_path, "toy", "fake").lookup(["utt009"]).vectors[0],
                               expected_vector(m.df["text"].iloc[9]), rtol=1e-6)


def test_corrupt_shard_is_set_aside_and_recomputed(tmp_path):
    m = make_manifest(6)
    extract(m, [CountingEncoder()], tmp_path, batch_size=3, shard_size=3, progress=False)  # two shards
    (folder,) = (tmp_path / "toy").iterdir()
    (folder / "shard-00001.npz").write_bytes(b"not a zip")
    enc = CountingEncoder()
    (entry,) = extract(m, [enc], tmp_path, progress=False)
    assert enc.items == 3 and entry.complete and (folder / "shard-00001.npz.corrupt").exists()


def test_a_failed_write_leaves_no_shard(tmp_path, monkeypatch):
    m = make_manifest(4)
    enc = CountingEncoder()

    def broken_savez(f, **arrays):
        f.write(b"half a shard")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        extract(m, [enc], tmp_path, progress=False)
    (folder,) = (tmp_path / "toy").iterdir()
    assert sorted(p.name for p in folder.iterdir()) == ["meta.json"]


def test_row_errors_are_recorded_not_fatal(tmp_path):
    m = make_manifest(6)
    bad = m.df["text"].iloc[2].strip()  # encoders get the text stripped
    enc = CountingEncoder(fail_on={bad})
    (entry,) = extract(m, [enc], tmp_path, batch_size=3, progress=False)
    assert entry.complete and entry.stats["errors"] == 1 and entry.stats["computed"] == 5
    assert entry.meta["errors"] == [{"id": "utt002", "message": f"ValueError: cannot encode {bad!r}"}]
    table = load_features(tmp_path, "toy", "fake")
    assert not table.lookup(["utt002"]).present[0] and table.lookup(["utt001"]).present[0]
    # Without retry_errors the failed row stays failed; with it, it is computed again and wins.
    fixed = CountingEncoder()
    extract(m, [fixed], tmp_path, progress=False)
    assert fixed.items == 0
    (entry,) = extract(m, [fixed], tmp_path, retry_errors=True, progress=False)
    assert fixed.items == 1 and entry.meta["errors"] == [] and entry.meta["n_present"] == 6
    table = load_features(tmp_path, "toy", "fake")
    assert table.lookup(["utt002"]).present[0] and len(table) == 6


def test_an_encoder_broken_on_everything_stops_the_run(tmp_path):
    class Broken(CountingEncoder):
        def encode(self, items):
            raise RuntimeError("weights not found")

    with pytest.raises(EncoderBroken, match="weights not found"):
        extract(make_manifest(5), [Broken()], tmp_path, batch_size=2, progress=False)


def test_several_fingerprints_newest_complete_wins(tmp_path, caplog):
    m = make_manifest(4)
    old, new = CountingEncoder(version=1), CountingEncoder(version=2)
    extract(m, [old], tmp_path, progress=False)
    extract(m, [new], tmp_path, progress=False)
    e_old, e_new = (CacheEntry.open(tmp_path, "toy", e) for e in (old, new))
    # Both ran within the same second here; make the order explicit.
    (e_old.path / "meta.json").write_text(json.dumps(dict(e_old.meta, updated="2000-01-01T00:00:00+00:00")))
    with caplog.at_level(logging.WARNING):
        table = load_features(tmp_path, "toy", "fake")
    assert table.meta["fingerprint"] == new.fingerprint()
    assert "2 cached versions" in caplog.text and new.fingerprint()[:12] in caplog.text
    assert load_features(tmp_path, "toy", "fake", fingerprint=old.fingerprint()[:12]).meta["fingerprint"] == old.fingerprint()
    assert load_features(tmp_path, "toy", old).meta["fingerprint"] == old.fingerprint()  # an Encoder pins it
    # An incomplete newest version is not picked silently.
    meta = json.loads((e_new.path / "meta.json").read_text())
    (e_new.path / "meta.json").write_text(json.dumps(dict(meta, complete=False)))
    assert load_features(tmp_path, "toy", "fake").meta["fingerprint"] == old.fingerprint()
    assert len(list_entries(tmp_path, "toy", "fake")) == 2


def test_lookup_and_load_errors_name_what_is_missing(tmp_path):
    extract(make_manifest(3), [CountingEncoder()], tmp_path, progress=False)
    table = load_features(tmp_path, "toy", "fake")
    with pytest.raises(MissingFeaturesError, match="'nope'"):
        table.lookup(["utt000", "nope"])
    with pytest.raises(FileNotFoundError, match="cached encoders for 'toy': fake"):
        load_features(tmp_path, "toy", "other")
    with pytest.raises(FileNotFoundError, match="corpora in the cache: toy"):
        load_features(tmp_path, "elsewhere", "fake")


def test_feature_table_lookup_keeps_requested_order():
    t = FeatureTable(["a", "b", "c"], np.arange(6, dtype=np.float32).reshape(3, 2), None, {})
    sub = t.lookup(["c", "a", "c"])
    assert sub.ids == ["c", "a", "c"] and sub.vectors[:, 0].tolist() == [4, 0, 4] and sub.present.all()


def test_one_writer_at_a_time(tmp_path):
    enc = CountingEncoder()
    entry = CacheEntry.open(tmp_path, "toy", enc)
    (entry.path / ".lock").write_text(str(os.getpid()))  # held by a live process
    with pytest.raises(RuntimeError, match="being written by process"):
        extract(make_manifest(2), [enc], tmp_path, progress=False)
    (entry.path / ".lock").write_text("999999999")  # left by a dead one: taken over
    with EntryLock(entry):
        pass
    assert not (entry.path / ".lock").exists()
