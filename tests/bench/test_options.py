"""Benchmarks register themselves with typed options: `-o key=value` is checked against them (an
unknown key names the valid ones, a wrong type says so), and `emofuse bench --help` lists every
registered benchmark and its options from the registry (no data needed)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import Field
from typer.testing import CliRunner

from emofuse.bench import BENCHMARKS, BenchConfig, BenchOptions, BenchRegistry, parse_options, run_bench
from emofuse.bench.driver import BenchSpec
from emofuse.cli import app
from emofuse.config import ConfigError

NAMES = ["ckplus", "fer2013", "goemotions", "meld-text", "paired", "ravdess", "semi", "speech-xcorpus"]


def test_every_benchmark_module_registers_itself():
    assert BENCHMARKS.names() == NAMES  # speed.py (`emofuse speed`) and emofuse_base.py are not benchmarks
    assert [n for n in NAMES if BENCHMARKS.get(n).many_eval_data] == ["speech-xcorpus"]


def test_options_are_read_as_before():
    """The values of the command line are read as YAML, as they always were, then checked."""
    assert parse_options(["test_actors=11,12", "protocol=split", "actors_per_fold=3"]) == \
        {"test_actors": "11,12", "protocol": "split", "actors_per_fold": 3}
    ravdess = BENCHMARKS.get("ravdess")
    assert ravdess.check(parse_options(["test_actors=11"]))["test_actors"] == "11"  # a number where text is taken
    assert ravdess.check({"test_actors": [11, 12]})["test_actors"] == [11, 12]
    got = BENCHMARKS.get("meld-text").check(parse_options(["finetune=true", "finetune_context=2+1"]))
    assert got == {"context": 3, "finetune": True, "finetune_context": "2+1", "finetune_encoder": "minilm",
                   "finetune_seeds": None, "llm_words": False, "llm_epochs": 2}
    assert BENCHMARKS.get("paired").check({"eval_sources": {"meld": "/m"}})["eval_sources"] == {"meld": Path("/m")}
    with pytest.raises(ConfigError, match="is not key=value"):
        parse_options(["context"])


def test_an_unknown_option_names_the_valid_ones():
    with pytest.raises(ConfigError, match="bench meld-text: unknown option 'contxt'; valid options: context, "
                                          "finetune, finetune_context, finetune_encoder, finetune_seeds"):
        BENCHMARKS.get("meld-text").check({"contxt": 3})
    with pytest.raises(ConfigError, match="bench goemotions: unknown option 'x'; it takes no options"):
        BENCHMARKS.get("goemotions").check({"x": 1})
    with pytest.raises(ConfigError, match=r"bench fer2013: bad option value: face_epochs='many': .*valid integer"):
        BENCHMARKS.get("fer2013").check({"face_epochs": "many"})


def test_run_bench_checks_options_before_any_work(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match="unknown option 'folds'; valid options: n_folds"):
        run_bench("fer2013", BenchOptions(data=tmp_path, out=out), folds=3)
    assert not out.exists()


def test_the_cli_refuses_an_unknown_option_naming_the_valid_ones(tmp_path):
    r = CliRunner().invoke(app, ["bench", "ckplus", "--data", str(tmp_path), "--out", str(tmp_path / "o"),
                                 "-o", "fold=3"])
    out = " ".join(r.output.split())
    assert r.exit_code == 1 and "bench ckplus: unknown option 'fold'; valid options: folds" in out
    assert not (tmp_path / "o").exists()


def test_help_lists_every_benchmark_and_its_options():
    r = CliRunner().invoke(app, ["bench", "--help"], env={"COLUMNS": "200"}, terminal_width=200)
    assert r.exit_code == 0, r.output
    text = r.output
    for name in BENCHMARKS.names():
        assert f"{name}  " in text, name  # its line: the name, then its summary
        for option, _, _ in BENCHMARKS.get(name).option_rows():
            assert f"  {option}  " in text, (name, option)
    assert "ckplus  CK+ posed faces" in text and "folds  int = 5" in text


def test_options_and_the_function_cannot_drift_apart():
    reg = BenchRegistry("benchmark", package="emofuse.bench")

    class Options(BenchConfig):
        k: int = Field(2, description="a knob")

    def bench_x(opts: BenchOptions, k: int = 3) -> BenchSpec: ...

    with pytest.raises(TypeError, match="keyword arguments"):
        reg.register("x", options=Options)(bench_x)

    class Undescribed(BenchConfig):
        k: int = 3

    with pytest.raises(TypeError, match="without a description"):
        reg.register("x", options=Undescribed)(bench_x)
