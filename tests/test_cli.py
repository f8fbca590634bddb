"""The CLI: --help on every verb, the registry's names, and clear non-zero exits on bad input."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from emofuse.cli import app

runner = CliRunner()
VERBS = ["prepare", "extract", "train", "report", "table", "grid", "demo", "list"]


@pytest.mark.parametrize("verb", VERBS)
def test_help(verb):
    r = runner.invoke(app, [verb, "--help"])
    assert r.exit_code == 0 and "Usage" in r.output


def test_list_comes_from_registries():
    r = runner.invoke(app, ["list", "models"])
    assert r.exit_code == 0 and "llama_topn" in r.output and "mer_han" in r.output
    r = runner.invoke(app, ["list", "encoders"])
    assert "minilm" in r.output and "egemaps" in r.output and "hf:" in r.output


def test_unknown_corpus_names_valid_ones(tmp_path):
    r = runner.invoke(app, ["prepare", "nope", "--root", str(tmp_path), "--out", str(tmp_path / "m.csv")])
    assert r.exit_code != 0 and "valid corpus names" in r.output and "meld" in r.output


def test_bad_corpus_is_reported_by_name(tmp_path):
    (tmp_path / "video").mkdir()
    (tmp_path / "track1_train_disdim.csv").write_text("name,discrete\na,happy\nb,bored\n")
    r = runner.invoke(app, ["prepare", "mer2025", "--root", str(tmp_path), "--out", str(tmp_path / "m.csv")])
    assert r.exit_code != 0 and "unknown_label" in r.output and "missing_file" in r.output


def test_train_with_unknown_key_lists_valid_keys(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("name: x\ndata: {manifest: m, cache: c, features: {audio: egemaps}}\nmodel: {name: unimodal}\ntrain: {epochs: 3}\n")
    r = runner.invoke(app, ["train", str(p)])
    assert r.exit_code != 0 and "unknown key 'train.epochs'" in r.output and "max_epochs" in r.output


def test_prepare_csv_says_when_splits_are_not_by_speaker(tmp_path):
    rows = [f"u{s}_{c}_{k},{c},hello {k},spk{s}" for s in range(5) for c in ("happy", "sad") for k in range(2)]
    (tmp_path / "t.csv").write_text("id,label,text,speaker\n" + "\n".join(rows) + "\n")
    args = ["prepare", "csv", "--root", str(tmp_path / "t.csv"), "--out", str(tmp_path / "m.csv"), "-o", "text_col=text"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0 and "warning:" in r.output and "not by speaker" in r.output
    assert "speaker_col=speaker" in " ".join(r.output.split())  # rich wraps lines
    r = runner.invoke(app, args + ["-o", "speaker_col=speaker"])
    assert r.exit_code == 0 and "warning:" not in r.output


def test_evaluate_help_and_one_line_errors(tmp_path):
    r = runner.invoke(app, ["evaluate", "--help"])
    assert r.exit_code == 0 and "--map" in r.output
    r = runner.invoke(app, ["evaluate", str(tmp_path / "nope"), "--data", str(tmp_path / "m.csv"), "--out", str(tmp_path / "o")])
    assert r.exit_code == 1 and "error: model folder not found" in r.output and "Traceback" not in r.output
    r = runner.invoke(app, ["evaluate", str(tmp_path), "--data", "m.csv", "--out", "o", "--map", "calm"])
    assert r.exit_code == 1 and "is not from=to" in r.output


def test_prepare_adds_speed_perturbed_copies_of_training_clips(tmp_path):
    import numpy as np
    import pandas as pd

    from emofuse.media.audio import write_wav

    rng = np.random.default_rng(0)
    rows = []
    for s in range(5):
        for c in ("happy", "sad"):
            for k in range(2):
                write_wav(tmp_path / f"u{s}{c}{k}.wav", 0.1 * rng.standard_normal(8000).astype(np.float32), 16000)
                rows.append(f"u{s}{c}{k},{c},u{s}{c}{k}.wav,spk{s}")
    (tmp_path / "t.csv").write_text("id,label,wav,speaker\n" + "\n".join(rows) + "\n")
    args = ["prepare", "csv", "--root", str(tmp_path / "t.csv"), "--out", str(tmp_path / "m.csv"),
            "-o", "audio_col=wav", "-o", "speaker_col=speaker", "--speed-perturb", "0.9,1.1"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    df = pd.read_csv(tmp_path / "m.csv", keep_default_na=False)
    own, copies = df[df["augmented_from"] == ""], df[df["augmented_from"] != ""]
    assert len(own) == 20 and len(copies) == 2 * (own["split"] == "train").sum() > 0
    assert set(copies["split"]) == {"train"} and copies["speaker"].str.contains("@speed").all()
    assert (tmp_path / "m-speed" / "speed0.9").is_dir()
    before = (tmp_path / "m.csv").read_text()
    for bad in ("fast", "1.0", "3"):  # refused before anything is written: the manifest is as it was
        r = runner.invoke(app, args[:-1] + [bad])
        assert r.exit_code == 1 and "--speed-perturb" in r.output and "Traceback" not in r.output
        assert (tmp_path / "m.csv").read_text() == before
