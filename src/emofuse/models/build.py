"""A model from its config: the registered class, its typed config validated, and the instance.

`model_config` is called as soon as a run's config is loaded (the CLI, `train_run`'s first step), so
that a wrong key under `model.params` fails before any data is read, naming the valid keys."""

from __future__ import annotations

from emofuse.config import ConfigError, ModelConfig, StrictConfig, validate
from emofuse.models.base import EmotionModel
from emofuse.registry import MODELS


def model_class(name: str) -> type[EmotionModel]:
    """The registered model class (UnknownNameError lists the valid names)."""
    return MODELS.get(name)


def model_config(model: ModelConfig) -> StrictConfig:
    """`model.params` validated by the model's own Config."""
    cls = model_class(model.name)
    try:
        return validate(cls.Config, model.params)
    except ConfigError as e:
        raise ConfigError(f"model.params of {model.name!r}: {e}") from None


def build_model(name: str, params: dict, in_dims: dict[str, int], n_classes: int) -> EmotionModel:
    cls = model_class(name)
    return cls(in_dims, n_classes, validate(cls.Config, params))
