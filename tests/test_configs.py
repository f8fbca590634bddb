"""Every shipped config loads and validates: keys, model name and params, encoder names."""

from __future__ import annotations

from pathlib import Path

import pytest

from emofuse.config import ConfigError, GridConfig, RunConfig, load_config, load_yaml, validate
from emofuse.registry import ENCODERS, MODELS

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


def _encoders(features: dict) -> list[str]:
    return [e for v in features.values() for e in ([v] if isinstance(v, str) else v)]


def _run_configs(path: Path, raw: dict) -> list:
    """The run configs a shipped config holds: itself, a late fusion's members, a sweep's base, or
    every variant of an ablation."""
    from emofuse.training.ablation import AblationConfig
    from emofuse.training.late_runs import LateRunsConfig
    from emofuse.training.sweep import SweepConfig

    if "variants" in raw:
        cfg = load_config(AblationConfig, path)
        return [cfg.variant_config(v) for v in cfg.variants]
    if "members" in raw:
        return list(load_config(LateRunsConfig, path).member_configs().values())
    if "grid" in raw or "ranges" in raw:
        return [load_config(SweepConfig, path).base_config()]
    return [load_config(GridConfig if "candidates" in raw else RunConfig, path)]


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_shipped_config_validates(path, monkeypatch):
    monkeypatch.chdir(path.parents[1])  # a sweep's base config is a path from the repository root
    raw = load_yaml(path)
    assert path.read_text().startswith("#"), "every config names the command that runs it in its header"
    for cfg in _run_configs(path, raw):
        model = MODELS.get(cfg.model.name)
        validate(model.Config, cfg.model.params)
        names = _encoders(cfg.candidates if isinstance(cfg, GridConfig) else cfg.data.features)
        raw_inputs = getattr(model, "raw_inputs", False)  # fine-tuning / zero-shot models read the media
        for n in names:
            assert n in ENCODERS or n.startswith("hf:") or (raw_inputs and n == "raw"), f"{path.name}: unknown encoder {n!r}"


def test_configs_exist():
    assert len(CONFIGS) >= 4


def test_unknown_key_and_override(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("name: x\ndata: {manifest: m, cache: c, features: {audio: egemaps}}\nmodel: {name: unimodal}\n")
    cfg = load_config(RunConfig, p, ["train.lr=3e-4", "train.seeds=[1,2]"])
    assert cfg.train.lr == 3e-4 and cfg.train.seeds == [1, 2]
    with pytest.raises(ConfigError, match="unknown key 'train.learning_rate'.*valid keys here: .*lr"):
        load_config(RunConfig, p, ["train.learning_rate=1"])
