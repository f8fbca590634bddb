"""train.init_from: a finished run's kept weights start another run (one more epoch budget), and a run
of another model is refused with a message."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from emofuse.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from tests.training.cached import toy_manifest, write_features


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("init")
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 90)
    toy_manifest(root / "manifest.csv", y, np.array(["train"] * 50 + ["val"] * 20 + ["test"] * 20))
    write_features(root / "cache", "toy", "a", [f"u{i:04d}" for i in range(90)],
                   2.0 * np.eye(3, 5)[y] + rng.normal(size=(90, 5)))
    return root


def _cfg(root, name, hidden=16, **train) -> RunConfig:
    return RunConfig(name=name, out=str(root / "runs"),
                     data=DataConfig(manifest=str(root / "manifest.csv"), cache=str(root / "cache"),
                                     features={"audio": "a"}, batch_size=16),
                     model=ModelConfig(name="early", params={"hidden": hidden}),
                     train=TrainConfig(**({"max_epochs": 3, "patience": 3, "lr": 1e-2, "mse_weight": 0.0, "progress": False,
                                          "logger": "none"} | train)))


def _probs(run) -> np.ndarray:
    df = pd.read_csv(run / "predictions.csv")
    return df[[c for c in df.columns if c.startswith("p_")]].to_numpy()


def test_a_run_started_from_another_starts_from_its_kept_weights(corpus):
    from emofuse.training.run import train_run

    train_run(_cfg(corpus, "first"))
    first = corpus / "runs" / "first"
    # lr 0: nothing moves, so the second run keeps the first run's weights and predicts as it did
    train_run(_cfg(corpus, "same", lr=0.0, max_epochs=1, patience=1, init_from=str(first)))
    np.testing.assert_allclose(_probs(corpus / "runs" / "same"), _probs(first), atol=1e-6)
    # without it, the same lr-0 run predicts from its random initial weights
    train_run(_cfg(corpus, "fresh", lr=0.0, max_epochs=1, patience=1))
    assert not np.allclose(_probs(corpus / "runs" / "fresh"), _probs(first), atol=1e-3)


def test_weights_of_another_model_or_none_are_refused(corpus):
    from emofuse.training.run import train_run

    first = corpus / "runs" / "first"
    if not (first / "model.safetensors").is_file():
        train_run(_cfg(corpus, "first"))
    with pytest.raises(ValueError, match="not this model's"):
        train_run(_cfg(corpus, "wider", hidden=32, init_from=str(first)))
    with pytest.raises(FileNotFoundError, match="init_from"):
        train_run(_cfg(corpus, "nothing", init_from=str(corpus / "no-such-run")))
