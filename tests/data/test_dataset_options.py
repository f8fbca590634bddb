"""FeatureDataset's per-speaker standardisation and dialogue-context input, on hand-made features."""

from __future__ import annotations

import numpy as np
import pandas as pd

from emofuse.data.dataset import FeatureDataset, ModalityFeatures, collate, dialogue_context


def _ds(vectors, speakers, present=None) -> FeatureDataset:
    n = len(vectors)
    present = np.ones(n, bool) if present is None else np.asarray(present)
    feats = {"audio": ModalityFeatures("fake", np.asarray(vectors, np.float32), present)}
    return FeatureDataset([f"r{i}" for i in range(n)], np.zeros(n, int), np.zeros((n, 2), np.float32), feats, speakers)


def test_per_speaker_standardisation_uses_each_speakers_own_statistics():
    rng = np.random.default_rng(0)
    a = rng.normal(100.0, 5.0, (12, 3))  # a loud speaker
    b = rng.normal(-3.0, 0.5, (12, 3))  # a quiet one
    few = rng.normal(0.0, 1.0, (2, 3))  # too few rows for own statistics: pooled ones
    x = np.concatenate([a, b, few])
    ds = _ds(x, ["A"] * 12 + ["B"] * 12 + ["C"] * 2, present=[True] * 25 + [False]).per_speaker_standardised()
    v = ds.features["audio"].vectors
    np.testing.assert_allclose(v[:12].mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(v[:12].std(0), 1, atol=1e-5)
    np.testing.assert_allclose(v[12:24].mean(0), 0, atol=1e-5)
    pooled_mean, pooled_std = x[:25].mean(0), x[:25].std(0)
    np.testing.assert_allclose(v[24], (x[24] - pooled_mean) / pooled_std, rtol=1e-4)
    assert (v[25] == 0).all()  # absent rows stay zero
    assert ds.speakers[0] == "A" and ds.subset([0, 24]).speakers == ["A", "C"]


def test_per_speaker_keys_leave_other_inputs_alone():
    ds = _ds(np.arange(24, dtype=float).reshape(12, 2), ["A"] * 12)
    ds.features["text"] = ModalityFeatures("t", np.ones((12, 2), np.float32), np.ones(12, bool))
    out = ds.per_speaker_standardised(keys=["audio"])
    assert (out.features["text"].vectors == 1).all()
    np.testing.assert_allclose(out.features["audio"].vectors.mean(0), 0, atol=1e-6)


def test_dialogue_context_newest_first_with_speaker_flags():
    df = pd.DataFrame({"dialogue": ["d0", "d0", "d1", "d0", "d0", ""],
                       "speaker": ["Ross", "Rachel", "Joey", "Ross", "Monica", "Ross"]})
    vec = np.arange(6, dtype=np.float32)[:, None] * np.ones((1, 2), np.float32)  # row i holds i
    present = np.array([True, True, True, False, True, True])
    ctx = dialogue_context(ModalityFeatures("minilm", vec, present), df, k=2)
    assert ctx.dim == 3 and ctx.encoder == "minilm+context2"
    assert not ctx.present[0] and not ctx.present[2] and not ctx.present[5]  # first of a dialogue / none
    np.testing.assert_array_equal(ctx.sequences[1], [[0, 0, -1]])  # Ross before Rachel: another speaker
    np.testing.assert_array_equal(ctx.sequences[3], [[1, 1, -1], [0, 0, 1]])  # newest first; Ross again: +1
    np.testing.assert_array_equal(ctx.sequences[4], [[1, 1, -1], [0, 0, -1]])  # row 3 has no input: skipped
    items = [{"id": str(i), "label": 0, "target": np.zeros(2, np.float32), "c": ctx.sequences[i],
              "c_present": bool(ctx.present[i])} for i in range(6)]
    batch = collate(items)
    assert batch["c"].shape == (6, 2, 3) and batch["c_mask"].sum(1).tolist() == [0, 1, 0, 2, 2, 0]
