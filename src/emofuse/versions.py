"""The versions of Python and the libraries a result was made with (versions.json beside a run)."""

from __future__ import annotations

import platform


def library_versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("emofuse", "torch", "lightning", "numpy", "scikit-learn", "transformers"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out
