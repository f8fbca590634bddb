"""Registries find their members: every module of their package is imported on the first lookup, so
a new model, corpus or encoder is one new file; unknown names fail with the valid list."""

from __future__ import annotations

import importlib
import sys
import uuid

import pytest

from emofuse.registry import CORPORA, ENCODERS, MODELS, Registry, UnknownNameError


@pytest.fixture
def package(tmp_path, monkeypatch):
    """make(files): a package of `files` (module name -> source, PKG standing for the package's name)
    importable under a fresh name; its __init__ holds `REG = Registry("thing", package=<its name>)`."""
    names = []

    def make(files: dict[str, str]) -> str:
        name = f"emofuse_tmp_{uuid.uuid4().hex[:8]}"
        pkg = tmp_path / name
        pkg.mkdir()
        (pkg / "__init__.py").write_text(f"from emofuse.registry import Registry\nREG = Registry('thing', package={name!r})\n")
        for mod, src in files.items():
            (pkg / f"{mod}.py").write_text(src.replace("PKG", name))
        monkeypatch.syspath_prepend(str(tmp_path))
        names.append(name)
        return name

    yield make
    for m in [m for m in sys.modules if m.split(".")[0] in names]:
        del sys.modules[m]


def test_a_module_dropped_into_the_package_is_found(package):
    name = package({
        "alpha": "from PKG import REG\n\n@REG.register('alpha')\nclass Alpha: ...\n",
        "beta": "from PKG import REG\n\n@REG.register('beta')\ndef beta(): ...\n",
        "helpers": "X = 1  # registers nothing: imported all the same, harmlessly\n",
    })
    reg = importlib.import_module(name).REG
    assert "alpha" not in reg._entries  # nothing imported before the first lookup
    assert reg.names() == ["alpha", "beta"]
    assert reg.get("alpha").__name__ == "Alpha" and "beta" in reg and list(reg) == ["alpha", "beta"]
    assert f"{name}.helpers" in sys.modules
    with pytest.raises(UnknownNameError, match="unknown thing 'gamma'; valid thing names: alpha, beta"):
        reg.get("gamma")


def test_a_broken_module_fails_loudly_and_is_tried_again(package):
    name = package({"bad": "raise RuntimeError('half-written module')\n"})
    reg = importlib.import_module(name).REG
    for _ in range(2):  # not a silently partial registry on the second lookup
        with pytest.raises(RuntimeError, match="half-written"):
            reg.names()


def test_a_name_registered_twice_is_refused():
    reg = Registry("thing", package="emofuse")
    reg.register("x")(object)
    with pytest.raises(ValueError, match="thing 'x' is registered twice"):
        reg.register("x")(int)


@pytest.mark.parametrize("reg, some", [(CORPORA, {"meld", "ravdess", "ckplus", "csv"}),
                                       (ENCODERS, {"egemaps", "minilm", "whisper-base", "emofuse-face"}),
                                       (MODELS, {"unimodal", "early", "attention", "experts"})])
def test_the_project_registries_find_their_modules(reg, some):
    assert some <= set(reg.names())
    with pytest.raises(UnknownNameError, match=f"valid {reg.kind} names: "):
        reg.get("no-such-name")
