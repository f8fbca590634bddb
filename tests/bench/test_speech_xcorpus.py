"""bench speech-xcorpus on three tiny generated corpora (RAVDESS-coded wav files, nEMO- and
URDU-style tables) with eGeMAPS features: leave-one-corpus-out splits, classes a corpus lacks,
--eval-data with a label outside the space, and the kept run folder."""

from __future__ import annotations

import re
import zlib
from pathlib import Path

import numpy as np
import pytest

from emofuse.bench import run_bench
from emofuse.bench.driver import BenchOptions
from emofuse.corpora.base import Manifest
from emofuse.media.audio import write_wav

SR = 16000
# pitch per class: learnable, so the runs are not all at chance (the figures are not checked)
PITCH = {"neutral": 120, "calm": 140, "happy": 260, "sad": 100, "angry": 220, "fearful": 300, "disgust": 160,
         "surprised": 330, "contempt": 180, "anger": 220}
RAVDESS_CODE = {"neutral": "01", "calm": "02", "happy": "03", "angry": "05", "disgust": "07"}


def _voice(path: Path, label: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    t = np.arange(int(0.6 * SR)) / SR
    f0 = PITCH[label.lower()] * (1 + 0.05 * rng.standard_normal())
    wave = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in (1, 2, 3)) * (0.3 + 0.1 * rng.random())
    write_wav(path, (wave + 0.01 * rng.standard_normal(len(t))).astype(np.float32), SR)


def _table(root: Path, rows: list[tuple[str, str, str]]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for i, (path, label, _) in enumerate(rows):
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        _voice(root / path, label, zlib.crc32(root.name.encode()) + i)
    (root / "labels.csv").write_text("path,label,speaker\n" + "".join(f"{p},{lab},{s}\n" for p, lab, s in rows))


def make_corpora(data: Path) -> Path:
    """RAVDESS (neutral, calm, happy, angry, disgust; 6 actors), nEMO-style (neutral, happy, angry,
    fearful; 5 speakers; no disgust) and URDU-style (neutral, happy, angry; 5 speakers); a few
    clips each."""
    for actor in range(1, 7):
        for j, (label, code) in enumerate(RAVDESS_CODE.items()):
            path = data / "ravdess_speech" / f"Actor_{actor:02d}" / f"03-01-{code}-01-01-01-{actor:02d}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            _voice(path, label, 100 * actor + j)
    _table(data / "nemo", [(f"samples/S{s}_{lab}_{i}.wav", lab, f"S{s}")
                           for s in range(5) for lab in ("neutral", "happy", "angry", "fearful") for i in range(2)])
    _table(data / "urdu", [(f"{lab.title()}/SM{s}_{lab}_{i}.wav", lab, f"SM{s}")
                           for s in range(5) for lab in ("neutral", "happy", "angry") for i in range(2)])
    return data


@pytest.fixture(scope="module")
def xcorpus(tmp_path_factory):
    """One tiny run with an --eval-data folder holding a label outside the space; (out, metrics)."""
    root = tmp_path_factory.mktemp("xc")
    data = make_corpora(root / "data")
    ev = root / "mine"
    _table(ev, [(f"a/{lab}_{i}.wav", lab, f"P{i % 2}") for lab in ("sad", "happy", "contempt", "Anger") for i in range(2)])
    out = root / "out"
    opts = BenchOptions(data=data, out=out, eval_data=ev, encoders={"audio": "egemaps"}, baseline="linear",
                        max_epochs=3, bootstrap=20, progress=False)
    metrics = run_bench("speech-xcorpus", opts, check_counts=False, within=False)
    return out, metrics


def _corpus(ids) -> set[str]:
    return {i.split(":")[0] for i in ids}


def test_leave_one_corpus_out_never_trains_or_validates_on_the_test_corpus(xcorpus):
    out, metrics = xcorpus
    for left in ("ravdess", "nemo", "urdu"):
        df = Manifest.load(out / f"loco-{left}" / "manifest.csv").df
        assert _corpus(df[df.split == "test"].id) == {left}
        assert left not in _corpus(df[df.split != "test"].id)
        assert _corpus(df[df.split == "val"].id) == {"ravdess", "nemo", "urdu"} - {left}
        # every clip of the left-out corpus is tested (RAVDESS less its calm clips)
        assert (df.split == "test").sum() == {"ravdess": 24, "nemo": 40, "urdu": 30}[left]
        # a training corpus's val speakers never train
        train_spk, val_spk = (set(df[df.split == s].speaker) for s in ("train", "val"))
        assert not (train_spk & val_spk)
        assert f"loco-{left}/unimodal(egemaps)" in metrics and f"loco-{left}/baseline-linear(egemaps)" in metrics
    ev = Manifest.load(out / "eval-mine" / "manifest.csv").df
    assert _corpus(ev[ev.split == "test"].id) == {"eval-mine"} and "eval-mine" not in _corpus(ev[ev.split != "test"].id)


def test_a_class_a_corpus_lacks_is_never_invented(xcorpus):
    out, _ = xcorpus
    df = Manifest.load(out / "loco-urdu" / "manifest.csv").df
    labels = {c: set(df[df.id.str.startswith(c + ":")].label) for c in ("ravdess", "nemo", "urdu")}
    assert labels["ravdess"] == {"neutral", "happy", "angry", "disgust"}  # calm dropped, not merged
    assert labels["nemo"] == {"neutral", "happy", "angry", "fearful"}  # no disgust in nEMO
    assert labels["urdu"] == {"neutral", "happy", "angry"}
    assert not Manifest.load(out / "loco-nemo" / "manifest.csv").df.label.eq("surprised").any()
    report = (out / "report.md").read_text()
    assert "ravdess: 24 clips" in report and "6 dropped (calm 6)" in report
    assert "nemo: 40 clips" in report and "no sad, disgust, surprised clips" in report


def test_eval_data_reports_labels_outside_the_space(xcorpus):
    out, metrics = xcorpus
    report = (out / "report.md").read_text()
    assert "Labels outside the 7-class space (not scored): contempt: 2." in report
    ev = Manifest.load(out / "eval-mine" / "manifest.csv").df
    test = ev[ev.split == "test"]
    assert len(test) == 6 and set(test.label) == {"sad", "happy", "angry"}  # "Anger" is angry
    assert metrics["eval-mine/unimodal(egemaps)"]["n_test"] == 6
    assert "## Across corpora" in report and "| loco-ravdess | loco-nemo | loco-urdu | eval-mine |" in report
    # baselines show the validation figure their C was chosen on, beside the project's rows
    assert re.search(r"\| baseline-linear\(egemaps\) \| baseline \| \d+\.\d \(\d+\.\d\) \|", report)


def test_the_kept_run_folder_loads_and_evaluates(xcorpus, tmp_path):
    from emofuse.inference.bundle import load_bundle
    from emofuse.inference.evaluate import EvaluateConfig, evaluate_run

    out, _ = xcorpus
    kept = Path((out / "chosen_model.txt").read_text().strip())
    assert kept.parent.parent == (out / "eval-mine").resolve() and str(kept) in (out / "report.md").read_text()
    bundle = load_bundle(kept)
    assert list(bundle.spec.labels.classes) == ["neutral", "happy", "sad", "angry", "fearful", "disgust", "surprised"]
    r = evaluate_run(EvaluateConfig(run=str(kept), data=str(out / "prepared" / "eval-mine.csv"), out=str(tmp_path / "ev"),
                                    cache=str(out / "cache")), progress=False)
    assert r["rows"]["scored"] == 6


def test_other_benchmarks_take_one_eval_folder(tmp_path):
    opts = BenchOptions(data=tmp_path, out=tmp_path / "o", eval_data=tmp_path / "a", extra_eval_data=[tmp_path / "b"])
    with pytest.raises(ValueError, match="--eval-data given 2 times; bench ravdess takes one folder"):
        run_bench("ravdess", opts)


def test_normalisation_groups_never_mix_corpora_or_splits():
    import pandas as pd

    from emofuse.bench.speech_xcorpus import _prefixed

    df = pd.DataFrame({"id": [f"c{i}" for i in range(26)], "split": ["train"] * 13 + ["val"] * 13,
                       "speaker": ["big"] * 10 + ["a", "b", "c"] + ["v"] * 12 + [""]})
    by_speaker = _prefixed(df, "urdu")
    assert by_speaker.id.str.startswith("urdu:").all()
    assert set(by_speaker.speaker) == {"urdu:big", "urdu:few-clip speakers (train)", "urdu:v",
                                       "urdu:few-clip speakers (val)"}
    assert by_speaker.speaker.iloc[25] == "urdu:few-clip speakers (val)"  # no speaker: pooled, in its own split
    assert set(by_speaker.corpus_group) == {"urdu:all speakers (train)", "urdu:all speakers (val)"}


def test_rows_standardised_per_speaker_and_per_corpus_share_each_task(xcorpus):
    """normalise=both (the default): every row and baseline in both forms, the per-corpus ones on a
    second manifest of the same rows whose groups are corpus and split; validation chooses among all."""
    out, metrics = xcorpus
    for task in ("loco-urdu", "eval-mine"):
        own, per_corpus = (Manifest.load(out / task / f).df for f in ("manifest.csv", "manifest-per-corpus.csv"))
        assert own[["id", "split", "label"]].equals(per_corpus[["id", "split", "label"]])
        assert (per_corpus.speaker.str.split(":").str[0] == per_corpus.id.str.split(":").str[0]).all()
        assert per_corpus.speaker.str.fullmatch(r"[\w-]+:all speakers \((train|val|test)\)").all()
        assert not own.speaker.str.contains("all speakers").any()  # the task's own manifest: speaker groups
        for row in ("unimodal(egemaps)", "unimodal(egemaps, per corpus)", "baseline-linear(egemaps)",
                    "baseline-linear(egemaps, per corpus)"):
            assert f"{task}/{row}" in metrics
    import yaml

    cfg = yaml.safe_load((out / "loco-urdu" / "runs" / "unimodal(egemaps, per corpus)" / "config.yaml").read_text())
    assert cfg["data"]["manifest"].endswith("loco-urdu/manifest-per-corpus.csv")
    baseline = out / "loco-urdu" / "runs" / "baseline-linear(egemaps, per corpus)" / "predictions.csv"
    assert baseline.is_file()
    report = (out / "report.md").read_text()
    assert "| baseline chosen on validation | test wF1 | margin |" in report


def test_rows_of_both_forms_with_two_encoders():
    from emofuse.bench.speech_xcorpus import _rows

    runs, baselines = _rows(["whisper-base", "egemaps"], "both", Path("m.csv"))
    names = {r.name: r for r in runs}
    for n in ("ensemble(whisper-base+egemaps{})", "ensemble(whisper-base+egemaps{}, whisper-base linear)",
              "ensemble(whisper-base+egemaps{}, balanced classes)", "unimodal(egemaps{})"):
        assert names[n.format("")].manifest is None and names[n.format(", per corpus")].manifest == Path("m.csv")
    assert names["ensemble(whisper-base+egemaps, whisper-base linear)"].params["linear"] == ["whisper-base"]
    assert names["ensemble(whisper-base+egemaps, balanced classes)"].train == {"class_weights": "balanced"}
    assert {b.name for b in baselines if b.manifest} == {"baseline-linear(whisper-base, per corpus)",
                                                         "baseline-linear(egemaps, per corpus)",
                                                         "baseline-linear(whisper-base+egemaps, per corpus)"}
    single, _ = _rows(["whisper-base", "egemaps"], "speaker")
    assert not any(r.manifest or "per corpus" in r.name for r in single)
    with pytest.raises(ValueError, match="normalise must be one of both, speaker, corpus"):
        run_bench("speech-xcorpus", BenchOptions(data=Path("."), out=Path(".")), normalise="group")


def test_a_row_manifest_must_hold_the_tasks_rows(tmp_path):
    import pandas as pd

    from emofuse.bench.driver import row_manifest
    from emofuse.labels import SPEECH7

    from emofuse.corpora.base import MANIFEST_COLUMNS

    df = pd.DataFrame({c: ["", ""] for c in MANIFEST_COLUMNS}).assign(
        id=["a", "b"], split=["train", "test"], fold=[-1, -1], label=["happy", "sad"], speaker=["x", "y"])
    task = Manifest("c", SPEECH7, df)
    regrouped = tmp_path / "same.csv"
    Manifest("c", SPEECH7, df.assign(speaker="all")).save(regrouped)
    assert list(row_manifest(task, regrouped).df.speaker) == ["all", "all"]
    assert row_manifest(task, None) is task
    other = tmp_path / "other.csv"
    Manifest("c", SPEECH7, df.assign(split=["train", "val"])).save(other)
    with pytest.raises(ValueError, match="not the task's rows"):
        row_manifest(task, other)


def test_select_corpus_chooses_within_the_training_corpora_only(tmp_path):
    """select=corpus: select-<L>-<H> tasks leave each training corpus H of loco-<L> out in turn and never
    hold a clip of L; the report adds the row they choose for each left-out corpus, with its verdict."""
    data = make_corpora(tmp_path / "data")
    out = tmp_path / "out"
    opts = BenchOptions(data=data, out=out, encoders={"audio": "egemaps"}, baseline="linear", max_epochs=2,
                        bootstrap=10, progress=False, models=["unimodal(egemaps)", "unimodal(egemaps, per corpus)"])
    metrics = run_bench("speech-xcorpus", opts, check_counts=False, within=False, select="corpus")
    for left in ("ravdess", "nemo", "urdu"):
        for held in {"ravdess", "nemo", "urdu"} - {left}:
            df = Manifest.load(out / f"select-{left}-{held}" / "manifest.csv").df
            assert left not in _corpus(df.id)
            assert _corpus(df[df.split == "test"].id) == {held} and held not in _corpus(df[df.split != "test"].id)
            assert not any(k.startswith(f"select-{left}-{held}/baseline") for k in metrics)  # no baselines there
    report = (out / "report.md").read_text()
    section = report[report.index("## Chosen across the training corpora"):]
    assert len(re.findall(r"^\| (ravdess|nemo|urdu) \| unimodal\(egemaps(, per corpus)?\) \|", section, re.M)) == 3
    assert "the row chosen across the training corpora: mean margin" in section
    across = report[report.index("## Across corpora"):report.index("Bold:")]
    assert "select-" not in across  # the selection tasks stay out of the cross-corpus table
    with pytest.raises(ValueError, match="needs three corpora"):
        run_bench("speech-xcorpus", opts, check_counts=False, corpora="ravdess,nemo", select="corpus")
