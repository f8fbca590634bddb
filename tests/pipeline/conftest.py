"""One full demo run per test session; the other pipeline tests reuse its manifest and cache."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    from emofuse.pipeline import run_demo

    out = tmp_path_factory.mktemp("demo")
    results = run_demo(out, n_per_class=60, seed=0, progress=False)
    return out, results
