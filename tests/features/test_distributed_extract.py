"""Distributed extraction (issue 14): ranks launched by torchrun (or by hand, with the variables
torchrun sets) share the rows still to compute and give what one process gives; a rank that fails
stops the others instead of leaving them waiting, and a rerun computes only what is missing."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from emofuse.corpora.base import MANIFEST_COLUMNS, Manifest
from emofuse.features import extract, load_features
from emofuse.features.cache import CacheEntry
from emofuse.labels import MER6
from emofuse.media.audio import write_wav
from tests.features import tiny_hf
from tests.features.test_cache import CountingEncoder, make_manifest

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[2]
WORDS = "I am so happy today what a joyful day the table is brown she was angry and sad".split()


def _env(**extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE")}
    return env | {"OMP_WAIT_POLICY": "PASSIVE", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)} | extra


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, Path]:
    """24 rows of text of 1-13 words and wavs of 0.2-0.75 s; some rows lack one or the other."""
    d = tmp_path_factory.mktemp("dist")
    bert = tiny_hf.build("bert", d / "bert")
    rng = np.random.default_rng(0)
    rows = []
    for i in range(24):
        text = " ".join(rng.choice(WORDS, size=int(rng.integers(1, 14)))) if i % 7 else ""
        wave = (0.1 * rng.standard_normal(int(rng.integers(3000, 12000)))).astype(np.float32)
        wav = str(write_wav(d / f"a{i}.wav", wave)) if i % 5 else ""
        rows.append({c: "" for c in MANIFEST_COLUMNS} | {"id": f"u{i:02d}", "split": "train", "fold": -1,
                                                         "label": MER6.classes[i % 6], "text": text, "audio": wav})
    Manifest("dist", MER6, pd.DataFrame(rows, columns=MANIFEST_COLUMNS)).save(d / "m.csv")
    return d / "m.csv", bert


def _same_tables(a, b) -> None:
    assert sorted(a.ids) == sorted(b.ids)
    b = b.lookup(a.ids)
    np.testing.assert_array_equal(a.present, b.present)
    # Two processes with other threads and other batches (padding) sum in another float32 order, so values
    # agree to rounding, not bit for bit: CI once saw an MFCC coefficient of 0.0316 differ by 3.3e-6 in a
    # frame whose c0 is -117. A wrong or shifted row differs by orders of magnitude more than this.
    np.testing.assert_allclose(a.vectors, b.vectors, rtol=1e-4, atol=1e-5)
    for sa, sb in zip(a.sequences or [], b.sequences or []):
        np.testing.assert_allclose(sa, sb, rtol=1e-4, atol=1e-5)


def test_torchrun_two_ranks_give_what_one_process_gives(corpus, tmp_path):
    manifest, bert = corpus
    encoders = [f"hf:{bert}", "mfcc"]
    cmd = [str(BIN / "torchrun"), "--standalone", "--nproc_per_node", "2", "--no-python", str(BIN / "emofuse"),
           "extract", "--manifest", str(manifest), "--cache", str(tmp_path / "two"), "--batch-size", "4"]
    for e in encoders:
        cmd += ["-e", e]
    r = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]

    m = Manifest.load(manifest)
    one = extract(m, encoders, tmp_path / "one", batch_size=4, progress=False)
    for e in one:
        two = CacheEntry(tmp_path / "two" / "dist" / e.path.name)  # the same folder name: the same fingerprint
        assert two.complete and two.meta["n"] == 24 and two.meta["n_present"] == e.meta["n_present"]
        names = sorted(p.name for p in two.path.iterdir())
        # each rank wrote its own shards; the ranks' reports were merged and removed; no lock left
        assert any(n.endswith("-r000.npz") for n in names) and any(n.endswith("-r001.npz") for n in names)
        assert not [n for n in names if n.startswith(("errors-r", "."))]
        _same_tables(load_features(tmp_path / "one", "dist", e.name), two.load())


# Each rank runs this with the environment torchrun would give it; rank 1's encoder is broken.
_RANK = textwrap.dedent("""
    import os, sys
    from tests.features.test_cache import CountingEncoder, make_manifest
    from emofuse.features.extract import extract

    class BrokenOnRank1(CountingEncoder):
        def encode(self, items):
            if os.environ["RANK"] == "1":
                raise RuntimeError("weights not found")
            return super().encode(items)

    extract(make_manifest(12), [BrokenOnRank1()], sys.argv[1], batch_size=2, progress=False, dist_timeout_min=2)
""")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_failing_rank_stops_the_others_and_a_rerun_finishes(tmp_path):
    port = _free_port()
    procs = [subprocess.Popen([sys.executable, "-c", _RANK, str(tmp_path)], cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True,
                              env=_env(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2", RANK=str(r),
                                       LOCAL_RANK=str(r), LOCAL_WORLD_SIZE="2"))
             for r in range(2)]
    outs = [p.communicate(timeout=120)[0] for p in procs]  # neither waits for the timeout (2 min)
    assert all(p.returncode != 0 for p in procs), outs
    assert "extract failed on rank 1: EncoderBroken" in outs[0] and "weights not found" in outs[1]

    (folder,) = (tmp_path / "toy").iterdir()
    entry = CacheEntry(folder)
    assert not entry.complete and len(entry.cached_ids()) == 6  # rank 0's half, kept
    assert not (folder / ".lock").exists()
    enc = CountingEncoder()
    (entry,) = extract(make_manifest(12), [enc], tmp_path, progress=False)
    assert enc.items == 6 and entry.complete and entry.stats["cached"] == 6
