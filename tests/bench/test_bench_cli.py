"""`emofuse bench` refuses what it cannot run, naming the valid choices (no data needed)."""

from __future__ import annotations

from typer.testing import CliRunner

from emofuse.cli import app

runner = CliRunner()


def _out(r) -> str:
    return " ".join(r.output.split())  # rich wraps long lines


def test_unknown_benchmark_lists_the_valid_ones(tmp_path):
    r = runner.invoke(app, ["bench", "iemocap-video", "--data", str(tmp_path), "--out", str(tmp_path / "o")])
    assert r.exit_code == 1 and "ckplus, fer2013, goemotions, meld-text, paired, ravdess, semi, speech-xcorpus" in _out(r)


def test_bad_options_are_named(tmp_path):
    r = runner.invoke(app, ["bench", "meld-text", "--data", str(tmp_path), "--out", str(tmp_path / "o"), "-o", "context"])
    assert r.exit_code == 1 and "--option 'context' is not key=value" in _out(r)
    r = runner.invoke(app, ["bench", "meld-text", "--data", str(tmp_path), "--out", str(tmp_path / "o"), "-o", "contxt=3"])
    assert r.exit_code == 1 and "contxt" in _out(r)
    r = runner.invoke(app, ["bench", "meld-text", "--data", str(tmp_path), "--out", str(tmp_path / "o")])
    assert r.exit_code == 1 and "no MELD annotation file" in _out(r)


def test_the_split_seed_is_the_first_training_seed_unless_given(tmp_path, monkeypatch):
    import emofuse.bench as bench

    seen = []
    monkeypatch.setattr(bench, "run_bench", lambda name, opts, **kw: seen.append((opts.seeds, opts.seed)) or {})
    for extra in ([], ["--split-seed", "0"]):
        r = runner.invoke(app, ["bench", "fer2013", "--data", str(tmp_path), "--out", str(tmp_path / "o"),
                                "--seed", "2", "--seed", "3", *extra])
        assert r.exit_code == 0, r.output
    assert seen == [([2, 3], 2), ([2, 3], 0)]


def test_a_face_shift_without_face_networks_is_refused(tmp_path):
    r = runner.invoke(app, ["bench", "fer2013", "--data", str(tmp_path), "--out", str(tmp_path / "o"), "-o", "face_tta_shift=1"])
    assert r.exit_code == 1 and "face_tta_shift is for the networks of face_run" in _out(r)
