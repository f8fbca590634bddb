"""Pseudo-labelling (train.pseudo_label): which rows a threshold or a top fraction keeps, that only
unlabelled rows are ever pseudo-labelled, the row weights in the loss, and the rounds end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from emofuse.config import DataConfig, ModelConfig, PseudoLabelConfig, RunConfig, TrainConfig
from emofuse.corpora.base import Manifest
from emofuse.training.module import emotion_loss
from emofuse.training.pseudo import align, restrict, select
from emofuse.training.run import train_run
from tests.training.cached import toy_manifest, write_features


def test_a_threshold_keeps_the_rows_that_reach_it():
    probs = np.array([[0.95, 0.05], [0.6, 0.4], [0.1, 0.9], [0.5, 0.5]])
    assert select(probs, PseudoLabelConfig(threshold=0.9)).tolist() == [True, False, True, False]
    assert select(probs, PseudoLabelConfig(threshold=0.5)).tolist() == [True, True, True, True]


def test_a_top_fraction_keeps_each_predicted_class_most_confident_rows():
    probs = np.array([[0.9, 0.1], [0.7, 0.3], [0.6, 0.4], [0.55, 0.45], [0.2, 0.8], [0.4, 0.6]])
    # class 0 predicted for rows 0-3 (keep half: 0, 1), class 1 for rows 4-5 (half: 4)
    assert select(probs, PseudoLabelConfig(top_fraction=0.5)).tolist() == [True, True, False, False, True, False]


def test_alignment_moves_the_teachers_class_shares_to_the_labelled_or_the_estimated_ones():
    rng = np.random.default_rng(0)
    # a teacher on unlabelled rows whose true shares are (0.2, 0.3, 0.5), calibrated for the labelled rows'
    # shares (0.5, 0.3, 0.2): each row's likelihoods, times the labelled prior, normalised
    true_q, prior = np.array([0.2, 0.3, 0.5]), np.array([0.5, 0.3, 0.2])
    y = rng.choice(3, size=4000, p=true_q)
    lik = np.exp(1.5 * np.eye(3)[y] + rng.normal(size=(4000, 3)))
    probs = lik * prior
    probs /= probs.sum(1, keepdims=True)
    same, q = align(probs, prior, "none")
    assert same is probs and np.array_equal(q, prior)
    to_labelled, q = align(probs, prior, "labelled")
    np.testing.assert_allclose(to_labelled.sum(1), 1.0)
    assert np.abs(to_labelled.mean(0) - prior).max() < np.abs(probs.mean(0) - prior).max()
    em, q = align(probs, prior, "em")
    assert np.abs(q - true_q).max() < 0.03  # EM finds the unlabelled rows' own shares
    assert (em.argmax(1) == y).mean() > (probs.argmax(1) == y).mean()  # and the answers it gives are better
    # a class without labelled rows keeps probability 0
    none_of_2 = align(probs, np.array([0.6, 0.4, 0.0]), "em")[0]
    assert (none_of_2[:, 2] == 0).all() and np.allclose(none_of_2.sum(1), 1.0)
    with pytest.raises(ValueError, match="do not match"):
        align(probs, prior[:2], "em")


def test_row_weights_of_one_give_the_plain_loss_and_weights_shift_it():
    g = torch.Generator().manual_seed(0)
    logits, label = torch.randn(6, 3, generator=g), torch.tensor([0, 1, 2, 0, 1, 2])
    target = torch.nn.functional.one_hot(label, 3).float()
    cw = torch.tensor([1.0, 2.0, 0.5])
    for kw in ({}, {"class_weights": cw}, {"label_smoothing": 0.1}):
        plain = emotion_loss(logits, label, target, 0.5, **kw)
        ones = emotion_loss(logits, label, target, 0.5, sample_weight=torch.ones(6), **kw)
        torch.testing.assert_close(plain, ones)
    w = torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0, 0.0])  # weight 0: as if the last three rows were absent
    torch.testing.assert_close(emotion_loss(logits, label, target, 0.5, sample_weight=w),
                               emotion_loss(logits[:3], label[:3], target[:3], 0.5))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """3 separable classes; 30 labelled training rows, 150 unlabelled (labels hidden), 40 val, 40 test."""
    root = tmp_path_factory.mktemp("pseudo")
    rng = np.random.default_rng(0)
    n = 260
    y = rng.integers(0, 3, n)
    split = np.array(["train"] * 30 + ["unlabeled"] * 150 + ["val"] * 40 + ["test"] * 40)
    df = toy_manifest(root / "manifest.csv", y, split, hide_unlabeled=True)
    centres = 3.0 * np.eye(3, 6)
    write_features(root / "cache", "toy", "a", df["id"].tolist(), centres[y] + 0.8 * rng.normal(size=(n, 6)))
    return root


def _cfg(root, name, **pl) -> RunConfig:
    return RunConfig(
        name=name,
        data=DataConfig(manifest=str(root / "manifest.csv"), cache=str(root / "cache"), features={"audio": "a"},
                        batch_size=16),
        model=ModelConfig(name="early", params={"hidden": 16}),
        train=TrainConfig(max_epochs=20, patience=20, lr=1e-2, mse_weight=0.0, progress=False, logger="none",
                          pseudo_label=PseudoLabelConfig(**pl)),
        out=str(root / "runs"),
    )


def test_rounds_label_only_unlabelled_rows_and_record_them(corpus):
    metrics = train_run(_cfg(corpus, "pl", threshold=0.8, rounds=2, weight=0.5))
    run = corpus / "runs" / "pl"
    summary = json.loads((run / "pseudo_label.json").read_text())
    assert [r["round"] for r in summary["rounds"]] == [0, 1, 2] and summary["rounds"][0]["pseudo_labels"] is None
    assert metrics["pseudo_label"]["chosen_round"] == summary["chosen_round"]
    base = Manifest.load(run / "manifest_round0.csv").df.set_index("id")
    for r in (1, 2):
        df = Manifest.load(run / f"manifest_round{r}.csv").df.set_index("id")
        pseudo = df["pseudo"] == "1"
        assert pseudo.any()
        assert (base.loc[pseudo[pseudo].index, "split"] == "unlabeled").all()  # only unlabelled rows became train
        assert (df.loc[base["split"].isin(["val", "test"]), "label"] == base.loc[base["split"].isin(["val", "test"]), "label"]).all()
        assert (df.loc[base["split"].isin(["val", "test"]), "split"] == base.loc[base["split"].isin(["val", "test"]), "split"]).all()
        assert (df.loc[pseudo, "weight"].astype(float) == 0.5).all() and (df.loc[~pseudo, "weight"].astype(float) == 1.0).all()
        rec = summary["rounds"][r]["pseudo_labels"]
        assert rec["kept"] == sum(c["kept"] for c in rec["per_class"].values())
        # the recorded accuracy: the rows this round's teacher newly labelled, against their hidden labels
        teacher = Manifest.load(run / f"manifest_round{int(summary['rounds'][r]['teacher'][5:])}.csv").df.set_index("id")
        new = df.index[pseudo & (teacher["pseudo"] != "1")]
        assert len(new) == rec["kept"]
        if len(new):
            assert rec["accuracy"] == pytest.approx((df.loc[new, "label"] == df.loc[new, "hidden_label"]).mean())
    r1 = summary["rounds"][1]["pseudo_labels"]
    assert r1["accuracy"] > 0.8  # separable classes: confident pseudo-labels are mostly right
    assert (run / "round1" / "predictions_unlabeled.csv").is_file()


def test_without_unlabelled_rows_it_says_so(corpus, tmp_path):
    m = Manifest.load(corpus / "manifest.csv")
    m.df = m.df[m.df["split"] != "unlabeled"].reset_index(drop=True)
    m.save(tmp_path / "manifest.csv")
    cfg = _cfg(corpus, "none")
    cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"manifest": str(tmp_path / "manifest.csv")})})
    with pytest.raises(ValueError, match="no unlabeled rows"):
        train_run(cfg)


def test_distribution_targets_give_the_label_loss_for_one_hot_rows_and_distil_soft_ones():
    g = torch.Generator().manual_seed(1)
    logits, label = torch.randn(5, 4, generator=g), torch.tensor([0, 3, 1, 2, 3])
    one_hot = torch.nn.functional.one_hot(label, 4).float()
    w = torch.tensor([1.0, 0.5, 0.5, 1.0, 0.0])
    for kw in ({}, {"label_smoothing": 0.1}, {"sample_weight": w}, {"mse_weight": 0.3}):
        mse = kw.pop("mse_weight", 0.0)
        torch.testing.assert_close(emotion_loss(logits, label, one_hot, mse, ce_target="distribution", **kw),
                                   emotion_loss(logits, label, one_hot, mse, **kw))
    soft = torch.softmax(torch.randn(5, 4, generator=g), -1)  # a teacher's probabilities
    want = -(soft * torch.log_softmax(logits, -1)).sum(-1)
    torch.testing.assert_close(emotion_loss(logits, label, soft, 0.0, ce_target="distribution"), want.mean())
    torch.testing.assert_close(emotion_loss(logits, label, soft, 0.0, sample_weight=w, ce_target="distribution"),
                               (want * w).sum() / w.sum())
    assert not torch.allclose(emotion_loss(logits, label, soft, 0.0, ce_target="distribution"),
                              emotion_loss(logits, label, soft, 0.0))
    with pytest.raises(ValueError, match="ce_target"):
        emotion_loss(logits, label, soft, 0.0, ce_target="soft")


def test_soft_pseudo_labels_keep_the_teachers_probabilities_and_learn_against_them(corpus):
    import pandas as pd

    train_run(_cfg(corpus, "soft", top_fraction=1.0, rounds=1, weight=1.0, soft=True))
    run = corpus / "runs" / "soft"
    before = Manifest.load(run / "manifest_round0.csv").df.set_index("id")
    after = Manifest.load(run / "manifest_round1.csv").df.set_index("id")
    unlabelled = before.index[before["split"] == "unlabeled"]
    assert (after.loc[unlabelled, "pseudo"] == "1").all()  # top fraction 1: every unlabelled row kept
    teacher = pd.read_csv(run / "round0" / "predictions_unlabeled.csv", dtype={"id": str}).set_index("id")
    classes = Manifest.load(run / "manifest_round1.csv").label_set.classes
    probs = np.array([json.loads(after.loc[i, "soft_label"]) for i in unlabelled])
    np.testing.assert_allclose(probs, teacher.loc[unlabelled, [f"p_{c}" for c in classes]].to_numpy(), atol=1e-5)
    assert [classes[k] for k in probs.argmax(1)] == after.loc[unlabelled, "label"].tolist()
    assert (after.loc[before.index[before["split"] != "unlabeled"], "soft_label"] == "").all()  # labelled: one-hot
    for r in (0, 1):
        assert "ce_target: distribution" in (run / f"round{r}" / "config.yaml").read_text()


def test_aligned_pseudo_labels_record_the_shares_and_label_by_the_aligned_probabilities(corpus):
    import pandas as pd

    from emofuse.training.pseudo import labelled_prior

    train_run(_cfg(corpus, "aligned", top_fraction=1.0, rounds=1, weight=1.0, align="em"))
    run = corpus / "runs" / "aligned"
    rec = json.loads((run / "pseudo_label.json").read_text())["rounds"][1]["pseudo_labels"]
    assert rec["align"]["how"] == "em"
    before = Manifest.load(run / "manifest_round0.csv")
    classes = list(before.label_set.classes)
    prior = labelled_prior(before.df, classes)
    assert list(rec["align"]["labelled_shares"].values()) == pytest.approx(prior.tolist(), abs=1e-4)
    teacher = pd.read_csv(run / "round0" / "predictions_unlabeled.csv", dtype={"id": str}).set_index("id")
    raw = teacher[[f"p_{c}" for c in classes]].to_numpy(np.float64)
    probs, q = align(raw, prior, "em")
    assert (probs.argmax(1) != raw.argmax(1)).any()  # alignment changes answers here, so the labels tell which
    assert list(rec["align"]["aligned_to"].values()) == pytest.approx(q.tolist(), abs=1e-4)
    after = Manifest.load(run / "manifest_round1.csv").df.set_index("id")
    assert after.loc[teacher.index, "label"].tolist() == [classes[k] for k in probs.argmax(1)]


def test_restricting_the_classes_zeroes_the_others_and_refuses_unknown_names():
    probs = np.array([[0.5, 0.3, 0.2], [0.1, 0.2, 0.7]])
    out = restrict(probs, ["a", "b", "c"], ["a", "b"])
    np.testing.assert_allclose(out, [[0.625, 0.375, 0.0], [1 / 3, 2 / 3, 0.0]])
    assert out.argmax(1).tolist() == [0, 1]  # the second row's top class is gone: its next one names it
    for bad in (["a", "disgust"], []):
        with pytest.raises(ValueError, match="pseudo_label.classes"):
            restrict(probs, ["a", "b", "c"], bad)


def test_pseudo_labels_name_only_the_allowed_classes(corpus):
    import pandas as pd

    train_run(_cfg(corpus, "two", top_fraction=1.0, rounds=1, weight=1.0, classes=["happy", "sad"]))
    run = corpus / "runs" / "two"
    rec = json.loads((run / "pseudo_label.json").read_text())["rounds"][1]["pseudo_labels"]
    classes = list(Manifest.load(run / "manifest_round0.csv").label_set.classes)
    teacher = pd.read_csv(run / "round0" / "predictions_unlabeled.csv", dtype={"id": str}).set_index("id")
    raw = teacher[[f"p_{c}" for c in classes]].to_numpy(np.float64)
    assert (raw.argmax(1) == 2).any()  # the teacher names the third class: the restriction has work to do
    after = Manifest.load(run / "manifest_round1.csv").df.set_index("id")
    assert set(after.loc[teacher.index, "label"]) == {"happy", "sad"} and rec["per_class"]["angry"]["kept"] == 0
    assert rec["classes"] == ["happy", "sad"]
    assert after.loc[teacher.index, "label"].tolist() == [classes[k] for k in raw[:, :2].argmax(1)]
    with pytest.raises(ValueError, match="pseudo_label.classes"):  # refused before the teacher trains
        train_run(_cfg(corpus, "bad", top_fraction=1.0, classes=["happy", "disgust"]))
    assert not (corpus / "runs" / "bad" / "round0").exists()
