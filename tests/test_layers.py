"""Data flows one way: media -> corpora -> features -> data -> models -> training -> inference -> bench/CLI.
A lower layer never imports a higher one, not even inside a function (that is how import circles hide)."""

import ast
from pathlib import Path

import emofuse

ROOT = Path(emofuse.__file__).parent
# The floors, lowest first: a package imports only from the floors below it (and its own). The metrics
# library (scoring) sits below the models, which fit with it; evaluation (predictions, decisions, a
# run's reports and tables) below training, which writes them; inference, the pipeline, the benchmarks
# and the CLI above. config, labels, registry and versions are the ground floor, imported by all.
FLOORS = ["media", "corpora", "features", "data", "scoring", "models", "evaluation", "training",
          "inference", "pipeline", "bench", "cli"]
# a package (or module) -> the packages it must never import: every floor above it
FORBIDDEN = {layer: set(FLOORS[i + 1:]) for i, layer in enumerate(FLOORS[:-1])}
GROUND = ["config.py", "labels.py", "registry.py", "versions.py"]


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("emofuse."):
            names.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            names |= {a.name.split(".")[1] for a in node.names if a.name.startswith("emofuse.")}
    return names


def _files(layer: str) -> list[Path]:
    """A floor's source files: a package's, or one module's (pipeline.py, cli.py)."""
    return [ROOT / f"{layer}.py"] if (ROOT / f"{layer}.py").is_file() else sorted((ROOT / layer).rglob("*.py"))


def test_layers_import_only_downwards():
    bad = []
    for layer, forbidden in FORBIDDEN.items():
        for path in _files(layer):
            if hits := sorted(_imports(path) & forbidden):
                bad.append(f"{path.relative_to(ROOT)} imports {', '.join(hits)}")
    assert not bad, "\n".join(bad)


def test_the_ground_floor_imports_nothing_of_ours():
    bad = [f"{name} imports {', '.join(sorted(hits))}" for name in GROUND
           if (hits := _imports(ROOT / name) - {Path(g).stem for g in GROUND})]
    assert not bad, "\n".join(bad)


def test_the_layers_exist():  # a renamed package would make the rule above vacuous
    assert all(_files(layer) for layer in FLOORS) and all((ROOT / name).is_file() for name in GROUND)
    everything = {p for layer in FLOORS for p in _files(layer)} | {ROOT / name for name in GROUND}
    assert set(ROOT.rglob("*.py")) - everything == {ROOT / "__init__.py"}  # every file is on a floor
