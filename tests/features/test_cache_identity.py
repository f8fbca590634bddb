"""The cache key is the data's identity (issue 13): two corpora with the same name and ids never
share features, an edited file is extracted again (and its stale features are refused, not used),
the video decoding options are part of the entry, and `emofuse cache ls` shows every entry."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from emofuse.cli import app
from emofuse.corpora.base import MANIFEST_COLUMNS, Manifest
from emofuse.data.dataset import FeatureDataset
from emofuse.features.cache import list_entries
from emofuse.features.extract import extract
from emofuse.labels import LabelSet
from emofuse.media import write_video
from emofuse.media.audio import write_wav


def _corpus(folder, freq: float, n: int = 4) -> Manifest:
    """A corpus named 'csv' (as every users' table is) with ids row2..: tones at `freq` Hz."""
    folder.mkdir(parents=True)
    t = np.arange(8000) / 16000
    rows = []
    for i in range(n):
        wav = write_wav(folder / f"{i}.wav", (0.3 * np.sin(2 * np.pi * freq * (1 + 0.1 * i) * t)).astype(np.float32))
        rows.append({c: "" for c in MANIFEST_COLUMNS} | {"id": f"row{i + 2}", "split": "train", "fold": -1,
                                                         "label": "happy", "audio": str(wav), "text": f"say {freq}"})
    m = Manifest("csv", LabelSet("two", ("happy", "sad")), pd.DataFrame(rows, columns=MANIFEST_COLUMNS), {})
    m.save(folder / "m.csv")
    return m


def _features(m: Manifest, cache) -> np.ndarray:
    return FeatureDataset.from_manifest(m, cache, {"audio": "mfcc"}).features["audio"].vectors


def test_two_corpora_with_the_same_ids_never_share_features(tmp_path):
    a, b = _corpus(tmp_path / "a", 200.0), _corpus(tmp_path / "b", 900.0)
    (ea,) = extract(a, ["mfcc"], tmp_path / "cache", progress=False)
    (eb,) = extract(b, ["mfcc"], tmp_path / "cache", progress=False)
    assert ea.stats["computed"] == 4 and eb.stats["computed"] == 4 and eb.stats["cached"] == 0  # not "4 cached"
    fa, fb = _features(a, tmp_path / "cache"), _features(b, tmp_path / "cache")
    assert not np.allclose(fa, fb)  # each corpus gets its own media's features, whichever was extracted last
    (again,) = extract(a, ["mfcc"], tmp_path / "cache", progress=False)
    assert again.stats["computed"] == 0 and np.array_equal(_features(a, tmp_path / "cache"), fa)


def test_an_edited_file_is_extracted_again_and_stale_features_are_refused(tmp_path):
    a = _corpus(tmp_path / "a", 200.0)
    extract(a, ["mfcc"], tmp_path / "cache", progress=False)
    before = _features(a, tmp_path / "cache")
    path = a.df.loc[1, "audio"]
    write_wav(path, (0.3 * np.sin(2 * np.pi * 1500 * np.arange(12000) / 16000)).astype(np.float32))  # edited in place
    with pytest.raises(KeyError, match="media are not those"):
        _features(a, tmp_path / "cache")
    (e,) = extract(a, ["mfcc"], tmp_path / "cache", progress=False)
    assert e.stats["computed"] == 1 and e.stats["cached"] == 3
    after = _features(a, tmp_path / "cache")
    assert np.array_equal(after[[0, 2, 3]], before[[0, 2, 3]]) and not np.allclose(after[1], before[1])


def test_video_decoding_options_are_part_of_the_entry(tmp_path):
    rng = np.random.default_rng(0)
    clip = write_video(tmp_path / "c.mp4", (rng.integers(0, 255, (48, 64, 3), np.uint8) for _ in range(6)), 6)
    rows = [{c: "" for c in MANIFEST_COLUMNS} | {"id": "c", "split": "train", "fold": -1, "label": "happy", "video": str(clip)}]
    m = Manifest("vid", LabelSet("two", ("happy", "sad")), pd.DataFrame(rows, columns=MANIFEST_COLUMNS), {})
    (e1,) = extract(m, ["hog"], tmp_path / "cache", face_size=64, progress=False)
    (e2,) = extract(m, ["hog"], tmp_path / "cache", face_size=96, progress=False)
    assert e1.path != e2.path and e2.stats["computed"] == 1
    assert e1.meta["decoding"]["face_size"] == 64 and e2.meta["decoding"]["face_size"] == 96
    assert len(list_entries(tmp_path / "cache", "vid", "hog")) == 2


def test_cache_ls(tmp_path, monkeypatch):
    a = _corpus(tmp_path / "a", 200.0)
    extract(a, ["mfcc", "minilm"], tmp_path / "cache", progress=False)
    monkeypatch.setenv("COLUMNS", "250")
    r = CliRunner().invoke(app, ["cache", "ls", str(tmp_path / "cache")])
    assert r.exit_code == 0, r.output
    lines = [line for line in r.output.splitlines() if "│ csv" in line]
    assert len(lines) == 2 and any("mfcc" in x and "yes" in x for x in lines) and any("minilm" in x for x in lines)
    r = CliRunner().invoke(app, ["cache", "ls", str(tmp_path / "nothing")])
    assert r.exit_code == 1 and "no such cache folder" in r.output


def test_a_run_records_the_video_decoding_and_its_bundle_uses_it(tmp_path):
    from emofuse.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from emofuse.inference.bundle import read_spec
    from emofuse.training.run import train_run

    rng = np.random.default_rng(0)
    rows = []
    for i in range(12):
        clip = write_video(tmp_path / f"c{i}.mp4", (rng.integers(0, 255, (48, 64, 3), np.uint8) for _ in range(4)), 4)
        rows.append({c: "" for c in MANIFEST_COLUMNS} | {"id": f"c{i}", "split": ["train", "val", "test"][i % 3],
                                                         "fold": -1, "label": ["happy", "sad"][i % 2], "video": str(clip)})
    Manifest("vid", LabelSet("two", ("happy", "sad")), pd.DataFrame(rows, columns=MANIFEST_COLUMNS), {}).save(tmp_path / "m.csv")
    extract(Manifest.load(tmp_path / "m.csv"), ["hog"], tmp_path / "cache", face_size=64, video_sampling="k_uniform=2",
            progress=False)
    train_run(RunConfig(name="r", out=str(tmp_path / "runs"),
                        data=DataConfig(manifest=str(tmp_path / "m.csv"), cache=str(tmp_path / "cache"), features={"video": "hog"}),
                        model=ModelConfig(name="unimodal", params={"hidden": 8}),
                        train=TrainConfig(max_epochs=1, progress=False, logger="none")))
    spec = read_spec(tmp_path / "runs" / "r")
    assert spec.decoding.face_size == 64 and spec.decoding.video_sampling == "k_uniform=2"


def test_data_copied_elsewhere_keeps_its_features(tmp_path):
    """The same bytes at a new path with new modification times (data copied, unpacked or deployed
    again) are the same media: nothing is extracted again."""
    import os
    import shutil

    a = _corpus(tmp_path / "a", 200.0)
    (first,) = extract(a, ["mfcc"], tmp_path / "cache", progress=False)
    shutil.copytree(tmp_path / "a", tmp_path / "copy")  # copytree keeps mtimes: touch them as a deploy would
    for f in (tmp_path / "copy").glob("*.wav"):
        os.utime(f, ns=(10**18, 10**18))
    moved = a.df.assign(audio=[str(tmp_path / "copy" / os.path.basename(p)) for p in a.df["audio"]])
    b = Manifest("csv", a.label_set, moved, {})
    (again,) = extract(b, ["mfcc"], tmp_path / "cache", progress=False)
    assert first.stats["computed"] == 4 and again.stats["computed"] == 0 and again.stats["cached"] == 4
    assert np.array_equal(_features(b, tmp_path / "cache"), _features(a, tmp_path / "cache"))


def test_a_large_files_fingerprint_reads_three_places_and_sees_an_edit_in_them(tmp_path):
    from emofuse.features import cache

    big = tmp_path / "big.bin"
    data = bytearray(np.random.default_rng(0).integers(0, 255, 5 * (1 << 20), dtype=np.uint8).tobytes())
    big.write_bytes(bytes(data))
    base = cache.content_fingerprint(str(big))
    assert base[0] == len(data)
    data[-10] ^= 0xFF  # an edit in the last MiB
    big.write_bytes(bytes(data))
    assert cache.content_fingerprint(str(big)) != base
    small = tmp_path / "small.bin"
    small.write_bytes(b"abc")
    assert cache.content_fingerprint(str(small))[0] == 3


def test_extract_decodes_as_the_manifest_records(tmp_path):
    """A corpus of face crops records its decoding in the manifest (FER2013, CK+, bench paired), so a
    plain extract (the CLI, a grid) uses the images whole at 64 px, as the benches do; options given
    still win, and an unknown recorded option is refused."""
    from PIL import Image

    from emofuse.corpora.base import FACE_IMAGES
    from emofuse.features.extract import decoding_for

    img = tmp_path / "face.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 48), np.uint8)).save(img)
    rows = [{c: "" for c in MANIFEST_COLUMNS} | {"id": "f", "split": "train", "fold": -1, "label": "happy", "video": str(img)}]
    faces = Manifest("faces", LabelSet("two", ("happy", "sad")), pd.DataFrame(rows, columns=MANIFEST_COLUMNS),
                     {"decoding": FACE_IMAGES})
    (e,) = extract(faces, ["hog"], tmp_path / "cache", progress=False)
    assert e.meta["decoding"]["images_are_faces"] is True and e.meta["decoding"]["face_size"] == 64
    assert decoding_for(faces, face_size=96)["face_size"] == 96
    plain = Manifest("faces", faces.label_set, faces.df, {})
    assert decoding_for(plain)["images_are_faces"] is False
    with pytest.raises(ValueError, match="unknown options"):
        decoding_for(Manifest("faces", faces.label_set, faces.df, {"decoding": {"fps": 3}}))
