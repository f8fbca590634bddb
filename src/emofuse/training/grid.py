"""The MER2025 results grid by one command: rank encoders, then fusion set x Top-N x epochs."""

from __future__ import annotations

from pathlib import Path

from emofuse.config import DataConfig, GridConfig, RunConfig, dump_config
from emofuse.training.ranking import rank_encoders, top_n

LETTERS = {"A": "audio", "T": "text", "V": "video"}


def fusion_modalities(fusion_set: str) -> list[str]:
    bad = [c for c in fusion_set if c not in LETTERS]
    if bad or not fusion_set:
        raise ValueError(f"fusion set {fusion_set!r}: use letters A (audio), T (text), V (video)")
    return [LETTERS[c] for c in fusion_set]


def grid_runs(cfg: GridConfig, ranking: dict) -> list[RunConfig]:
    from emofuse.registry import MODELS

    takes_top_n = "top_n" in MODELS.get(cfg.model.name).Config.model_fields
    runs = []
    for fs in cfg.fusion_sets:
        mods = fusion_modalities(fs)
        for n in cfg.top_n:
            feats = top_n(ranking, n, mods)
            model = cfg.model
            if takes_top_n and "top_n" not in model.params:  # keep N candidates per sample, too
                model = model.model_copy(update={"params": {**model.params, "top_n": n}})
            for ep in cfg.epochs:
                runs.append(RunConfig(
                    name=f"{fs}-top{n}-ep{ep}",
                    data=DataConfig(manifest=cfg.manifest, cache=cfg.cache, features=feats, batch_size=cfg.batch_size),
                    model=model,
                    train=cfg.train.model_copy(update={"max_epochs": ep}),
                    out=str(Path(cfg.out) / "runs"),
                ))
    return runs


def run_grid(cfg: GridConfig, progress: bool = True) -> Path:
    """Rank, train every grid cell, and write <out>/table.md; returns its path."""
    from emofuse.corpora.base import Manifest
    from emofuse.evaluation.table import write_table
    from emofuse.features.extract import extract
    from emofuse.training.run import train_run

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    dump_config(cfg, out / "grid.yaml")
    # every candidate must be cached; extract skips what already is
    extract(Manifest.load(cfg.manifest), sorted({e for es in cfg.candidates.values() for e in es}), cfg.cache,
            progress=progress)
    ranking = rank_encoders(cfg.manifest, cfg.cache, cfg.candidates, out / "ranking", cfg.ranking_train, cfg.batch_size)
    runs = grid_runs(cfg, ranking)
    for i, run in enumerate(runs, 1):
        m = train_run(run)
        if progress:
            print(f"[{i}/{len(runs)}] {run.name}: weighted F1 {100 * m['test']['weighted_f1']:.1f} "
                  f"accuracy {100 * m['test']['accuracy']:.1f} ({m['wall_time_s']:.0f} s)")
    rank_runs = sorted((out / "ranking").glob("rank-*"))
    return write_table([Path(r.out) / r.name for r in runs], out / "table.md", unimodal=rank_runs)
