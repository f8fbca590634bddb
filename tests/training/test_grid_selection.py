"""Top-N per sample in the MER2025 grid: which encoders each mode feeds and keeps, that a short
training of the tiny LLaMA Top-N keeps different candidates in different samples, that only the
kept candidates reach a prediction, that the selection table counts what `selected` says, and the
results table for both modes and for rows of different epoch budgets."""

from __future__ import annotations

import csv
import json
from collections import Counter

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from emofuse.config import ConfigError, DataConfig, GridConfig, ModelConfig, RunConfig, TrainConfig, validate
from emofuse.corpora.base import MANIFEST_COLUMNS, Manifest
from emofuse.data.dataset import collate
from emofuse.evaluation.selection import count_kept, load_selection, read_kept, write_selection
from emofuse.evaluation.table import render_table
from emofuse.labels import LabelSet
from emofuse.training.grid import grid_runs
from emofuse.evaluation.predictions import write_predictions
from emofuse.models.build import build_model
from emofuse.training.run import train_run
from tests.training.cached import write_features

TINY = {"backbone": "tiny", "tiny_hidden": 32, "tiny_layers": 2, "tiny_heads": 4, "hidden": 32, "lora_r": 4,
        "readout": "mean"}
# ranked on validation, best first (what rank_encoders returns, less the scores)
RANKING = {"audio": [{"encoder": e} for e in ("mfcc", "egemaps", "wav")],
           "text": [{"encoder": e} for e in ("minilm", "minilm-last4")],
           "video": [{"encoder": "fer2013"}]}


def _grid(**kw) -> GridConfig:
    base = {"name": "g", "manifest": "m.csv", "cache": "c", "out": "runs/g", "epochs": [2],
            "candidates": {m: [r["encoder"] for r in rs] for m, rs in RANKING.items()},
            "model": {"name": "llama_topn", "params": TINY}}
    return validate(GridConfig, base | kw)


def test_ranked_feeds_the_n_best_and_per_sample_feeds_all_with_top_n():
    runs = {r.name: r for r in grid_runs(_grid(fusion_sets=["AT", "VT"], top_n=[1, 2],
                                               top_n_mode=["ranked", "per_sample"]), RANKING)}
    ranked, ps = runs["AT-top1-ep2"], runs["AT-top1-ps-ep2"]
    assert ranked.data.features == {"audio": ["mfcc"], "text": ["minilm"]} and ranked.model.params["top_n"] == 1
    assert runs["AT-top2-ep2"].data.features == {"audio": ["mfcc", "egemaps"], "text": ["minilm", "minilm-last4"]}
    assert runs["AT-top2-ep2"].model.params["top_n"] == 2
    # per sample: every ranked encoder, in ranking order; the model keeps N of them
    every = {"audio": ["mfcc", "egemaps", "wav"], "text": ["minilm", "minilm-last4"]}
    assert ps.data.features == every and ps.model.params["top_n"] == 1
    assert runs["AT-top2-ps-ep2"].data.features == every and runs["AT-top2-ps-ep2"].model.params["top_n"] == 2
    # VT top 2 per sample would keep all it feeds (1 video, 2 text): that is the ranked cell, run once
    assert "VT-top2-ps-ep2" not in runs and "VT-top2-ep2" in runs and "VT-top1-ps-ep2" in runs
    assert sorted(runs) == sorted({"AT-top1-ep2", "AT-top2-ep2", "AT-top1-ps-ep2", "AT-top2-ps-ep2",
                                   "VT-top1-ep2", "VT-top2-ep2", "VT-top1-ps-ep2"})
    # default: ranked only, the seed's names
    assert [r.name for r in grid_runs(_grid(fusion_sets=["AT"], top_n=[1]), RANKING)] == ["AT-top1-ep2"]
    assert [r.name for r in grid_runs(_grid(fusion_sets=["AT"], top_n=[1], top_n_mode="per_sample"), RANKING)] == [
        "AT-top1-ps-ep2"]


def test_segments_are_candidates_too():
    runs = {r.name: r for r in grid_runs(_grid(
        fusion_sets=["AV"], top_n=[1], top_n_mode=["ranked", "per_sample"],
        model={"name": "llama_topn", "params": TINY | {"segments": {"audio:egemaps": 3}}}), RANKING)}
    ranked, ps = runs["AV-top1-ep2"], runs["AV-top1-ps-ep2"]
    # ranked top 1 feeds mfcc alone: no segments, no sequences
    assert ranked.model.params["segments"] == {} and ranked.data.sequence is False
    # per sample feeds egemaps cut in 3 segments: audio as sequences; 3 + 2 audio candidates, 1 kept
    assert ps.model.params["segments"] == {"audio:egemaps": 3} and ps.data.sequence == {"audio": True}
    assert ps.model.params["top_n"] == 1
    top2 = {r.name: r for r in grid_runs(_grid(
        fusion_sets=["AV"], top_n=[2], model={"name": "llama_topn", "params": TINY | {"segments": 2}}), RANKING)}
    assert top2["AV-top2-ep2"].model.params["top_n"] == 4  # ranked keeps all it feeds: 2 encoders x 2 segments


def test_modes_are_validated():
    with pytest.raises(ConfigError, match="top_n_mode.0: Input should be 'ranked' or 'per_sample'"):
        _grid(top_n_mode="persample")
    with pytest.raises(ConfigError, match="top_n_mode"):
        _grid(top_n_mode=[])
    with pytest.raises(ConfigError, match="per_sample needs a model that keeps its Top-N per sample"):
        grid_runs(_grid(top_n_mode="per_sample", model={"name": "attention"}), RANKING)
    with pytest.raises(ConfigError, match="remove top_n from model.params"):
        grid_runs(_grid(top_n_mode="per_sample", model={"name": "llama_topn", "params": TINY | {"top_n": 1}}), RANKING)
    with pytest.raises(ConfigError, match="segments names"):
        grid_runs(_grid(model={"name": "llama_topn", "params": TINY | {"segments": {"audio:nope": 2}}}), RANKING)


# --------------------------------------------------------------- a corpus where samples differ


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """240 samples, 2 classes; two audio encoders, and in each sample only one of them carries the
    label (a1 in even samples, a2 in odd ones; its first feature flags which); text is noise."""
    root = tmp_path_factory.mktemp("selection")
    rng = np.random.default_rng(0)
    n, d = 240, 8
    labels = LabelSet("toy2", ("happy", "sad"))
    y = rng.integers(0, 2, n)
    split = np.where(np.arange(n) < 160, "train", np.where(np.arange(n) < 200, "val", "test"))
    rows = [{c: "" for c in MANIFEST_COLUMNS} | {"id": f"u{i:04d}", "split": split[i], "fold": -1,
                                                 "label": labels.classes[y[i]]} for i in range(n)]
    Manifest("toy", labels, pd.DataFrame(rows, columns=MANIFEST_COLUMNS), {"synthetic": True}).save(root / "manifest.csv")
    signal = np.where(y[:, None] == 1, 1.5, -1.5) * np.ones((n, d))
    feats = {}
    for k, name in enumerate(("a1", "a2")):
        informative = np.arange(n) % 2 == k
        x = np.where(informative[:, None], signal + rng.normal(size=(n, d)), 1.5 * rng.normal(size=(n, d)))
        x[:, 0] = np.where(informative, 3.0, -3.0) + 0.3 * rng.normal(size=n)
        feats[name] = x
    feats["t"] = rng.normal(size=(n, 4))
    for name, x in feats.items():
        write_features(root / "cache", "toy", name, [r["id"] for r in rows], x)
    return root


def _run(root, name, features, params, epochs) -> RunConfig:
    return RunConfig(
        name=name,
        data=DataConfig(manifest=str(root / "manifest.csv"), cache=str(root / "cache"), features=features, batch_size=32),
        model=ModelConfig(name="llama_topn", params=TINY | params),
        train=TrainConfig(max_epochs=epochs, patience=epochs, lr=3e-3, progress=False, logger="none"),
        out=str(root / "runs"),
    )


def test_short_training_keeps_different_candidates_and_tables_it(corpus):
    # The scorer reads layer-normalised tokens, so its weights differ across samples from the start.
    # token_scale 10 on this tiny random Llama (embedding RMS ~0.03, SmolLM2's 0.14): test accuracy
    # here was 0.70 / 0.85 / 0.55 at token_scale 1 / 10 / 30 (seed 0, 40 test samples).
    ps = _run(corpus, "AT-top1-ps-ep30", {"audio": ["a1", "a2"], "text": ["t"]}, {"top_n": 1, "token_scale": 10.0}, 30)
    m = train_run(ps)
    run = corpus / "runs" / ps.name
    kept = read_kept(run / "predictions.csv")
    audio = Counter(c for row in kept for c in row if c.startswith("audio:"))
    assert len(kept) == 40 and all(len(row) == 2 for row in kept)  # one audio and one text candidate each
    assert set(audio) == {"audio:a1", "audio:a2"}, audio  # the samples do not all keep the same one
    assert m["test"]["accuracy"] > 0.6, m["test"]
    # selection.csv counts what predictions.csv's `selected` says, on test and on validation
    rows = load_selection(run)
    for split, file in (("test", "predictions.csv"), ("val", "predictions_val.csv")):
        sel = pd.read_csv(run / file)["selected"].str.split(";").explode()
        counts = {r["candidate"]: r["kept"] for r in rows if r["split"] == split}
        assert counts == {c: int((sel == c).sum()) for c in ("audio:a1", "audio:a2", "text:t")}
    assert (run / "selection.md").read_text().count("| audio:a") == 2

    ranked = _run(corpus, "AT-top1-ep2", {"audio": ["a1"], "text": ["t"]}, {"top_n": 1}, 2)
    train_run(ranked)
    table = render_table([corpus / "runs" / ranked.name, run])
    # budgets 2 and 30, one each: one column group, each row with its budget
    assert "| Fusion | Top | Mode | Audio | Text | Video | Epochs | Best ep | time (s) | F1 | Acc |" in table
    assert "| AT | 1 | per sample | a1, a2 | t | – | 30 |" in table and "| AT | 1 | ranked | a1 | t | – | 2 |" in table
    assert "Mode ranked" in table and "every candidate is kept, in 100% of the samples" in table
    shares = {r["candidate"]: r["share"] for r in rows if r["split"] == "test"}
    line = f"| {ps.name} | a1 {100 * shares['audio:a1']:.0f}%, a2 {100 * shares['audio:a2']:.0f}% | t 100% |"
    assert line in table, table


def test_only_the_kept_candidate_reaches_the_prediction():
    dims = {"audio:a1": 8, "audio:a2": 8, "text:t": 4}
    torch.manual_seed(0)
    model = build_model("llama_topn", TINY | {"top_n": 1}, dims, 2).eval()
    rng = np.random.default_rng(0)
    items = [{"id": f"s{i}", "label": i % 2, "target": np.eye(2, dtype=np.float32)[i % 2],
              **{k: rng.normal(size=d).astype(np.float32) for k, d in dims.items()},
              **{f"{k}_present": True for k in dims}} for i in range(32)]
    batch = collate(items)
    with torch.no_grad():
        out = model(batch)
    a1, a2 = model.candidate_names.index("audio:a1"), model.candidate_names.index("audio:a2")
    audio_slot = out["selected"][:, model.groups.index("audio")]  # (B,) the kept audio candidate
    assert set(audio_slot.tolist()) == {a1, a2}
    kept_is_a1 = (audio_slot == a1)[:, None]  # (B, 1)
    noise = torch.randn(32, 8, generator=torch.Generator().manual_seed(1))
    for change_kept in (False, True):
        changed = dict(batch)
        target_a1 = kept_is_a1 if change_kept else ~kept_is_a1  # per sample: which input to change
        changed["audio:a1"] = torch.where(target_a1, batch["audio:a1"] + noise, batch["audio:a1"])
        changed["audio:a2"] = torch.where(~target_a1, batch["audio:a2"] + noise, batch["audio:a2"])
        with torch.no_grad():
            new = model(changed)
        assert not torch.allclose(new["weights"], out["weights"])  # the scorer saw the change either way
        same = (new["selected"] == out["selected"]).all(1)  # (B,) samples that kept the same candidates
        assert same.sum() >= 24, same  # most: a changed dropped candidate may rise above the kept one
        differs = (new["logits"] - out["logits"]).abs().amax(1) > 1e-5  # (B,)
        if change_kept:
            assert differs.all()
        else:
            assert not differs[same].any(), (new["logits"] - out["logits"])[same]


def test_selection_table_counts_match_selected(tmp_path):
    dims = {"audio:a1": 8, "audio:a2": 8, "audio:a3": 8, "video": 4}
    torch.manual_seed(0)
    model = build_model("llama_topn", TINY | {"top_n": 2}, dims, 3).eval()
    rng = np.random.default_rng(0)
    absent = {0, 5}  # these samples have no video: nothing kept for it
    items = [{"id": f"s{i}", "label": i % 3, "target": np.eye(3, dtype=np.float32)[i % 3],
              **{k: rng.normal(size=d).astype(np.float32) for k, d in dims.items()},
              **{f"{k}_present": not (k == "video" and i in absent) for k in dims}} for i in range(20)]
    with torch.no_grad():
        out = model(collate(items))
    sel = out["selected"].numpy()  # (B, 2 modalities x top_n 2); -1 where nothing is kept
    pred = {"ids": [it["id"] for it in items], "probs": torch.softmax(out["logits"], -1).numpy(),
            "weights": out["weights"].numpy(), "selected": sel}
    y = np.array([it["label"] for it in items])
    write_predictions(tmp_path / "predictions.csv", model, pred, y, ["a", "b", "c"])
    assert write_selection(tmp_path, model.candidate_names) == tmp_path / "selection.csv"
    expected = {name: int((sel == j).sum()) for j, name in enumerate(model.candidate_names)}
    rows = load_selection(tmp_path)
    assert {r["candidate"]: r["kept"] for r in rows} == expected
    assert sum(expected[k] for k in ("audio:a1", "audio:a2", "audio:a3")) == 2 * 20  # two audio kept in every sample
    assert expected["video"] == 20 - len(absent)
    assert {r["candidate"]: r["modality"] for r in rows} == {
        "audio:a1": "audio", "audio:a2": "audio", "audio:a3": "audio", "video": "video"}
    assert all(r["samples"] == 20 and r["share"] == pytest.approx(r["kept"] / 20, abs=1e-4) for r in rows)
    assert count_kept([["audio:a1"], []], ["audio:a1", "audio:a2"]) == [
        {"candidate": "audio:a1", "modality": "audio", "kept": 1, "samples": 2, "share": 0.5},
        {"candidate": "audio:a2", "modality": "audio", "kept": 0, "samples": 2, "share": 0.0}]
    # a model without Top-N: no selection column, nothing written
    other = tmp_path / "plain"
    other.mkdir()
    with open(other / "predictions.csv", "w", newline="") as f:
        csv.writer(f).writerows([["id", "true", "predicted"], ["s0", "a", "a"]])
    assert write_selection(other) is None and not (other / "selection.csv").exists()


# ---------------------------------------------------------------- the table's epoch columns


def _fake_run(root, name, model, features, epochs, best_epochs, params=None):
    run = root / name
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump({
        "name": name, "data": {"features": features}, "model": {"name": model, "params": params or {}},
        "train": {"max_epochs": epochs}}))
    units = [{"best_epoch": b} for b in best_epochs]
    (run / "metrics.json").write_text(json.dumps({
        "model": model, "wall_time_s": 12.0, "units": units,
        "test": {"weighted_f1": 0.5, "accuracy": 0.6}, "val": {"weighted_f1": 0.5, "accuracy": 0.6}}))
    return run


def test_rows_of_different_budgets_share_one_column_group(tmp_path):
    feats = {"audio": "mfcc", "text": "minilm"}
    runs = [_fake_run(tmp_path, "attention-AT", "attention", feats, 100, [41]),
            _fake_run(tmp_path, "mer_han-AT", "mer_han", feats, 8, [2, 4]),
            _fake_run(tmp_path, "llama_topn-AT", "llama_topn", feats, 8, [7], {"top_n": 1})]
    table = render_table(runs)
    assert "| Model | Fusion | Top | Audio | Text | Video | Epochs | Best ep | time (s) | F1 | Acc |" in table
    assert "| attention | AT | 1 | mfcc | minilm | – | 100 | 42 | 12 | 50.00 | 60.00 |" in table
    assert "| mer_han | AT | 1 | mfcc | minilm | – | 8 | 3–5 | 12 | 50.00 | 60.00 |" in table
    assert "ep F1" not in table and "| Mode |" not in table


def test_variants_of_one_cell_get_a_row_each(tmp_path):
    # the paired bench's late-AVT and late-AVT-mean: same model, inputs and budget, other settings;
    # the table once showed only the later of the two, under the other's name
    feats = {"audio": "egemaps", "text": "minilm", "video": "fer2013"}
    runs = [_fake_run(tmp_path, "late-AVT", "late", feats, 100, [9]),
            _fake_run(tmp_path, "late-AVT-mean", "late", feats, 100, [4]),
            _fake_run(tmp_path, "attention-AVT", "attention", feats, 100, [25]),
            _fake_run(tmp_path, "llama_topn-AVT", "llama_topn", feats, 8, [6], {"top_n": 1}),
            _fake_run(tmp_path, "early-AVT-cv", "early", feats, 100, [])]
    # a refit after speaker-grouped CV has no best epoch: it trains the epochs the folds chose
    m = json.loads((runs[-1] / "metrics.json").read_text())
    m["units"] = [{"best_epoch": -1, "epochs_run": 11, "selection": {"mode": "speaker_cv"}}]
    (runs[-1] / "metrics.json").write_text(json.dumps(m))
    table = render_table(runs)
    assert "| early-AVT-cv | early | AVT | 1 | egemaps | minilm | fer2013 | 100 | 11 (CV) |" in table
    assert "| Run | Model | Fusion | Top | Audio | Text | Video | Epochs | Best ep |" in table
    assert "| late-AVT | late | AVT | 1 | egemaps | minilm | fer2013 | 100 | 10 |" in table
    assert "| late-AVT-mean | late | AVT | 1 | egemaps | minilm | fer2013 | 100 | 5 |" in table
    assert "| attention-AVT | attention | AVT |" in table and "| llama_topn-AVT | llama_topn | AVT | 1 |" in table
    assert table.count("| AVT |") == 5  # a row per run
    # no variants: no Run column
    assert "| Run |" not in render_table(runs[1:])


def test_a_grid_keeps_one_column_group_per_budget(tmp_path):
    feats = {"audio": ["mfcc"], "text": ["minilm"]}
    runs = [_fake_run(tmp_path, f"AT-top1-ep{e}", "llama_topn", feats, e, [b], {"top_n": 1})
            for e, b in ((2, 1), (10, 6))]
    table = render_table(runs)
    assert ("| Fusion | Top | Audio | Text | Video | 2 ep time (s) | 2 ep F1 | 2 ep Acc | 2 ep best "
            "| 10 ep time (s) | 10 ep F1 | 10 ep Acc | 10 ep best |") in table
    assert "| AT | 1 | mfcc | minilm | – | 12 | 50.00 | 60.00 | 2 | 12 | 50.00 | 60.00 | 7 |" in table
