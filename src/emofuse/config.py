"""Typed configuration. Every config is a pydantic model that refuses unknown keys and names the
valid ones; YAML files load into them and `--set a.b=value` overrides apply on top."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

C = TypeVar("C", bound="StrictConfig")


class ConfigError(ValueError):
    """A config that does not validate; the message says which key and what is valid."""


class StrictConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


def _valid_keys(cls: type[BaseModel], loc: tuple) -> list[str]:
    """Walk `loc` through nested configs to list the valid keys where an error happened."""
    current: Any = cls
    for part in loc[:-1]:
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            break
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            current = ann
        else:
            break
    return sorted(getattr(current, "model_fields", {}))


def validate(cls: type[C], data: dict) -> C:
    """Build `cls` from a dict, turning pydantic's errors into one readable ConfigError."""
    try:
        return cls.model_validate(data)
    except ValidationError as e:
        lines = []
        for err in e.errors():
            loc = tuple(err["loc"])
            where = ".".join(str(p) for p in loc) or "<root>"
            if err["type"] == "extra_forbidden":
                lines.append(
                    f"unknown key {where!r}; valid keys here: {', '.join(_valid_keys(cls, loc))}"
                )
            else:
                lines.append(f"{where}: {err['msg']}")
        raise ConfigError(f"invalid {cls.__name__}:\n  " + "\n  ".join(lines)) from None


def parse_override(text: str) -> tuple[list[str], Any]:
    """`train.lr=3e-4` -> (["train", "lr"], 0.0003); the value is parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not of the form key.path=value")
    key, value = text.split("=", 1)
    return key.strip().split("."), yaml.safe_load(value)


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    data = dict(data)
    for text in overrides:
        path, value = parse_override(text)
        node = data
        for part in path[:-1]:
            nxt = node.get(part)
            if not isinstance(nxt, dict):
                nxt = {}
            node[part] = dict(nxt)
            node = node[part]
        node[path[-1]] = value
    return data


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    return data


def load_config(cls: type[C], path: str | Path | None = None, overrides: list[str] | None = None) -> C:
    data = load_yaml(path) if path else {}
    return validate(cls, apply_overrides(data, overrides or []))


def load_base(base: str | Path | dict) -> dict:
    """A run config given as a YAML path or inline (a sweep's or an ablation's `base`), as a dict."""
    return dict(base) if isinstance(base, dict) else load_yaml(base)


def dump_config(cfg: BaseModel, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))


# ---------------------------------------------------------------- the schema of a training run
from typing import Literal  # noqa: E402

from pydantic import Field, field_validator, model_validator  # noqa: E402


class RawInputConfig(StrictConfig):
    """How models that read raw inputs (finetune_text, finetune_audio, clip_zeroshot) get them."""

    # text: this many preceding utterances of the same dialogue go with the utterance, each (and the
    # utterance itself) prefixed by its speaker's name, oldest first; 0 = the utterance alone
    context: int = 0
    # text: this many following utterances too, nearest first (EmoBERTa reads past and future turns)
    context_after: int = 0
    # text: training batches of similar lengths (shuffled in groups of up to 50 batches, as
    # transformers' group_by_length does): MELD's utterances vary 1-60 tokens, so random batches are
    # mostly padding, and grouping halves the fine-tuning time
    group_by_length: bool = True
    max_audio_s: float = 15.0  # audio: 16 kHz waveforms cut to this length (MELD's longest run ~40 s)
    every_n: int = 10  # video: every Nth frame is scored
    face_size: int = 224  # video: side of the face crops (what CLIP-style image models take)


class DataConfig(StrictConfig):
    manifest: str  # path to a manifest CSV written by `emofuse prepare`
    cache: str = ""  # feature cache folder written by `emofuse extract` (unused by raw-input models)
    # modality -> encoder name, e.g. {"audio": "egemaps", "text": "minilm"}, or a list of candidate
    # encoders for Top-N fusion, e.g. {"audio": ["egemaps", "mfcc"]}
    features: dict[str, str | list[str]]
    sequence: bool | dict[str, bool] = False  # frame/token sequences instead of utterance vectors
    batch_size: int = 32
    label_smoothing: float = 0.0  # smooths one-hot targets for the MSE term (never the CE term)
    # "train": every input is standardised with training-split statistics. "per_speaker": before
    # that, each speaker's rows are standardised with that speaker's own per-feature statistics
    # (speech's usual speaker normalisation: it removes voice and recording differences). It uses
    # no labels, only the speaker's own inputs, so test speakers are normalised with their own
    # statistics too; rows without a speaker, or of speakers with fewer than 10 rows, use the
    # statistics pooled over all rows. At inference, standardise a new speaker's inputs the same way.
    # A mapping sets it per input key, e.g. {"audio": "per_speaker"} (unlisted keys: "train").
    # "none": left as extracted (inputs that are probabilities already, read as such by the model).
    standardise: (Literal["train", "per_speaker", "none"]
                  | dict[str, Literal["train", "per_speaker", "none"]]) = "train"
    # Dialogue context: input key -> k. Adds the input `<key>_context` (B, k, D + 1): the key's
    # vectors of the k utterances before each one in its dialogue (manifest order), newest first,
    # each followed by +1 when the same speaker said it and -1 otherwise; masked where the
    # dialogue has fewer. Uses inputs only, never labels. E.g. {"text": 3} for MELD.
    context: dict[str, int] = Field(default_factory=dict)
    raw: RawInputConfig = Field(default_factory=RawInputConfig)  # raw-input models only


class ModelConfig(StrictConfig):
    name: str  # a registered model: see `emofuse models`
    params: dict[str, Any] = Field(default_factory=dict)  # validated by the model's own Config


class PseudoLabelConfig(StrictConfig):
    """train.pseudo_label: a teacher trained on the labelled rows labels the unlabelled ones; those it
    is confident of join the training rows, each with `weight` in the loss, for a student; `rounds`
    times, the teacher of each round the best model so far by validation (training/pseudo.py)."""

    # more unlabelled rows: a manifest of the same corpus (its features in the same cache), its label
    # column empty (or its labels moved to hidden_label); the run's own "unlabeled" rows always take part
    unlabelled: str = ""
    threshold: float = Field(0.9, gt=0.0, le=1.0)  # keep a row whose top class probability reaches this
    # instead of threshold: per predicted class, keep this most confident fraction of its rows
    top_fraction: float | None = Field(None, gt=0.0, le=1.0)
    rounds: int = Field(1, ge=1)  # teacher -> pseudo-labels -> student, this many times
    weight: float = Field(0.5, gt=0.0)  # a pseudo-labelled row's weight in the loss (a labelled row's: 1)
    # true: a kept row keeps the teacher's class probabilities as its soft_label, and every round learns
    # by cross-entropy against each row's distribution (train.ce_target: distribution; a labelled row's is
    # one-hot): the student distils the teacher (its seeds' mean) instead of copying its top class
    soft: bool = False
    # the teacher's probabilities before choosing: "labelled" scales them so that their mean over the
    # unlabelled rows matches the labelled rows' class shares (ReMixMatch's distribution alignment: a
    # teacher that under-predicts the rare classes names them more); "em" instead estimates the unlabelled
    # rows' own class shares by EM (Saerens et al. 2002: the labelled prior replaced by the estimated one,
    # for unlabelled rows from another distribution); "none" keeps them as the teacher gave them
    align: Literal["none", "labelled", "em"] = "none"
    # the classes an unlabelled row may be given (empty: every class of the label set): the unlabelled
    # corpus's own published classes where it lacks some of the label set's (nEMO has no disgust); the
    # teacher's probabilities of the other classes are set to 0 before aligning and choosing
    classes: list[str] = []


class TrainConfig(StrictConfig):
    max_epochs: int = 100
    # AdamW as the MER2025 system; Adam as MER-HAN's paper (with weight_decay as L2 in the gradient)
    optimizer: Literal["adamw", "adam"] = "adamw"
    lr: float = 1e-3
    weight_decay: float = 1e-2
    # loss = CE + mse_weight * MSE(softmax(logits), target distribution), as in the MER2025 system
    mse_weight: float = 1.0
    # Multi-label classes (a sample may have several, as GoEmotions' 28 labels): the target is the
    # multi-hot vector of the manifest's soft_label (its non-zero entries), the loss binary
    # cross-entropy per class, and the decision threshold on the sigmoid outputs is fitted on the
    # validation split (mean F1 over classes). Needs models whose logits are per-class scores
    # (unimodal, early, attention), not late fusion's averaged probabilities.
    multi_label: bool = False
    monitor: Literal["val_accuracy", "val_weighted_f1", "val_uar", "val_macro_f1", "val_loss"] = "val_accuracy"
    patience: int = 15  # validation checks without improvement before stopping
    # validate this many times per epoch (fine-tuning a transformer for 3 epochs: 2-4 checks give
    # early stopping and the best-weights snapshot a finer choice); patience counts checks
    val_checks_per_epoch: int = Field(1, ge=1)
    accumulate_grad_batches: int = 1  # effective batch = data.batch_size x this
    gradient_clip: float | None = None  # max gradient norm (1.0 is usual when fine-tuning a transformer)
    # CE class weights from the training split: balanced = n / (C * count_c); sqrt = its square root
    class_weights: Literal["none", "balanced", "sqrt"] = "none"
    # linear: decays to 0 at max_epochs; cosine: half a cosine from lr to 0 at max_epochs (after any warm-up)
    lr_schedule: Literal["constant", "linear", "cosine"] = "constant"
    # label smoothing of the cross-entropy term (0.1 is usual for image networks trained from scratch);
    # data.label_smoothing smooths the MSE term's targets instead
    ce_label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)
    # the cross-entropy term's target: "label", the row's class; "distribution", the row's target
    # distribution (its soft_label: annotator votes or a teacher's probabilities; one-hot where it has
    # none, which gives the same loss as "label" without class weights)
    ce_target: Literal["label", "distribution"] = "label"
    # Stochastic weight averaging (Izmailov et al. 2018): keep the mean of the weights at the end of each of the
    # last swa_epochs epochs (batch-norm statistics recomputed over the training rows) instead of the best
    # epoch's; 0: off. Usual with a constant lr, e.g. training a trained network further (finetune_face init).
    swa_epochs: int = Field(0, ge=0)
    warmup: float = 0.0  # fraction of the optimiser steps with a linear warm-up from 0
    seeds: list[int] = Field(default_factory=lambda: [0])
    # true: k-fold cross-validation over the manifest's folds instead of its fixed split (each fold is
    # test once). "speaker": selection by speaker-grouped folds over the training and validation
    # speakers (cv_folds of them; each validates on speakers it never trained on), which choose the
    # epoch budget (median of the folds' best epochs); then one refit on all those rows, scored on the
    # fixed test split. For small, speaker-grouped validation splits, where one split's pick is noise.
    cross_validation: bool | Literal["speaker"] = False
    cv_folds: int = Field(5, ge=2)
    # Epoch budgets read off one run (the grid's share_budgets): `budgets` keeps, at the end of each
    # epoch k listed, the best weights of the first k epochs (each unit's budgets/ep<k>.safetensors +
    # .json); a run with `replay_from` (that run's folder) trains nothing and takes the weights kept
    # at its own max_epochs. Exactly what a run of k epochs would keep when nothing depends on the
    # budget: constant learning rate without warm-up, one validation per epoch, no cross-validation.
    budgets: list[int] = Field(default_factory=list)
    replay_from: str = ""
    # a finished run's folder (one seed's, where it has several) or its model.safetensors: its kept weights
    # start this run's model before training (one more epoch budget for a run: the same model and inputs)
    init_from: str = ""
    # Semi-supervised training on the manifest's unlabeled rows (and more): see PseudoLabelConfig
    pseudo_label: PseudoLabelConfig | None = None
    # also predict the manifest's unlabeled rows with the kept weights (predictions_unlabeled.csv)
    predict_unlabeled: bool = False
    # In training, drop each input of each sample with this probability (its mask set to absent,
    # never all of a sample's inputs), so joint models cannot lean on one modality alone.
    modality_dropout: float = Field(0.0, ge=0.0, lt=1.0)
    accelerator: str = "auto"  # cpu when no GPU is present
    # Distributed training (docs/distributed.md). devices: processes per machine, one per GPU (on CPU,
    # processes sharing its cores; "auto": every GPU, or 1 on CPU); num_nodes: machines. Each process
    # takes data.batch_size rows of every step, so a step sees devices x num_nodes x batch_size rows
    # and an epoch has that many times fewer steps (same lr: scale it, or give more epochs, at will).
    # Validation is shared out and gathered, so early stopping and the kept best weights are decided
    # on the whole split, alike on every process; process 0 alone predicts val and test with the best
    # weights and writes the run.
    devices: int | list[int] | Literal["auto"] = 1
    num_nodes: int = Field(1, ge=1)
    # Lightning's strategy: "ddp" (a copy of the model per process: the usual choice, gloo on CPU and
    # NCCL on GPU), "fsdp" (the model sharded across GPUs: large LLM backbones), "deepspeed*", or any
    # name of Lightning's StrategyRegistry; "auto": one process, or ddp when devices or num_nodes is not 1.
    # The spawning ones (ddp_spawn, ddp_fork, ddp_notebook) are refused: they train in child processes
    # and hand back only the last weights, never the best-weights snapshot the run keeps.
    strategy: str = "auto"
    precision: str | None = None  # None: 32 on CPU, bf16-mixed on GPU
    deterministic: bool = True
    # Tracking (docs/tracking.md). loggers: where each fit logs its epoch metrics: tensorboard (<run>/tb),
    # csv (<run>/csv), mlflow, wandb; MLflow and W&B also get the resolved config, the test metrics and
    # the run folder's report and plots (pip install 'emofuse[track]'). logger: the older single switch,
    # kept so that existing configs read as before: none turns every logger off; its default defers to
    # loggers.
    logger: Literal["tensorboard", "none"] = "tensorboard"
    loggers: list[Literal["tensorboard", "csv", "mlflow", "wandb"]] = Field(default_factory=lambda: ["tensorboard"])
    # MLflow's tracking URI (http://host:5000, sqlite:///path/mlflow.db, databricks); empty:
    # MLFLOW_TRACKING_URI, else a local store in runs/mlruns of the working folder (mlflow.db, artifacts/)
    mlflow_uri: str = ""
    experiment: str = Field("emofuse", min_length=1)  # the MLflow experiment and the W&B project
    progress: bool = True

    @field_validator("strategy")
    @classmethod
    def _known_strategy(cls, v: str) -> str:
        if v == "auto":
            return v
        from lightning.pytorch.strategies import StrategyRegistry

        names = StrategyRegistry.available_strategies()
        if v not in names:
            raise ValueError(f"unknown strategy {v!r}; valid: auto, {', '.join(names)}")
        if v.startswith(("ddp_spawn", "ddp_fork", "ddp_notebook")):
            raise ValueError(f"strategy {v!r} trains in spawned processes and returns only the last weights, not "
                             "the best ones the run keeps: use ddp (it re-runs the command once per device)")
        return v

    @field_validator("loggers")
    @classmethod
    def _each_logger_once(cls, v: list[str]) -> list[str]:
        return list(dict.fromkeys(v))

    @model_validator(mode="after")
    def _one_logger_switch(self) -> "TrainConfig":
        if self.logger == "none" and self.loggers not in ([], ["tensorboard"]):
            raise ValueError(f"train.logger: none turns every logger off, but train.loggers lists "
                             f"{', '.join(self.loggers)}: drop train.logger (or set train.loggers: [])")
        return self


class RunConfig(StrictConfig):
    name: str
    data: DataConfig
    model: ModelConfig
    train: TrainConfig = Field(default_factory=TrainConfig)
    out: str = "runs"  # the run directory is <out>/<name>

    @model_validator(mode="after")
    def _multi_label_targets(self) -> "RunConfig":
        if self.train.multi_label and self.data.label_smoothing > 0:
            raise ValueError("train.multi_label reads the multi-hot targets; data.label_smoothing must be 0")
        return self


class GridConfig(StrictConfig):
    """The MER2025 system's results grid: rank each modality's candidate encoders with the unimodal
    baseline (on validation), then train the fusion model for every fusion set x Top-N x epoch budget."""

    name: str
    manifest: str
    cache: str
    candidates: dict[str, list[str]]  # modality -> candidate encoders to rank
    fusion_sets: list[str] = Field(default_factory=lambda: ["AVT", "AV", "AT", "VT"])
    top_n: list[int] = Field(default_factory=lambda: [1, 2])
    # How Top-N is taken; a list (e.g. [ranked, per_sample]) runs each. "ranked": the N best-ranked
    # encoders of each modality are fed and all of them kept. "per_sample": every ranked encoder is
    # fed (cut into frame segments where the model's `segments` > 0) and the model's cross-modal
    # scorer keeps the N it weighs highest, per sample (a model with a `top_n` parameter only).
    top_n_mode: list[Literal["ranked", "per_sample"]] = Field(default_factory=lambda: ["ranked"], min_length=1)
    epochs: list[int] = Field(default_factory=lambda: [2, 10, 100])
    # One run per cell for all its epoch budgets: the longest is trained, and each shorter budget k
    # takes the best weights of its first k epochs (train.budgets / train.replay_from): the same
    # weights separate runs would keep, at the cost of the longest alone. Falls back to separate runs
    # where something depends on the budget (a linear schedule, warm-up; see training.budgets.check_budgets).
    share_budgets: bool = True
    batch_size: int = 32
    # how inputs are standardised, for the ranking baselines and every grid run (as data.standardise)
    standardise: Literal["train", "per_speaker"] | dict[str, Literal["train", "per_speaker"]] = "train"
    model: ModelConfig = Field(default_factory=lambda: ModelConfig(name="llama_topn"))
    train: TrainConfig = Field(default_factory=TrainConfig)  # max_epochs is set by `epochs`
    ranking_train: TrainConfig = Field(default_factory=TrainConfig)  # the unimodal baselines' budget
    out: str = "runs/grid"

    @model_validator(mode="before")
    @classmethod
    def _one_mode_is_a_list(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("top_n_mode"), str):  # `top_n_mode: ranked`
            data = {**data, "top_n_mode": [data["top_n_mode"]]}
        return data
