"""Shared fixtures. Real-data tests read ../shared/data through EMOFUSE_DATA and are skipped,
with the reason printed (pytest -ra), when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

_REPO = Path(__file__).resolve().parents[1]


def _data_dir() -> Path | None:
    env = os.environ.get("EMOFUSE_DATA")
    if env:
        return Path(env)
    default = _REPO.parent / "shared" / "data"
    return default if default.is_dir() else None


@pytest.fixture(scope="session")
def data_root() -> Path:
    """Root of the real labelled data (EMOFUSE_DATA, default ../shared/data)."""
    d = _data_dir()
    if d is None or not d.is_dir():
        pytest.skip(f"real data absent: set EMOFUSE_DATA (looked at {d or _REPO.parent / 'shared' / 'data'})")
    return d


def need(data_root: Path, sub: str) -> Path:
    p = data_root / sub
    if not p.exists():
        pytest.skip(f"real data absent: {p} not found")
    return p


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """One full demo run per test session (corpus, manifest, cache, unimodal and fusion runs),
    shared by the pipeline and inference tests: (out folder, {model: test metrics})."""
    from emofuse.pipeline import run_demo

    out = tmp_path_factory.mktemp("demo")
    results = run_demo(out, n_per_class=60, seed=0, progress=False)
    return out, results
