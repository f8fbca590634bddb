"""Whether two output folders of the same command hold the same results, byte for byte: every file
compared, except the figures that are wall-clock times (metrics.json's *time* keys, report.md's time
lines) and the pictures (matplotlib writes its version and a date into PNG metadata) and the
TensorBoard event files (named by host and time).

    python benchmarks/compare_runs_bytes.py runs/demo-before runs/demo-after
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

SKIP_SUFFIXES = {".png"}
TIMING = re.compile(r"time|seconds|_s$|wall|^created$|^updated$", re.I)
CLOCK = re.compile(r"\d+(\.\d+)? ?s\b")  # a line that states seconds (report.md's timings)


def _strip(obj):
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if not TIMING.search(k)}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


def _lines(text: str, root: Path) -> list[str]:
    """The text with the folder's own path (absolute or as given) made neutral and timing lines dropped."""
    for form in sorted({str(root.resolve()), str(root)}, key=len, reverse=True):
        text = text.replace(form, "<root>")
    return [ln for ln in text.splitlines() if not CLOCK.search(ln)]


def same(a: Path, b: Path, a_root: Path, b_root: Path) -> bool:
    if a.suffix == ".json":
        try:
            ja = json.loads("\n".join(_lines(a.read_text(), a_root)))
            jb = json.loads("\n".join(_lines(b.read_text(), b_root)))
            return _strip(ja) == _strip(jb)
        except ValueError:
            pass
    if a.suffix in (".md", ".yaml", ".csv", ".txt"):
        return _lines(a.read_text(), a_root) == _lines(b.read_text(), b_root)
    return a.read_bytes() == b.read_bytes()


if __name__ == "__main__":
    a_root, b_root = Path(sys.argv[1]), Path(sys.argv[2])
    files_a = {p.relative_to(a_root) for p in a_root.rglob("*") if p.is_file()}
    files_b = {p.relative_to(b_root) for p in b_root.rglob("*") if p.is_file()}
    rel = lambda s: {p for p in s if p.suffix not in SKIP_SUFFIXES and "tb" not in p.parts and ".lock" not in p.name}
    only = sorted(rel(files_a) ^ rel(files_b))
    differ = sorted(str(p) for p in rel(files_a) & rel(files_b) if not same(a_root / p, b_root / p, a_root, b_root))
    n = len(rel(files_a) & rel(files_b))
    print(f"{n} files compared ({sum(p.suffix == '.safetensors' for p in rel(files_a))} weight files); "
          f"only on one side: {[str(p) for p in only]}; differ: {differ}")
    sys.exit(1 if only or differ else 0)
