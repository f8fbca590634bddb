"""The synthetic demo corpus: layout, determinism, and that each modality carries its label as
designed (and carries nothing where the truth file says it was corrupted)."""

from __future__ import annotations

import csv
import re

import librosa
import numpy as np
import pytest

from emofuse.corpora.demo import CLASSES, SPEAKERS, TEMPLATES, _plan, make_demo_corpus, synth_voice
from emofuse.media import FaceDetector, face_track, iter_frames, load_audio

N_PER_CLASS = 2
N_UNLABELLED = 4
TINY = dict(n_per_class=N_PER_CLASS, n_unlabelled=N_UNLABELLED, duration=1.0, progress=False)


def _rows(path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_demo_corpus(tmp_path_factory.mktemp("demo") / "a", seed=3, **TINY)


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """Nothing corrupted: every modality shows its label."""
    return make_demo_corpus(tmp_path_factory.mktemp("demo") / "clean", seed=4, p_corrupt=0.0, **TINY)


def test_layout(corpus):
    assert "synthetic" in (corpus / "SYNTHETIC").read_text().lower()
    labels = _rows(corpus / "track1_train_disdim.csv")
    cands = _rows(corpus / "track_all_candidates.csv")
    subs = _rows(corpus / "subtitle_chieng.csv")
    assert list(labels[0]) == ["name", "discrete", "valence"]
    assert list(cands[0]) == ["name"]
    assert list(subs[0]) == ["name", "chinese", "english"]
    assert len(labels) == N_PER_CLASS * len(CLASSES)
    assert sorted(r["discrete"] for r in labels) == sorted(CLASSES * N_PER_CLASS)
    assert all(-5 <= float(r["valence"]) <= 5 for r in labels)
    names = [r["name"] for r in cands]
    assert len(names) == len(set(names)) == len(labels) + N_UNLABELLED
    assert all(re.fullmatch(r"sample_\d{8}", n) for n in names)
    assert {r["name"] for r in labels} < set(names)  # the extras have no label row
    assert [r["name"] for r in subs] == names and all(r["english"] for r in subs)
    for n in names:
        assert (corpus / "video" / f"{n}.mp4").is_file() and (corpus / "audio" / f"{n}.wav").is_file()


def test_media_format(corpus):
    name = _rows(corpus / "track_all_candidates.csv")[0]["name"]
    frames = list(iter_frames(corpus / "video" / f"{name}.mp4"))
    assert len(frames) == 8 and frames[0].image.shape == (128, 128, 3)  # 1 s at 8 fps
    wav = load_audio(corpus / "audio" / f"{name}.wav")
    track = load_audio(corpus / "video" / f"{name}.mp4")
    assert len(wav) == len(track) == 16000
    assert np.corrcoef(wav, track)[0, 1] > 0.95


def test_deterministic(corpus, tmp_path):
    again = make_demo_corpus(tmp_path / "b", seed=3, **TINY)
    tables = ["track1_train_disdim.csv", "track_all_candidates.csv", "subtitle_chieng.csv", "synthetic_truth.csv"]
    for f in [*tables, "SYNTHETIC"]:
        assert (again / f).read_bytes() == (corpus / f).read_bytes(), f
    names = [r["name"] for r in _rows(corpus / "track_all_candidates.csv")]
    for n in names:
        assert (again / "audio" / f"{n}.wav").read_bytes() == (corpus / "audio" / f"{n}.wav").read_bytes()
    for n in names[:3]:
        a = np.stack([f.image for f in iter_frames(again / "video" / f"{n}.mp4")])
        b = np.stack([f.image for f in iter_frames(corpus / "video" / f"{n}.mp4")])
        np.testing.assert_array_equal(a, b)
    other = make_demo_corpus(tmp_path / "c", seed=5, **TINY)
    assert (other / "subtitle_chieng.csv").read_bytes() != (corpus / "subtitle_chieng.csv").read_bytes()


def test_rerun_is_a_no_op(corpus):
    stamp = (corpus / "track_all_candidates.csv").stat().st_mtime_ns
    make_demo_corpus(corpus, seed=3, **TINY)
    assert (corpus / "track_all_candidates.csv").stat().st_mtime_ns == stamp


def test_truth_file(corpus, clean):
    truth = _rows(corpus / "synthetic_truth.csv")
    assert list(truth[0]) == ["name", "label", "text_corrupt", "face_corrupt", "audio_corrupt", "speaker"]
    assert [r["name"] for r in truth] == [r["name"] for r in _rows(corpus / "track_all_candidates.csv")]
    labels = {r["name"]: r["discrete"] for r in _rows(corpus / "track1_train_disdim.csv")}
    assert all(labels.get(r["name"], r["label"]) == r["label"] for r in truth)
    assert all(r[k] in ("0", "1") for r in truth for k in ("text_corrupt", "face_corrupt", "audio_corrupt"))
    flags = ("text_corrupt", "face_corrupt", "audio_corrupt")
    assert all(r[k] == "0" for r in _rows(clean / "synthetic_truth.csv") for k in flags)


def test_corruption_rates_are_independent_per_modality():
    plan = _plan(dict(n_per_class=300, n_unlabelled=0, seed=0, p_corrupt=0.35))
    flags = np.array([[c["text_corrupt"], c["face_kind"] is not None, c["audio_corrupt"]] for c in plan], dtype=float)
    np.testing.assert_allclose(flags.mean(0), 0.35, atol=0.03)
    corr = np.corrcoef(flags.T)[np.triu_indices(3, 1)]
    assert np.all(np.abs(corr) < 0.08)


def _template_regex(label: str) -> re.Pattern:
    parts = [re.escape(en).replace(r"\{t\}", ".+").replace(r"\{T\}", ".+") for en, _ in TEMPLATES[label]]
    return re.compile("|".join(f"(?:{p})" for p in parts))


def test_text_follows_label_unless_corrupted(corpus):
    subs = {r["name"]: r["english"] for r in _rows(corpus / "subtitle_chieng.csv")}
    for r in _rows(corpus / "synthetic_truth.csv"):
        expected = "neutral" if r["text_corrupt"] == "1" else r["label"]
        assert _template_regex(expected).fullmatch(subs[r["name"]]), (r, subs[r["name"]])


def test_faces_found_on_clean_clips_and_fallback_recorded(corpus):
    detector = FaceDetector()
    rates = {"0": [], "1": []}
    for r in _rows(corpus / "synthetic_truth.csv"):
        track = face_track(corpus / "video" / f"{r['name']}.mp4", every_n=2, size=48, detector=detector)
        rates[r["face_corrupt"]].append(track.found_rate)
    assert np.mean(rates["0"]) >= 0.8
    if rates["1"]:  # masked and absent faces fall back (blurred ones may still be found)
        assert np.mean(rates["1"]) < np.mean(rates["0"])


def _median_f0(audio: np.ndarray, sr: int = 16000) -> float:
    f0 = librosa.yin(audio, fmin=60, fmax=600, sr=sr, frame_length=1024, hop_length=256)
    rms = librosa.feature.rms(y=audio, frame_length=1024, hop_length=256)[0]
    return float(np.median(f0[rms > 0.3 * rms.max()]))  # voiced (loud) frames only


def test_voice_prosody_follows_label():
    spk = SPEAKERS[1]
    sad = synth_voice("sad", np.random.default_rng(0), speaker=spk)
    angry = synth_voice("angry", np.random.default_rng(0), speaker=spk)
    assert _median_f0(sad) < 0.9 * spk.f0 < 1.15 * spk.f0 < _median_f0(angry)
    assert np.sqrt(np.mean(angry**2)) > 2 * np.sqrt(np.mean(sad**2))
    # corrupted audio is the same whatever the label
    a = synth_voice("sad", np.random.default_rng(1), speaker=spk, corrupt=True)
    b = synth_voice("angry", np.random.default_rng(1), speaker=spk, corrupt=True)
    np.testing.assert_array_equal(a, b)


def test_corpus_pitch_sad_below_angry(clean):
    base = {s.name: s.f0 for s in SPEAKERS}
    rel = {"sad": [], "angry": []}
    for r in _rows(clean / "synthetic_truth.csv"):
        if r["label"] in rel:
            audio = load_audio(clean / "audio" / f"{r['name']}.wav")
            rel[r["label"]].append(_median_f0(audio) / base[r["speaker"]])
    assert max(rel["sad"]) < min(rel["angry"])


def test_prepare_reads_it_as_mer2025(corpus, tmp_path):
    from emofuse.corpora import prepare

    m = prepare("mer2025", corpus, tmp_path / "manifest.csv")
    assert len(m) == N_PER_CLASS * len(CLASSES) + N_UNLABELLED
    assert (m.df["split"] == "unlabeled").sum() == N_UNLABELLED
    assert set(m.df.loc[m.df["split"] != "unlabeled", "label"]) == set(CLASSES)


def test_refuses_to_write_over_a_real_corpus(tmp_path):
    (tmp_path / "track1_train_disdim.csv").write_text("name,discrete\nsample_00000001,happy\n")
    with pytest.raises(FileExistsError, match="SYNTHETIC"):
        make_demo_corpus(tmp_path, **TINY)
