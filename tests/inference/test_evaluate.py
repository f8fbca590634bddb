"""`emofuse evaluate`: a run trained on one small table of tones, scored on another whose labels
need a map and which has a class the run never saw."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from emofuse.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from emofuse.corpora.base import prepare
from emofuse.inference.evaluate import EvaluateConfig, EvaluateError, evaluate_run, parse_map

SR = 16000
# class -> base pitch (Hz): the model only has to tell three pitches apart
PITCH = {"angry": 880.0, "happy": 440.0, "sad": 160.0, "calm": 300.0}


def _table(folder: Path, speakers: range, labels: dict[str, str], per_class: int, seed: int) -> Path:
    """A csv of 0.4 s tones: each speaker says each class `per_class` times, its own pitch offset;
    labels: class -> the label this table writes for it."""
    from emofuse.media import write_wav

    rng = np.random.default_rng(seed)
    recs = []
    t = np.arange(int(0.4 * SR)) / SR
    for s in speakers:
        shift = rng.uniform(0.93, 1.07)  # a speaker's voice
        for cls, lab in labels.items():
            for k in range(per_class):
                f0 = PITCH[cls] * shift * rng.uniform(0.98, 1.02)
                wave = 0.3 * np.sin(2 * np.pi * f0 * t) + 0.01 * rng.normal(size=len(t))
                name = f"s{s}_{lab}_{k}"
                write_wav(folder / "wav" / f"{name}.wav", wave.astype(np.float32), SR)
                recs.append({"id": name, "emotion": lab, "wav": f"wav/{name}.wav", "speaker": f"spk{s}"})
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(recs).to_csv(folder / "table.csv", index=False)
    return folder / "table.csv"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A unimodal MFCC run on corpus A (speaker folds), trained with per-speaker standardisation,
    and corpus B: other speakers, labels 'mad' (= angry), 'happy', 'sad' and 'calm' (never seen)."""
    from emofuse.features.extract import extract
    from emofuse.training.run import train_run

    d = tmp_path_factory.mktemp("evaluate")
    opts = dict(label_col="emotion", audio_col="wav", speaker_col="speaker")
    a = prepare("csv", _table(d / "a", range(6), {c: c for c in ("angry", "happy", "sad")}, 4, 0), d / "a.csv", **opts)
    extract(a, ["mfcc"], d / "cache", progress=False)
    cfg = RunConfig(
        name="tones", out=str(d / "runs"),
        data=DataConfig(manifest=str(d / "a.csv"), cache=str(d / "cache"), features={"audio": "mfcc"},
                        standardise="per_speaker"),
        model=ModelConfig(name="unimodal", params={"hidden": 32}),
        train=TrainConfig(max_epochs=40, patience=10, progress=False, logger="none"),
    )
    metrics = train_run(cfg)
    b_labels = {"angry": "mad", "happy": "happy", "sad": "sad", "calm": "calm"}
    # "mad" is no emotion name the csv adapter knows, so B's classes are given (else its rows are rejects)
    prepare("csv", _table(d / "b", range(10, 14), b_labels, 3, 1), d / "b.csv", n_folds=4,
            label_set="calm,happy,mad,sad", **opts)
    return d, d / "runs" / "tones", metrics


def _cfg(d: Path, run: Path, data: str, out: str, **kw) -> EvaluateConfig:
    return EvaluateConfig(run=str(run), data=str(d / data), out=str(d / out), cache=str(d / "eval-cache"), **kw)


def test_own_test_split_reproduces_the_runs_test_scores(trained):
    d, run, metrics = trained
    r = evaluate_run(_cfg(d, run, "a.csv", "self", splits=["test"]), progress=False)
    assert r["rows"]["scored"] == metrics["units"][0]["n"]["test"] and r["rows"]["unseen_label"] == 0
    for k in ("accuracy", "uar", "weighted_f1", "macro_f1"):
        assert r["test"][k] == pytest.approx(metrics["test"][k], abs=1e-9), k
    assert r["standardise"] == "per_speaker"
    mine = pd.read_csv(d / "self" / "predictions.csv").set_index("id")
    theirs = pd.read_csv(run / "predictions.csv").set_index("id")  # what training wrote for its test split
    cols = [c for c in theirs.columns if c.startswith("p_")]
    assert sorted(mine.index) == sorted(theirs.index)
    np.testing.assert_allclose(mine.loc[theirs.index, cols].to_numpy(), theirs[cols].to_numpy(), atol=2e-5)


def test_cross_corpus_with_a_label_map_reports_the_unseen_class(trained):
    from sklearn.metrics import f1_score

    d, run, _ = trained
    r = evaluate_run(_cfg(d, run, "b.csv", "cross", map={"mad": "angry"}, command="emofuse evaluate ..."), progress=False)
    assert r["label_map"] == {"calm": None, "happy": "happy", "mad": "angry", "sad": "sad"}
    assert r["rows"] == {"labelled": 48, "scored": 36, "unseen_label": 12, "no_input": 0}
    assert r["unseen_labels"]["calm"]["rows"] == 12 and sum(r["unseen_labels"]["calm"]["predicted"].values()) == 12
    assert r["test"]["accuracy"] > 0.8, r["test"]  # distinct pitches, new speakers: well above chance (1/3)
    out = d / "cross"
    pred = pd.read_csv(out / "predictions.csv", keep_default_na=False)
    assert len(pred) == 48 and set(pred[pred.scored == 0].label) == {"calm"} and (pred[pred.label == "mad"].true == "angry").all()
    s = pred[pred.scored == 1]
    assert r["test"]["weighted_f1"] == pytest.approx(f1_score(s.true, s.predicted, average="weighted"))
    assert {p.name for p in out.iterdir()} >= {"metrics.json", "predictions.csv", "confusion.png", "report.md", "evaluate.yaml"}
    report = (out / "report.md").read_text()
    assert "emofuse evaluate ..." in report and "| calm | 12 |" in report and "| mad | angry | 12 |" in report
    assert json.loads((out / "metrics.json").read_text())["rows"]["scored"] == 36


def test_without_the_map_the_unmapped_label_is_reported_too(trained):
    d, run, _ = trained
    r = evaluate_run(_cfg(d, run, "b.csv", "nomap"), progress=False)
    assert r["rows"]["scored"] == 24 and set(r["unseen_labels"]) == {"mad", "calm"}
    assert r["classes_absent_from_data"] == ["angry"]


def test_clear_errors(trained, tmp_path):
    d, run, _ = trained
    with pytest.raises(EvaluateError, match="'furious' is not a class of the model .*angry, happy, sad"):
        evaluate_run(_cfg(d, run, "b.csv", "e1", map={"mad": "furious"}), progress=False)
    with pytest.raises(EvaluateError, match="'bored' is not a label of the data"):
        evaluate_run(_cfg(d, run, "b.csv", "e2", map={"bored": "sad"}), progress=False)
    with pytest.raises(EvaluateError, match="none of its 48 labelled rows has a class of the model.*--map LABEL=CLASS"):
        evaluate_run(_cfg(d, run, "b.csv", "e3", map={"happy": "", "sad": ""}), progress=False)
    with pytest.raises(EvaluateError, match="has no split dev"):
        evaluate_run(_cfg(d, run, "b.csv", "e4", splits=["dev"]), progress=False)
    from emofuse.inference import BundleError

    with pytest.raises(BundleError, match="model folder not found"):
        evaluate_run(_cfg(d, tmp_path / "nope", "b.csv", "e5"), progress=False)
    with pytest.raises(EvaluateError, match="not from=to"):
        parse_map(["calm"])
    assert not (d / "e1").exists()  # refused before anything was written
