"""Encoders and the feature cache: `build_encoder` makes an encoder from a spec string,
`extract` fills the cache for a manifest, `load_features` reads it back aligned by id."""

from emofuse.features.cache import CacheEntry, FeatureTable, MissingFeaturesError, load_features
from emofuse.features.encoders.hf import build_encoder
from emofuse.features.extract import extract

__all__ = ["CacheEntry", "FeatureTable", "MissingFeaturesError", "build_encoder", "extract", "load_features"]
