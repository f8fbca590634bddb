"""The MER2025 results grid by one command: rank encoders, then fusion set x Top-N x epochs."""

from __future__ import annotations

from pathlib import Path

from emofuse.config import ConfigError, DataConfig, GridConfig, RunConfig, dump_config
from emofuse.training.ranking import rank_encoders, top_n
from emofuse.training.tracking import parent_run

LETTERS = {"A": "audio", "T": "text", "V": "video"}
MODE_TAG = {"ranked": "", "per_sample": "-ps"}  # run names: AVT-top1-ep10, AVT-top1-ps-ep10


def fusion_modalities(fusion_set: str) -> list[str]:
    bad = [c for c in fusion_set if c not in LETTERS]
    if bad or not fusion_set:
        raise ValueError(f"fusion set {fusion_set!r}: use letters A (audio), T (text), V (video)")
    return [LETTERS[c] for c in fusion_set]


def grid_runs(cfg: GridConfig, ranking: dict) -> list[RunConfig]:
    """One run per fusion set x Top-N mode x N x epoch budget. "ranked" feeds the N best-ranked
    encoders of each modality and keeps them all; "per_sample" feeds every ranked encoder and lets
    the model keep the N its scorer weighs highest in each sample (run names end "-ps-ep<E>")."""
    from emofuse.registry import MODELS

    takes_top_n = "top_n" in MODELS.get(cfg.model.name).Config.model_fields
    modes = list(dict.fromkeys(cfg.top_n_mode))
    params = cfg.model.params
    if "per_sample" in modes:
        if not takes_top_n:
            raise ConfigError(f"top_n_mode per_sample needs a model that keeps its Top-N per sample (a top_n "
                              f"parameter, as llama_topn); {cfg.model.name!r} has none: use top_n_mode ranked")
        if "top_n" in params:
            raise ConfigError("top_n_mode per_sample takes the model's top_n from the grid's top_n; "
                              "remove top_n from model.params")
    segments = params.get("segments", 0)
    if isinstance(segments, dict):
        inputs = [f"{m}:{e}" for m, es in cfg.candidates.items() for e in es]
        if unknown := sorted(set(segments) - set(inputs)):
            raise ConfigError(f"model.params.segments names {unknown}, not grid inputs; inputs: {', '.join(inputs)}")
    shared = shared_budgets(cfg)
    runs = []
    for fs in cfg.fusion_sets:
        mods = fusion_modalities(fs)
        every = top_n(ranking, max(map(len, ranking.values()), default=0), mods)  # every ranked encoder, best first
        for mode in modes:
            for n in cfg.top_n:
                feats = top_n(ranking, n, mods) if mode == "ranked" else every
                # inputs are "<modality>:<encoder>" (lists of candidates); each gives max(segments, 1) candidates
                segs = {f"{m}:{e}": segments.get(f"{m}:{e}", 0) if isinstance(segments, dict) else segments
                        for m, es in feats.items() for e in es}
                fed = max(sum(max(segs[f"{m}:{e}"], 1) for e in es) for m, es in feats.items())
                if mode == "per_sample" and n >= fed and "ranked" in modes:
                    continue  # it would keep every candidate it feeds: the ranked cell itself, run once as that
                update = {}
                if takes_top_n and "top_n" not in params:
                    # ranked: keep all that is fed; per_sample: the scorer keeps N of them per sample
                    update["top_n"] = fed if mode == "ranked" else n
                if isinstance(segments, dict):  # only the inputs this run feeds (the model refuses others)
                    update["segments"] = {k: v for k, v in segments.items() if k in segs}
                model = cfg.model.model_copy(update={"params": {**params, **update}}) if update else cfg.model
                # segments cut frame sequences, so their modalities are fed as sequences
                sequence = {m: True for m, es in feats.items() if any(segs[f"{m}:{e}"] > 0 for e in es)}
                budgets = sorted(set(cfg.epochs))
                longest = f"{fs}-top{n}{MODE_TAG[mode]}-ep{budgets[-1]}"
                for ep in cfg.epochs:
                    update = {"max_epochs": ep}
                    if shared and len(budgets) > 1:  # the longest run keeps every budget's weights
                        update |= ({"budgets": budgets} if ep == budgets[-1]
                                   else {"replay_from": str(Path(cfg.out) / "runs" / longest)})
                    runs.append(RunConfig(
                        name=f"{fs}-top{n}{MODE_TAG[mode]}-ep{ep}",
                        data=DataConfig(manifest=cfg.manifest, cache=cfg.cache, features=feats,
                                        sequence=sequence or False, batch_size=cfg.batch_size,
                                        standardise=cfg.standardise),
                        model=model,
                        train=cfg.train.model_copy(update=update),
                        out=str(Path(cfg.out) / "runs"),
                    ))
    return runs


def shared_budgets(cfg: GridConfig) -> bool:
    """Whether the grid reads its shorter epoch budgets off its longest runs (GridConfig.share_budgets)."""
    from emofuse.training.budgets import check_budgets

    return cfg.share_budgets and not check_budgets(cfg.train)


@parent_run("grid", lambda cfg: Path(cfg.out))  # MLflow / W&B: the grid's runs as one run's children
def run_grid(cfg: GridConfig, progress: bool = True) -> Path:
    """Rank, train every grid cell, and write <out>/table.md; returns its path."""
    from emofuse.corpora.base import Manifest
    from emofuse.evaluation.table import write_table
    from emofuse.features.extract import extract
    from emofuse.training.budgets import check_budgets
    from emofuse.training.finished import finished_run
    from emofuse.training.run import train_run

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    dump_config(cfg, out / "grid.yaml")
    # every candidate must be cached; extract skips what already is
    specs = sorted({e for es in cfg.candidates.values() for e in es})
    entries = extract(Manifest.load(cfg.manifest), specs, cfg.cache, progress=progress)
    ranking = rank_encoders(cfg.manifest, cfg.cache, cfg.candidates, out / "ranking", cfg.ranking_train,
                            cfg.batch_size, standardise=cfg.standardise)
    runs = grid_runs(cfg, ranking)
    if len(entries) == len(specs):  # before any fusion run: a segmented modality needs every encoder's frames
        no_frames = {s for s, e in zip(specs, entries) if not e.meta.get("gives_sequence")}
        for run in runs:
            for m in run.data.sequence or {}:
                if bad := sorted(no_frames & set(run.data.features[m])):
                    raise ConfigError(
                        f"run {run.name}: segments cut {m} into frame segments, so each {m} encoder it feeds is read as "
                        f"frame sequences (per modality), but {', '.join(bad)} cached none; set segments only on "
                        f"modalities whose candidate encoders all give sequences")
    shared = shared_budgets(cfg) and len(set(cfg.epochs)) > 1
    if cfg.share_budgets and (why := check_budgets(cfg.train)) and progress:
        print(f"epoch budgets trained one by one, not shared: {why}")
    if shared:  # cell by cell (grid_runs makes each cell's runs adjacent): its longest run, then the replays
        order = [r for i in range(0, len(runs), len(cfg.epochs)) for r in
                 sorted(runs[i:i + len(cfg.epochs)], key=lambda r: bool(r.train.replay_from))]
    else:  # shortest budgets first, so a grid stopped part-way has whole epoch columns
        order = sorted(runs, key=lambda r: r.train.max_epochs)
    for i, run in enumerate(order, 1):  # the table keeps grid order
        done = finished_run(run)  # a grid stopped part-way resumes: finished cells are not trained again
        m = done if done is not None else train_run(run, one_process_as="a grid")
        if progress:
            print(f"[{i}/{len(runs)}] {run.name}: weighted F1 {100 * m['test']['weighted_f1']:.1f} "
                  f"accuracy {100 * m['test']['accuracy']:.1f} ({m['wall_time_s']:.0f} s"
                  f"{', finished before: kept' if done is not None else ''})")
    rank_runs = sorted((out / "ranking").glob("rank-*"))
    note = (f"Epoch budgets shared: each cell trained once for {max(cfg.epochs)} epochs (early stopping on validation), "
            f"a shorter budget k kept the best weights of its first k epochs (what a k-epoch run keeps), and its "
            f"time is that run's seconds to the end of epoch k.") if shared else ""
    return write_table([Path(r.out) / r.name for r in runs], out / "table.md", unimodal=rank_runs, note=note)
