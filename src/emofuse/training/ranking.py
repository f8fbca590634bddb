"""Encoder ranking and Top-N: train the unimodal baseline on every candidate encoder of a
modality, rank them on validation weighted F1 (never test), keep the best N. The MER reference
keeps hand-edited ranking lists; this one is computed and saved."""

from __future__ import annotations

import json
from pathlib import Path

from emofuse.config import DataConfig, ModelConfig, RunConfig, TrainConfig


def rank_encoders(
    manifest: str | Path,
    cache: str | Path,
    candidates: dict[str, list[str]],
    out: str | Path,
    train: TrainConfig | None = None,
    batch_size: int = 32,
    standardise: str | dict = "train",
) -> dict[str, list[dict]]:
    """Returns {modality: [{encoder, val_weighted_f1, val_accuracy, test_weighted_f1}, ...]} best
    first, and writes it to <out>/ranking.json. Test scores are recorded for the reader, never used."""
    from emofuse.training.finished import finished_run
    from emofuse.training.run import train_run

    train = train or TrainConfig()
    out = Path(out)
    ranking: dict[str, list[dict]] = {}
    for modality, encoders in candidates.items():
        rows = []
        for enc in encoders:
            cfg = RunConfig(
                name=f"rank-{modality}-{enc}",
                data=DataConfig(manifest=str(manifest), cache=str(cache), features={modality: enc}, batch_size=batch_size,
                                standardise=standardise),
                model=ModelConfig(name="unimodal"),
                train=train,
                out=str(out),
            )
            m = finished_run(cfg) or train_run(cfg, one_process_as="the encoder ranking")  # a resumed grid keeps finished baselines
            rows.append({
                "encoder": enc,
                "val_weighted_f1": m["val"]["weighted_f1"],
                "val_accuracy": m["val"]["accuracy"],
                "test_weighted_f1": m["test"]["weighted_f1"],
                "run": str(out / cfg.name),
            })
        # ties broken by name so the ranking is deterministic
        ranking[modality] = sorted(rows, key=lambda r: (-r["val_weighted_f1"], r["encoder"]))
    out.mkdir(parents=True, exist_ok=True)
    (out / "ranking.json").write_text(json.dumps(ranking, indent=2))
    return ranking


def top_n(ranking: dict[str, list[dict]], n: int, modalities: list[str] | None = None) -> dict[str, list[str]]:
    """The n best-ranked encoders of each modality (all modalities when none are named)."""
    mods = modalities or list(ranking)
    missing = [m for m in mods if m not in ranking]
    if missing:
        raise KeyError(f"no ranking for modalities {missing}; ranked: {sorted(ranking)}")
    return {m: [r["encoder"] for r in ranking[m][:n]] for m in mods}
