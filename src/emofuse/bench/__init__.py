"""Real-data benchmarks (`emofuse bench NAME --data DIR --out DIR`): each prepares a corpus,
extracts features with the offline built-in encoders (or any registered encoder by flag), trains
the project's models through the one training loop, optionally fits a logistic-regression baseline
on the same features in the same run, and writes metrics.json (model -> accuracy, uar, weighted_f1,
macro_f1 with seeded bootstrap 95% intervals), report.md, per-class scores and confusion matrices.

One benchmark, one module of this package: a function that builds the tasks, registered with its
options beside it (`emofuse bench --help` lists them all, from the registry); `driver` runs them:

    class Options(BenchConfig):
        folds: int = Field(5, description="subject folds")

    @BENCHMARKS.register("ckplus", options=Options)
    def bench_ckplus(opts: BenchOptions, folds: int = 5) -> BenchSpec: ..."""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import ConfigDict, ValidationError

from emofuse.bench.driver import BenchOptions
from emofuse.config import ConfigError, StrictConfig
from emofuse.registry import Registry


class BenchConfig(StrictConfig):
    """A benchmark's own options (`-o key=value`): unknown keys refused, every field described.
    Values come from the command line read as YAML, so a number is also taken where text is
    expected (`-o test_actors=11`, `-o face_run=2024`)."""

    model_config = ConfigDict(coerce_numbers_to_str=True)  # merged into StrictConfig's


class NoOptions(BenchConfig):
    """A benchmark that takes no options."""


@dataclass(frozen=True)
class Benchmark:
    """A registered benchmark: its function, the options it takes, and whether --eval-data may be
    given more than once."""

    name: str
    build: Callable[..., Any]  # build(opts, **options) -> BenchSpec
    options: type[BenchConfig] = NoOptions
    many_eval_data: bool = False

    @property
    def summary(self) -> str:
        """The first sentence (or clause) of its module's docstring, without the leading `name:`."""
        doc = inspect.getmodule(self.build).__doc__ or ""
        text = " ".join(doc.strip().split("\n\n")[0].split())
        head, sep, rest = text.partition(": ")
        text = rest if sep and head == self.name else text
        for stop in (". ", ": "):
            text = text.split(stop)[0]
        return text.rstrip(".") + "."

    def check(self, values: dict[str, Any]) -> dict[str, Any]:
        """`values` checked against the options: every option's value (defaults filled in), or a
        ConfigError naming the valid options."""
        fields = self.options.model_fields
        unknown = sorted(set(values) - set(fields))
        if unknown:
            valid = f"valid options: {', '.join(fields)}" if fields else "it takes no options"
            raise ConfigError(f"bench {self.name}: unknown option{'s' if len(unknown) > 1 else ''} "
                              f"{', '.join(map(repr, unknown))}; {valid}")
        try:
            checked = self.options.model_validate(values)
        except ValidationError as e:
            lines = [f"{'.'.join(map(str, err['loc']))}={values.get(err['loc'][0])!r}: {err['msg']}" for err in e.errors()]
            raise ConfigError(f"bench {self.name}: bad option value: {'; '.join(lines)}") from None
        return {k: getattr(checked, k) for k in fields}

    def option_rows(self) -> list[tuple[str, str, str]]:
        """(name, "type = default", description) of each option, for `emofuse bench --help`."""
        return [(k, f"{_type_name(f.annotation)} = {f.default}", f.description or "")
                for k, f in self.options.model_fields.items()]


def _type_name(annotation: Any) -> str:
    name = annotation.__name__ if isinstance(annotation, type) else str(annotation)
    return name.replace("typing.", "").replace("pathlib.", "")


class BenchRegistry(Registry[Benchmark]):
    """Benchmarks by name; `register` takes the benchmark's options class too, and checks that the
    function's keyword arguments are those options with the same defaults (the function stays
    callable on its own, and the two cannot drift apart) and that every option is described."""

    def register(self, name: str, options: type[BenchConfig] = NoOptions,  # type: ignore[override]
                 many_eval_data: bool = False) -> Callable[[Callable], Callable]:
        def deco(fn: Callable) -> Callable:
            params = list(inspect.signature(fn).parameters.values())[1:]  # after opts
            got = {p.name: p.default for p in params}
            want = {k: f.get_default(call_default_factory=True) for k, f in options.model_fields.items()}
            if got != want:
                raise TypeError(f"bench {name}: {fn.__name__}'s keyword arguments {got} are not those of "
                                f"{options.__name__} {want}")
            if undescribed := [k for k, f in options.model_fields.items() if not f.description]:
                raise TypeError(f"bench {name}: options without a description (the --help text): {undescribed}")
            Registry.register(self, name)(Benchmark(name, fn, options, many_eval_data))
            return fn

        return deco


BENCHMARKS = BenchRegistry("benchmark", package="emofuse.bench")


def parse_options(texts: Iterable[str]) -> dict[str, Any]:
    """`-o key=value` strings -> {key: value}, each value read as YAML (`true`, `3`, `[11, 12]`);
    check them against a benchmark with `BENCHMARKS.get(name).check`."""
    import yaml

    out = {}
    for text in texts:
        if "=" not in text:
            raise ConfigError(f"--option {text!r} is not key=value")
        key, value = text.split("=", 1)
        out[key.strip()] = yaml.safe_load(value)
    return out


def get_benchmark(name: str) -> Callable:
    """The function of a registered benchmark."""
    return BENCHMARKS.get(name).build


def run_bench(name: str, opts: BenchOptions, **options) -> dict:
    """Run one benchmark; returns the metrics.json mapping. `options` are the benchmark's own
    (e.g. context=3 for meld-text, eval_sources for paired), checked against its options class
    before any work is done."""
    bench = BENCHMARKS.get(name)
    options = bench.check(options)
    if opts.extra_eval_data and not bench.many_eval_data:
        raise ValueError(f"--eval-data given {len(opts.eval_folders)} times; bench {name} takes one folder")
    from emofuse.bench.driver import run_task
    from emofuse.bench.report import write_bench
    from emofuse.training.placement import quiet_lightning

    quiet_lightning()
    opts.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    spec = bench.build(opts, **options)  # prepares the manifests; returns tasks and report text
    timings = {"prepare": time.perf_counter() - t0}
    outs = []
    for task in spec.tasks:
        t = time.perf_counter()
        outs.append(run_task(task, opts))
        timings[task.name] = time.perf_counter() - t
    if spec.after is not None:  # e.g. the paired benchmark's MER-style table
        spec.closing.extend(spec.after(spec.tasks, outs))
    timings["total"] = time.perf_counter() - t0
    return write_bench(name, spec.tasks, outs, opts, spec.intro, timings, spec.closing)


__all__ = ["BENCHMARKS", "BenchConfig", "BenchOptions", "Benchmark", "get_benchmark", "parse_options", "run_bench"]
