"""Whether a run already finished with exactly this config and these features (sweeps, grids and
benchmarks then reuse it instead of training it again)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from emofuse.config import RunConfig
from emofuse.corpora.base import Manifest


def finished_run(run: RunConfig) -> dict | None:
    """The metrics of a run already finished with exactly this config (its config.yaml and
    metrics.json in place), else None."""
    run_dir = Path(run.out) / run.name
    try:
        saved = yaml.safe_load((run_dir / "config.yaml").read_text())
        metrics = json.loads((run_dir / "metrics.json").read_text())
    except (OSError, ValueError, yaml.YAMLError):
        return None
    try:  # read by today's config: a field added since, at its default, is the run as it was
        same = RunConfig.model_validate(saved).model_dump(mode="json") == run.model_dump(mode="json")
    except ValueError:  # a field since removed or renamed
        return None
    if not same:
        return None
    return metrics if same_features(run, run_dir) else None


def same_features(run: RunConfig, run_dir: Path) -> bool:
    """Whether the features a finished run trained on (its encoders.json) are those its config would
    load now: for each encoder, the newest complete cache entry has the same fingerprint and video
    decoding (an encoder's defaults or a decoding changed since: the run is stale)."""
    from emofuse.features.cache import list_entries

    try:
        used = json.loads((run_dir / "encoders.json").read_text())
        corpus = Manifest.load(run.data.manifest).corpus
    except (OSError, ValueError):
        return False
    for v in used.values():
        complete = [e for e in list_entries(run.data.cache, corpus, v["encoder"]) if e.complete] if run.data.cache else []
        if complete and (complete[-1].fingerprint != v["fingerprint"]
                         or (complete[-1].meta.get("decoding") or {}) != v.get("decoding", {})):
            return False
    return True
