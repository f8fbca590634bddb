"""Where and how a fit runs: the Trainer's accelerator, processes and precision, this process's rank,
the distributed process group's lifetime, and Lightning's console output."""

from __future__ import annotations

import warnings

import lightning as L
import torch

from emofuse.config import TrainConfig


def placement(train: TrainConfig) -> dict:
    """The Trainer's accelerator, processes and precision from train.accelerator, devices, num_nodes,
    strategy and precision: cpu when no GPU is present, and 32-bit there (bf16-mixed on GPU)."""
    gpu = train.accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    # ddp (and auto with more than one process, which Lightning would make ddp): with the search for
    # unused parameters, which most models here have (an attention pool per input that vectors skip,
    # Top-N candidates left out, late fusion's members on absent inputs); without it DDP stops at the
    # first step. ddp_find_unused_parameters_false skips the search.
    several = train.devices != 1 or train.num_nodes > 1
    strategy = train.strategy
    if strategy == "ddp" or (strategy == "auto" and several):
        strategy = "ddp_find_unused_parameters_true"
    return {"accelerator": "gpu" if gpu else "cpu", "devices": train.devices, "num_nodes": train.num_nodes,
            "strategy": strategy, "precision": train.precision or ("bf16-mixed" if gpu else "32-true")}


def process_rank(train: TrainConfig) -> int:
    """This process's rank among those that train together (0 when one process trains). The launch
    decides it (Lightning's ddp re-runs the command with LOCAL_RANK set, torchrun sets RANK, SLURM
    SLURM_PROCID, a machine of several NODE_RANK), and a Trainer built with the run's settings reads
    it before anything is launched."""
    if train.devices == 1 and train.num_nodes == 1:
        return 0
    return L.Trainer(**placement(train), logger=False, enable_checkpointing=False, enable_progress_bar=False,
                     enable_model_summary=False).global_rank


def sharded(strategy) -> bool:
    """Whether the strategy wraps the model's own layers in place (fsdp, deepspeed, model parallel), so
    that the model object is not usable as it was after the fit."""
    from lightning.pytorch.strategies import DeepSpeedStrategy, FSDPStrategy, ModelParallelStrategy

    return isinstance(strategy, (DeepSpeedStrategy, FSDPStrategy, ModelParallelStrategy))


_CLOSE_REGISTERED = False


def close_group_at_exit() -> None:
    """Destroy the default process group (made by Lightning's ddp for the first distributed fit and
    kept for the next) when the interpreter exits, before finalisation tears gloo's threads down in
    no particular order: left to the destructors, a process that trained on several processes
    sometimes ends with `terminate called without an active exception` (SIGABRT) after it finished."""
    global _CLOSE_REGISTERED
    if _CLOSE_REGISTERED:
        return
    import atexit

    import torch.distributed as dist

    def close() -> None:
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()

    atexit.register(close)
    _CLOSE_REGISTERED = True


def from_rank_zero(metrics: dict | None) -> dict | None:
    """Process 0's metrics on every process of a distributed run (the others trained but neither
    predicted nor wrote), so that what calls train_run decides alike on all of them."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return metrics
    box = [metrics]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def quiet_lightning() -> None:
    """Lightning's banners (GPU available: False, tips) and a deprecation warning from its own
    pytree code repeat for every unit of a run; keep the output to what the user asked for."""
    import logging

    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
