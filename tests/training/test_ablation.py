"""`emofuse ablation`: every variant trains over the same seeds into one table; --only re-runs some
variants and keeps the others' rows; a variant that does not validate stops it before training."""

from __future__ import annotations

import json

import pytest

from emofuse.config import ConfigError, load_config
from emofuse.training.ablation import AblationConfig, run_ablation
from tests.training.test_grid_selection import corpus  # noqa: F401  (a toy 2-class corpus with its cache)


def _config(root, **over) -> dict:
    base = {"name": "base", "data": {"manifest": str(root / "manifest.csv"), "cache": str(root / "cache"),
                                     "features": {"audio": "a1", "text": "t"}, "batch_size": 32},
            "model": {"name": "early", "params": {"hidden": 16}},
            "train": {"max_epochs": 2, "patience": 2, "progress": False, "logger": "none"}}
    return {"name": "abl", "base": base, "seeds": [0, 1], "out": str(root / "ablations"),
            "variants": {"early": [], "audio-only": ["model={name: unimodal, params: {modality: audio, hidden: 16}}",
                                                     "data.features={audio: a1}"]}} | over


def test_variants_over_seeds_in_one_table(corpus, tmp_path):  # noqa: F811
    cfg = AblationConfig.model_validate(_config(corpus))
    result = run_ablation(cfg, progress=False)
    assert [r["variant"] for r in result["rows"]] == ["early", "audio-only"]
    assert all(r["seeds"] == [0, 1] for r in result["rows"])
    assert [r["model"] for r in result["rows"]] == ["early", "unimodal"]
    out = corpus / "ablations" / "abl"
    table = (out / "table.md").read_text()
    assert "| early | early |" in table and "| audio-only | unimodal |" in table and " ± " in table
    for v, row in zip(("early", "audio-only"), result["rows"]):  # each variant: a normal run directory, a unit per seed
        m = json.loads((out / v / "metrics.json").read_text())
        assert [u["seed"] for u in m["units"]] == [0, 1]
        # each seed's own figures are kept, and the row's mean is theirs
        assert row["per_seed"]["test"] == [u["test"]["weighted_f1"] for u in m["units"]]
        assert row["test"]["weighted_f1"] == pytest.approx(sum(row["per_seed"]["test"]) / 2)
    assert (out / "ablation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # --only re-runs one variant and keeps the other's row as it was
    before = {r["variant"]: r for r in result["rows"]}
    again = run_ablation(cfg, only=["audio-only"], progress=False)
    assert [r["variant"] for r in again["rows"]] == ["early", "audio-only"]
    assert again["rows"][0] == before["early"]
    # a one-seed re-run of a variant sits beside the two-seed row, each row saying its own seeds
    one = run_ablation(AblationConfig.model_validate(_config(corpus, seeds=[0])), only=["audio-only"], progress=False)
    assert one["rows"][0] == before["early"] and one["rows"][1]["seeds"] == [0]
    rows = {line.split(" | ")[0]: line for line in (out / "table.md").read_text().splitlines()
            if line.startswith("| early") or line.startswith("| audio-only")}
    assert "| 0, 1 |" in rows["| early"] and " ± " in rows["| early"]
    assert "| 0 |" in rows["| audio-only"] and " ± " not in rows["| audio-only"]
    with pytest.raises(ValueError, match="unknown variant"):
        run_ablation(cfg, only=["nope"], progress=False)
    # a variant added for one command (--set "variants.X=[...]") keeps its row when the next command adds another
    for extra in ("early-s1", "early-s2"):
        more = _config(corpus, seeds=[1]) | {"variants": _config(corpus)["variants"] | {extra: []}}
        last = run_ablation(AblationConfig.model_validate(more), only=[extra], progress=False)
    assert [r["variant"] for r in last["rows"]] == ["early", "audio-only", "early-s2", "early-s1"]  # the config's first
    assert "| early-s1 |" in (out / "table.md").read_text()


def test_an_ablation_run_again_keeps_finished_variants(corpus, monkeypatch):  # noqa: F811
    """Stopped part-way or run again, an ablation trains only what has not finished with its config."""
    import emofuse.training.run as run_mod

    cfg = AblationConfig.model_validate(_config(corpus, name="resume"))
    first = run_ablation(cfg, progress=False)
    (corpus / "ablations" / "resume" / "ablation.json").unlink()  # as if stopped before the table was written

    def no_training(run, **kw):
        raise AssertionError(f"{run.name} trained again")

    monkeypatch.setattr(run_mod, "train_run", no_training)
    again = run_ablation(cfg, progress=False)
    for a, b in zip(first["rows"], again["rows"], strict=True):
        assert a["test"] == b["test"] and a["val"] == b["val"] and a["variant"] == b["variant"]
    changed = AblationConfig.model_validate(_config(corpus, name="resume", seeds=[0]))
    with pytest.raises(AssertionError, match="trained again"):
        run_ablation(changed, progress=False)


def test_a_bad_variant_is_refused_before_training(corpus, tmp_path):  # noqa: F811
    path = tmp_path / "a.yaml"
    import yaml

    path.write_text(yaml.safe_dump(_config(corpus, variants={"bad": ["train.learning_rate=1"]})))
    with pytest.raises(ConfigError, match="learning_rate"):
        load_config(AblationConfig, path)
    assert not (corpus / "ablations" / "abl" / "bad").exists()


def test_seeds_of_one_variant_run_as_two_rows_are_pooled(tmp_path):
    """benchmarks/ablation_seeds.py: seed 0 in one row's folder and seeds 1-2 in another's give one mean ± std
    over the three; a seed in both folders is refused."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "ablation_seeds.py"
    tool = importlib.util.module_from_spec(spec := importlib.util.spec_from_file_location("ablation_seeds", path))
    spec.loader.exec_module(tool)

    def unit(seed, f1):
        return {"seed": seed, "best_epoch": seed, "test": {"weighted_f1": f1, "accuracy": f1},
                "val": {"weighted_f1": f1 / 2, "accuracy": f1 / 2}}

    for name, units in (("x", [unit(0, 0.30)]), ("x-s12", [unit(1, 0.42), unit(2, 0.36)]), ("y", [unit(1, 0.5)])):
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.json").write_text(json.dumps({"units": units}))
    got = tool.pooled(tmp_path, ["x", "x-s12"])
    assert got["seeds"] == [0, 1, 2] and got["epoch_kept"] == [1, 2, 3]
    each, mean, std = got["test"]["weighted_f1"]
    assert each == [30.0, 42.0, 36.0] and mean == pytest.approx(36.0) and std == pytest.approx(6.0)
    assert got["val"]["weighted_f1"][1] == pytest.approx(18.0)
    with pytest.raises(ValueError, match="more than one"):
        tool.pooled(tmp_path, ["x-s12", "y"])
    # --best-val: seed 1 is in both rows; y's unit has the higher validation figure, so it counts
    best = tool.pooled(tmp_path, ["x", "x-s12", "y"], best_val=True)
    assert best["seeds"] == [0, 1, 2] and best["rows"] == ["x", "y", "x-s12"]
    assert best["test"]["weighted_f1"][0] == [30.0, 50.0, 36.0]
