"""Experiment tracking (train.loggers; docs/tracking.md): the loggers each fit logs its epochs to, and,
once the run has written its folder, its test metrics and its report and plots.

TensorBoard and CSV write under the run folder (<run>/tb, <run>/csv), one version per (fold, seed)
unit. MLflow and W&B hold one tracked run per emofuse run: its resolved config as parameters, every
unit's epoch metrics (prefixed "<fold>_seed<k>-" when the run has several units, so their steps do not
mix), the test metrics (mean and std over units) and the run folder's report files as artefacts.
A sweep, grid or ablation (`parent_run`) makes its trials the children of one tracked run.

MLflow and W&B are imported only when a run lists them; a missing one is named, with what to install,
before anything trains. Only process 0 of a distributed fit logs to them (Lightning logs metrics from
rank 0 alone; the other processes get no MLflow or W&B logger at all, so they never open the store)."""

from __future__ import annotations

import contextvars
import functools
import importlib
import netrc
import os
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlparse

LOGGERS = ("tensorboard", "csv", "mlflow", "wandb")
# a local store that needs no server: MLflow 3 refuses its old folder store unless told to, and
# recommends a database; the artefacts go beside it
DEFAULT_MLFLOW_STORE = "runs/mlruns"
EXTRA = "pip install 'emofuse[track]'"
# the run folder's report files logged as artefacts: every top-level one of these kinds, and each
# unit's learning curve from its sub-folder (never weights, caches or the loggers' own folders)
REPORT_SUFFIXES = (".json", ".yaml", ".csv", ".png", ".md")
UNIT_FILES = ("curves.png", "history.csv")
NOT_REPORTS = {"tb", "csv", "wandb", "encoder", "budgets"}


class MissingPackage(ImportError, ValueError):
    """A listed logger's package is not installed. A ValueError too, so the CLI prints it as the one
    line it is, as it does for a wrong config value."""


def require(loggers: list[str]) -> None:
    """Import the packages that `loggers` need, or raise one line saying what to install."""
    for name in loggers:
        if name in ("mlflow", "wandb"):
            try:
                importlib.import_module(name)
            except ImportError:
                raise MissingPackage(f"train.loggers: {name} needs the {name} package: {EXTRA}") from None


# --------------------------------------------------------------------------- parents (sweeps, grids)
@dataclass(eq=False)
class _Parent:
    name: str
    kind: str  # sweep, grid, ablation
    folder: Path  # where its tables are written, logged to its MLflow run at the end
    outer: "_Parent | None"
    mlflow: dict = field(default_factory=dict)  # (tracking uri, experiment id) -> its MLflow run id


_PARENT: contextvars.ContextVar[_Parent | None] = contextvars.ContextVar("emofuse_tracking_parent", default=None)


def parent_run(kind: str, folder: Callable[[Any], Path]):
    """Decorates a function whose first argument is a config with a `name` (a sweep's, a grid's, an
    ablation's): every run it trains is tracked as a child of one run named so (MLflow: a parent
    run, the children tagged mlflow.parentRunId; W&B: group=name). The parent is made only when a
    child logs to MLflow, and at the end gets the tables under folder(config) as artefacts."""

    def wrap(fn):
        @functools.wraps(fn)
        def tracked(cfg, *args, **kwargs):
            parent = _Parent(cfg.name, kind, Path(folder(cfg)), _PARENT.get())
            token = _PARENT.set(parent)
            status = "FAILED"
            try:
                result = fn(cfg, *args, **kwargs)
                status = "FINISHED"
                return result
            finally:
                _PARENT.reset(token)
                _close_parent(parent, status)

        return tracked

    return wrap


def _parent_mlflow_run(parent: _Parent, client, uri: str, experiment_id: str) -> str:
    key = (uri, experiment_id)
    if key not in parent.mlflow:
        tags = {"mlflow.runName": parent.name, "emofuse.kind": parent.kind}
        if parent.outer is not None:  # a sweep inside a sweep: nested all the way up
            tags["mlflow.parentRunId"] = _parent_mlflow_run(parent.outer, client, uri, experiment_id)
        parent.mlflow[key] = client.create_run(experiment_id, tags=tags).info.run_id
    return parent.mlflow[key]


def _close_parent(parent: _Parent, status: str) -> None:
    if not parent.mlflow:
        return
    from mlflow import MlflowClient

    tables = [p for p in sorted(parent.folder.glob("*")) if p.is_file() and p.suffix in (".md", ".json", ".yaml")]
    for (uri, _), run_id in parent.mlflow.items():
        client = MlflowClient(uri)
        for path in tables:
            client.log_artifact(run_id, str(path))
        client.set_terminated(run_id, status)


# --------------------------------------------------------------------------- one run's tracked runs
@dataclass(eq=False)
class _Tracked:
    """The MLflow and W&B runs of one emofuse run, opened by its first fit and closed by `finish`."""

    started: int  # config.yaml's mtime: train_run writes it first, so a new run of the folder differs
    several: bool  # several units (seeds, folds): each one's epoch metrics are prefixed
    mlflow: tuple | None = None  # (client, tracking uri, run id)
    wandb: Any = None  # the wandb Run


_OPEN: dict[str, _Tracked] = {}  # run folder -> its tracked runs while it trains


def loggers(cfg, plan: dict, seed: int, tb_dir: Path, rank: int) -> list:
    """Lightning's loggers for one (fold, seed) unit of cfg's run (tb_dir is <run>/tb); none with
    train.logger: none. On processes other than 0, TensorBoard and CSV only (each rank-zero-only)."""
    t = cfg.train
    if t.logger == "none" or not t.loggers:
        return []
    require(t.loggers)
    run_dir = tb_dir.parent
    version = "_".join(x for x in (plan["name"], f"seed{seed}") if x)
    out = []
    if "tensorboard" in t.loggers:
        from lightning.pytorch.loggers import TensorBoardLogger

        out.append(TensorBoardLogger(str(tb_dir), name="", version=version, default_hp_metric=False))
    if "csv" in t.loggers:
        from lightning.pytorch.loggers import CSVLogger

        out.append(CSVLogger(str(run_dir), name="csv", version=version))
    if rank != 0 or not {"mlflow", "wandb"} & set(t.loggers):
        return out
    tracked = _open(cfg, run_dir)
    prefix = version if tracked.several else ""
    if tracked.mlflow:
        from lightning.pytorch.loggers import MLFlowLogger

        _, uri, run_id = tracked.mlflow
        out.append(MLFlowLogger(experiment_name=t.experiment, tracking_uri=uri, run_id=run_id, prefix=prefix))
    if tracked.wandb is not None:
        from lightning.pytorch.loggers import WandbLogger

        out.append(WandbLogger(experiment=tracked.wandb, save_dir=str(run_dir), prefix=prefix))
    return out


def _open(cfg, run_dir: Path) -> _Tracked:
    """The run's tracked runs: those its earlier units opened, or new ones (closing any that a run of
    this folder which stopped part-way left open)."""
    key = str(run_dir.resolve())
    config = run_dir / "config.yaml"
    started = config.stat().st_mtime_ns if config.is_file() else 0
    tracked = _OPEN.get(key)
    if tracked is not None and tracked.started == started:
        return tracked
    if tracked is not None:
        _close(_OPEN.pop(key), "FAILED")
    t = cfg.train
    tracked = _Tracked(started, several=len(t.seeds) > 1 or t.cross_validation is not False)
    params = _flat(cfg.model_dump(mode="json"))
    parent = _PARENT.get()
    if "mlflow" in t.loggers:
        tracked.mlflow = _open_mlflow(cfg, run_dir, params, parent)
    if "wandb" in t.loggers:
        tracked.wandb = _open_wandb(cfg, run_dir, parent)
    _OPEN[key] = tracked
    return tracked


def mlflow_uri(train) -> str:
    """train.mlflow_uri, else MLFLOW_TRACKING_URI, else the local store runs/mlruns (a SQLite
    database, made on first use), as an absolute URI: every process and later command finds it."""
    uri = train.mlflow_uri or os.environ.get("MLFLOW_TRACKING_URI", "")
    if uri:
        return uri
    store = Path(DEFAULT_MLFLOW_STORE).resolve()
    store.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{store / 'mlflow.db'}"


def _experiment_id(client, uri: str, name: str) -> str:
    found = client.get_experiment_by_name(name)
    if found is not None and found.lifecycle_stage != "deleted":
        return found.experiment_id
    location = None
    if uri.startswith("sqlite:///"):  # a local database: its artefacts beside it, not in the working folder
        location = (Path(uri[len("sqlite:///"):]).parent / "artifacts").resolve().as_uri()
    return client.create_experiment(name, artifact_location=location)


def _open_mlflow(cfg, run_dir: Path, params: dict, parent: _Parent | None) -> tuple:
    from mlflow import MlflowClient
    from mlflow.entities import Param
    from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH

    uri = mlflow_uri(cfg.train)
    client = MlflowClient(uri)
    experiment = _experiment_id(client, uri, cfg.train.experiment)
    tags = {"mlflow.runName": cfg.name, "emofuse.run_dir": str(run_dir.resolve()), "emofuse.model": cfg.model.name}
    if parent is not None:
        tags["mlflow.parentRunId"] = _parent_mlflow_run(parent, client, uri, experiment)
    run_id = client.create_run(experiment, tags=tags).info.run_id
    # logged once, here: a speaker-CV refit's config differs (its epoch budget), and MLflow refuses
    # a parameter logged again with another value
    plist = [Param(k, str(v)[:MAX_PARAM_VAL_LENGTH]) for k, v in params.items()]
    for i in range(0, len(plist), 100):  # MLflow's limit per batch
        client.log_batch(run_id, params=plist[i:i + 100])
    return client, uri, run_id


def wandb_mode() -> str | None:
    """Online only for a user who has logged in (WANDB_API_KEY, or `wandb login`'s netrc entry);
    else offline, so that no run needs a network. WANDB_MODE, when set, decides (None: wandb reads it)."""
    if os.environ.get("WANDB_MODE"):
        return None
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    try:
        if netrc.netrc(os.environ.get("NETRC") or None).authenticators(host):
            return "online"
    except (OSError, netrc.NetrcParseError):
        pass
    return "offline"


def _open_wandb(cfg, run_dir: Path, parent: _Parent | None):
    import wandb

    # create_new: this run alone, whatever else the process has open (a user's own run is left alone)
    run = wandb.init(project=cfg.train.experiment, name=cfg.name, group=parent.name if parent else None,
                     dir=str(run_dir), mode=wandb_mode(), config=cfg.model_dump(mode="json"),
                     id=uuid.uuid4().hex[:12], reinit="create_new")
    # units restart their steps: each metric against Lightning's step, as WandbLogger itself sets it up
    run.define_metric("trainer/global_step")
    run.define_metric("*", step_metric="trainer/global_step", step_sync=True)
    return run


def _flat(d: dict, prefix: str = "") -> dict:
    """A nested config as MLflow parameters keyed as --set takes them (train.lr), lists as text."""
    out = {}
    for k, v in d.items():
        key = re.sub(r"[^\w./\- ]", "_", f"{prefix}{k}")  # the characters MLflow accepts in a key
        if isinstance(v, dict) and v:
            out |= _flat(v, key + ".")
        else:
            out[key] = v
    return out


def report_files(run_dir: Path) -> list[Path]:
    """The run folder's report and plots: its top-level report files and each unit's learning curve."""
    top = [p for p in sorted(run_dir.iterdir()) if p.is_file() and p.suffix in REPORT_SUFFIXES]
    units = [p for name in UNIT_FILES for p in sorted(run_dir.rglob(name))
             if p.parent != run_dir and not NOT_REPORTS & set(p.relative_to(run_dir).parts)]
    return top + units


def finish(cfg, run_dir: Path, metrics: dict) -> None:
    """After train_run has written the run folder (process 0 only): the test metrics and the report
    files go to the run's MLflow and W&B runs, which are then closed."""
    tracked = _OPEN.pop(str(run_dir.resolve()), None)
    if tracked is None:
        return
    final = {f"test_{k}": float(v) for k, v in metrics["test"].items() if isinstance(v, (int, float))}
    final["wall_time_s"] = float(metrics["wall_time_s"])
    files = report_files(run_dir)
    try:
        if tracked.mlflow:
            client, _, run_id = tracked.mlflow
            for k, v in final.items():
                client.log_metric(run_id, k, v)
            for path in files:
                rel = path.parent.relative_to(run_dir)
                client.log_artifact(run_id, str(path), None if rel == Path(".") else rel.as_posix())
        if tracked.wandb is not None:
            import wandb

            tracked.wandb.summary.update(final)
            artefact = wandb.Artifact(re.sub(r"[^\w.-]", "_", cfg.name), type="emofuse-run")
            for path in files:
                artefact.add_file(str(path), name=path.relative_to(run_dir).as_posix())
            tracked.wandb.log_artifact(artefact)
    except BaseException:
        _close(tracked, "FAILED")
        raise
    _close(tracked, "FINISHED")


def _close(tracked: _Tracked, status: str) -> None:
    if tracked.mlflow:
        client, _, run_id = tracked.mlflow
        client.set_terminated(run_id, status)
    if tracked.wandb is not None:
        tracked.wandb.finish(exit_code=0 if status == "FINISHED" else 1)
