"""Data flows one way: corpora -> features -> models -> training -> evaluation -> bench/CLI/serve.
A lower layer never imports a higher one, not even inside a function (that is how import circles hide)."""

import ast
from pathlib import Path

import emofuse

ROOT = Path(emofuse.__file__).parent
# a package (or module) -> the packages it must never import
FORBIDDEN = {
    "media": {"corpora", "features", "data", "models", "training", "evaluation", "bench", "inference", "pipeline", "cli"},
    "corpora": {"features", "data", "models", "training", "evaluation", "bench", "inference", "pipeline", "cli"},
    "features": {"data", "models", "training", "evaluation", "bench", "inference", "pipeline", "cli"},
    "data": {"models", "training", "evaluation", "bench", "inference", "pipeline", "cli"},
    "models": {"training", "bench", "inference", "pipeline", "cli"},
    "training": {"bench", "inference", "pipeline", "cli"},
    "evaluation": {"bench", "inference", "pipeline", "cli"},
}


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("emofuse."):
            names.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            names |= {a.name.split(".")[1] for a in node.names if a.name.startswith("emofuse.")}
    return names


def test_layers_import_only_downwards():
    bad = []
    for layer, forbidden in FORBIDDEN.items():
        for path in sorted((ROOT / layer).rglob("*.py")):
            if hits := sorted(_imports(path) & forbidden):
                bad.append(f"{path.relative_to(ROOT)} imports {', '.join(hits)}")
    assert not bad, "\n".join(bad)


def test_the_layers_exist():  # a renamed package would make the rule above vacuous
    assert all((ROOT / layer).is_dir() for layer in FORBIDDEN) and (ROOT / "bench").is_dir()
