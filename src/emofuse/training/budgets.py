"""Epoch budgets: the snapshots a run keeps at each of train.budgets, and a shorter run replayed from
them (train.replay_from) instead of trained again."""

from __future__ import annotations

import json
import time
from pathlib import Path

import lightning as L
from safetensors.torch import save_file

from emofuse.config import RunConfig, TrainConfig
from emofuse.training.module import BestWeights


def check_budgets(train: TrainConfig) -> str:
    """Why train.budgets / train.replay_from cannot stand for runs of those budgets ('' when they can)."""
    if train.lr_schedule != "constant" or train.warmup > 0:
        return "the learning-rate schedule depends on the budget (lr_schedule linear or warmup)"
    if train.val_checks_per_epoch != 1:
        return "budgets are whole epochs, so one validation check per epoch (val_checks_per_epoch 1)"
    if train.cross_validation:
        return "cross-validation chooses its own epochs"
    return ""


class BudgetSnapshots(L.Callback):
    """At the end of epoch k of each budget k, what a run of k epochs would have kept: BestWeights'
    state then (the best weights of the first k epochs) and its record, with the seconds so far."""

    def __init__(self, best: BestWeights, budgets: list[int], t0: float):
        self.best, self.budgets, self.t0 = best, sorted(set(budgets)), t0
        self.kept: dict[int, dict] = {}

    def on_validation_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        epoch = trainer.current_epoch + 1
        if epoch in self.budgets and epoch not in self.kept:
            self.take(epoch, epoch)

    def take(self, budget: int, epochs_run: int, seconds: float | None = None) -> None:
        b = self.best
        self.kept[budget] = {"state": b.state, "best_epoch": b.best_epoch, "best_step": b.best_step, "best": b.best,
                             "checks": b.checks, "record": dict(b.record), "epochs_run": epochs_run,
                             "fit_time_s": time.perf_counter() - self.t0 if seconds is None else seconds}

    def finish(self, epochs_run: int, fit_s: float) -> None:
        """A fit stopped early: the budgets it did not reach keep what it ended with and its time (as
        would a longer run of theirs, stopped at the same epoch)."""
        for k in self.budgets:
            if k not in self.kept:
                self.take(k, epochs_run, fit_s)

    def save(self, unit_dir: Path) -> None:
        folder = unit_dir / "budgets"
        folder.mkdir(parents=True, exist_ok=True)
        for k, snap in self.kept.items():
            state = snap["state"] or {}
            save_file({n: v.detach().cpu().contiguous() for n, v in state.items()}, str(folder / f"ep{k}.safetensors"))
            (folder / f"ep{k}.json").write_text(json.dumps({n: v for n, v in snap.items() if n != "state"}, indent=2))


def replayed(cfg: RunConfig, unit_dir: Path, run_dir: Path) -> tuple[dict, dict]:
    """The weights and record train.replay_from's run kept for this unit at budget max_epochs."""
    from safetensors.torch import load_file

    folder = Path(cfg.train.replay_from).joinpath(unit_dir.relative_to(run_dir), "budgets")
    k = cfg.train.max_epochs
    try:
        return load_file(str(folder / f"ep{k}.safetensors")), json.loads((folder / f"ep{k}.json").read_text())
    except OSError:
        raise FileNotFoundError(f"run {cfg.name!r} replays the {k}-epoch budget of {cfg.train.replay_from}, which "
                                f"kept none in {folder} (train it with train.budgets including {k})") from None
