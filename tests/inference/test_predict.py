"""Prediction on clips: the features served are the features trained on, the policy for missing
modalities, transcripts, and the `predict` command (one clip, a folder, a manifest, submission)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from emofuse.cli import app
from emofuse.inference import Clip, InputError

runner = CliRunner()


def test_served_features_and_probabilities_match_training(predictor, demo_dir, fusion_dir, test_rows):
    """A corpus clip decoded for inference gets the cached training features, and so the run's own
    test predictions: no skew between extraction and serving."""
    from emofuse.features.cache import load_features

    preds = pd.read_csv(fusion_dir / "predictions.csv").set_index("id")
    for row in test_rows[:3]:
        clip = Clip(video=row["video"], audio=row["audio"], text=row["text"], name=row["id"])
        inputs, info, _, warnings = predictor.decode(clip)
        feats = predictor.features(inputs, warnings, info)
        for key, s in predictor.spec.inputs.items():
            cached = load_features(demo_dir / "cache", "mer2025", s.encoder).lookup([row["id"]]).vectors[0]
            mean, std = predictor.bundle.standardiser[key]
            np.testing.assert_allclose(feats[key][0] * std + mean, cached, rtol=1e-4, atol=1e-4)
        p = predictor.predict(clip)
        expected = preds.loc[row["id"]]
        assert p.label == expected["predicted"]
        for c, v in p.probabilities.items():
            assert abs(v - expected[f"p_{c}"]) < 1e-3, (row["id"], c)
        assert set(p.weights) == {"audio", "text", "video"} and abs(sum(p.weights.values()) - 1) < 1e-3
        assert p.selected is None and p.warnings == []


def test_video_clip_alone_is_mostly_right(predictor, test_rows):
    rows = test_rows[:8]
    right = sum(predictor.predict(Clip(video=r["video"], text=r["text"])).label == r["label"] for r in rows)
    assert right >= 6, right  # the fusion model scores ~97% on the demo test split


def test_audio_plus_image(predictor, media):
    p = predictor.predict(Clip(audio=media["wav"], image=media["image"], text="This is fine."))
    assert p.modalities["video"]["source"] == "face.png" and len(p.faces) == 1 and p.faces[0].found
    assert p.modalities["audio"]["used"] and p.warnings == []


@pytest.mark.parametrize("bad", ["empty", "notmedia", "truncated"])
def test_unusable_media_is_refused(predictor, media, bad):
    with pytest.raises(InputError) as e:
        predictor.predict(Clip(video=media[bad], text="hello"))
    assert e.value.status == 422
    assert {"empty": "empty file", "notmedia": "not a readable media file",
            "truncated": "cut short"}[bad] in str(e.value)


@pytest.mark.parametrize("kind,needle", [("noaudio", "no audio track"), ("silent", "silent"),
                                         ("noface", "no face found")])
def test_missing_modality_is_masked_with_a_warning(predictor, media, kind, needle):
    """The policy: fusion predicts from what is there and says what was absent or replaced;
    strict mode refuses instead."""
    p = predictor.predict(Clip(video=media[kind], text="I can't believe this happened!"))
    assert any(needle in w for w in p.warnings), p.warnings
    if kind in ("noaudio", "silent"):
        assert not p.modalities["audio"]["used"] and p.weights["audio"] == 0.0
    else:  # no face: the centre of the frames, as the training features had
        assert p.modalities["video"]["used"] and p.modalities["video"]["faces_found"] == 0
        assert not any(f.found for f in p.faces)
    with pytest.raises(InputError, match="strict mode: .*" + needle):
        predictor.predict(Clip(video=media[kind], text="hello"), strict=True)


def test_model_without_its_only_modality_is_refused(demo_dir, media):
    from emofuse.inference import Predictor

    audio_only = Predictor.load(demo_dir / "runs" / "unimodal-audio")
    for kind, needle in (("noaudio", "no audio track"), ("silent", "silent")):
        with pytest.raises(InputError, match=f"uses audio, and this input gives none of them: .*{needle}"):
            audio_only.predict(Clip(video=media[kind]))
    p = audio_only.predict(Clip(video=media["good"]))
    assert p.weights == {"audio": 1.0} and p.warnings == [] and "video" not in p.modalities


def test_subtitles(tmp_path):
    from emofuse.inference.predict import read_subtitles, sidecar_transcript

    (tmp_path / "a.srt").write_text("1\n00:00:00,000 --> 00:00:01,000\n<i>I can't</i> believe\n\n"
                                    "2\n00:00:01,000 --> 00:00:02,000\nit happened!\n")
    (tmp_path / "b.vtt").write_text("WEBVTT\n\nNOTE a comment\n\n00:00.000 --> 00:01.000\nHello there.\n")
    assert read_subtitles(tmp_path / "a.srt") == "I can't believe it happened!"
    assert read_subtitles(tmp_path / "b.vtt") == "Hello there."
    assert sidecar_transcript(tmp_path / "a.mp4") == "I can't believe it happened!"
    assert sidecar_transcript(tmp_path / "c.mp4") is None


def test_folder_transcripts_from_mer_subtitle_csv(demo_dir, test_rows, tmp_path):
    from emofuse.inference.predict import clips_from

    folder = tmp_path / "clips"
    folder.mkdir()
    for r in test_rows[:2]:
        (folder / f"{r['id']}.mp4").symlink_to(r["video"])
    clips = clips_from(folder, demo_dir / "corpus" / "subtitle_chieng.csv")  # name, chinese, english
    assert [c.text for c in clips] == [r["text"] for r in test_rows[:2]]
    with pytest.raises(ValueError, match="needs columns name and text"):
        clips_from(folder, demo_dir / "corpus" / "track_all_candidates.csv")


def test_asr_without_a_recogniser_says_so(media, monkeypatch):
    from emofuse.inference.predict import ASRUnavailable, transcribe

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ASRUnavailable, match="no speech recogniser installed"):
        transcribe(media["good"], "no-org/no-such-asr-model")


# ---------------------------------------------------------------------------------------------
# the command


def test_predict_command_one_clip_json(fusion_dir, media):
    r = runner.invoke(app, ["predict", str(media["good"]), "--model", str(fusion_dir), "--text", "I am so happy!", "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["label"] in d["probabilities"] and abs(sum(d["probabilities"].values()) - 1) < 1e-3
    assert set(d["weights"]) == {"audio", "text", "video"} and d["selected"] is None
    assert d["faces"]["found"] >= 1 and d["warnings"] == []


@pytest.fixture
def shared(monkeypatch, predictor):
    """The other command tests reuse the session's loaded model instead of loading it each time."""
    monkeypatch.setattr("emofuse.cli._load_predictor", lambda model, *a: predictor)


def test_predict_command_table_and_bad_input(shared, fusion_dir, media):
    r = runner.invoke(app, ["predict", str(media["noaudio"]), "--model", str(fusion_dir), "--text", "Hi."])
    assert r.exit_code == 0 and "probability" in r.stdout and "no audio track" in r.stdout
    for bad, needle in (("empty", "empty file"), ("notmedia", "not a readable media file"), ("truncated", "cut short")):
        r = runner.invoke(app, ["predict", str(media[bad]), "--model", str(fusion_dir)])
        assert r.exit_code == 1 and needle in " ".join(r.output.split()), r.output
    r = runner.invoke(app, ["predict", str(media["noface"]), "--model", str(fusion_dir), "--text", "Hi.", "--strict"])
    assert r.exit_code == 1 and "no face found" in " ".join(r.output.split())
    r = runner.invoke(app, ["predict", str(media["good"]), "--model", str(fusion_dir), "--asr",
                            "--asr-model", "no-org/no-such-asr-model"])
    assert r.exit_code == 1 and "no speech recogniser installed" in " ".join(r.output.split())


def test_predict_command_folder_and_submission(shared, fusion_dir, media, test_rows, tmp_path):
    import os

    folder = tmp_path / "clips"
    folder.mkdir()
    for r in test_rows[:3]:
        os.symlink(r["video"], folder / f"{r['id']}.mp4")
    (folder / f"{test_rows[0]['id']}.srt").write_text(f"1\n00:00:00,000 --> 00:00:02,000\n{test_rows[0]['text']}\n")
    os.symlink(media["notmedia"], folder / "broken.mp4")
    out, sub = tmp_path / "pred.csv", tmp_path / "submission.csv"
    r = runner.invoke(app, ["predict", str(folder), "--model", str(fusion_dir), "--out", str(out), "--submission", str(sub)])
    assert r.exit_code == 1, r.output  # one clip failed: said, and the exit code says so
    assert "4 clips: 3 predicted, 1 failed" in r.output and "broken" in r.output
    rows = list(csv.DictReader(out.open()))
    assert [x["name"] for x in rows] == sorted([t["id"] for t in test_rows[:3]] + ["broken"])
    by = {x["name"]: x for x in rows}
    assert "not a readable media file" in by["broken"]["error"] and by["broken"]["predicted"] == ""
    assert by[test_rows[0]["id"]]["warnings"] == ""  # its transcript came from the .srt beside it
    assert "text: no transcript given" in by[test_rows[1]["id"]]["warnings"]
    assert {"p_happy", "w_audio", "w_video", "selected"} <= set(rows[0])
    subm = list(csv.reader(sub.open()))
    assert subm[0] == ["name", "discrete"] and len(subm) == 4


def test_predict_command_manifest(shared, fusion_dir, demo_dir, test_rows, tmp_path):
    m = pd.read_csv(demo_dir / "manifest.csv", dtype=str, keep_default_na=False)
    m = m[m["id"].isin([r["id"] for r in test_rows[:3]])]
    m.to_csv(tmp_path / "m.csv", index=False)
    out = tmp_path / "pred.csv"
    r = runner.invoke(app, ["predict", str(tmp_path / "m.csv"), "--model", str(fusion_dir), "--out", str(out)])
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(out.open()))
    assert [x["name"] for x in rows] == m["id"].tolist()
    truth = dict(zip(m["id"], m["label"]))
    assert sum(x["predicted"] == truth[x["name"]] for x in rows) >= 2


@pytest.mark.parametrize("verb", ["predict", "serve", "export"])
def test_help(verb):
    r = runner.invoke(app, [verb, "--help"])
    assert r.exit_code == 0 and "Usage" in r.output


def test_recognised_words_say_where_they_came_from(shared, fusion_dir, media, monkeypatch):
    """--asr: the answer says the words were recognised, in which language, and translated or not used;
    --asr-foreign reaches the recogniser and a bad value is refused."""
    from emofuse.features.encoders.whisper import Transcript

    asked = []

    def fake(path, model="whisper-base", sr=16000, foreign="keep"):
        asked.append(foreign)
        return heard

    monkeypatch.setattr("emofuse.inference.predict.transcript", fake)
    heard = Transcript("I am so happy today", "pl", translated=True)
    r = runner.invoke(app, ["predict", str(media["good"]), "--model", str(fusion_dir), "--asr", "--asr-foreign",
                            "translate", "--json"])
    assert r.exit_code == 0, r.output
    text = json.loads(r.stdout)["modalities"]["text"]
    assert text["used"] and text["transcript"] == "I am so happy today" and asked == ["translate"]
    assert text["source"] == "speech recognised (Whisper-base, pl, translated to English)"
    r = runner.invoke(app, ["predict", str(media["good"]), "--model", str(fusion_dir), "--asr"])
    assert r.exit_code == 0 and 'text: speech recognised (Whisper-base, pl, translated to English): "I am so happy today"' \
        in " ".join(r.stdout.split())
    heard = Transcript("", "pl", dropped=True)
    r = runner.invoke(app, ["predict", str(media["good"]), "--model", str(fusion_dir), "--asr", "--asr-foreign",
                            "drop", "--json"])
    d = json.loads(r.stdout)
    assert not d["modalities"]["text"]["used"] and "transcript" not in d["modalities"]["text"]
    assert "text: speech recognised (Whisper-base, pl, not English: not used); text treated as absent" in d["warnings"]
    # a transcript given is read as given: the recogniser is not asked
    r = runner.invoke(app, ["predict", str(media["good"]), "--model", str(fusion_dir), "--asr", "--text", "Hi.", "--json"])
    assert json.loads(r.stdout)["modalities"]["text"]["source"] == "transcript" and len(asked) == 3
    r = runner.invoke(app, ["predict", str(media["good"]), "--model", str(fusion_dir), "--asr-foreign", "guess"])
    assert r.exit_code == 1 and "--asr-foreign must be one of keep, translate, drop" in " ".join(r.output.split())
