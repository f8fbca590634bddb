"""Property-based tests of the table adapters (issue 13): random bytes, odd encodings, ragged rows
and broken cells in a user's table never crash `prepare`; it gives a manifest (bad rows as rejects
by name) or a one-line error of a known kind."""

from __future__ import annotations

import string

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emofuse.corpora.base import PrepareError, prepare

KNOWN = (PrepareError, ValueError, FileNotFoundError, KeyError, TypeError)
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
COLS = dict(id_col="id", label_col="label", text_col="text", speaker_col="speaker")


def _check(tmp_path, content: bytes, **opts) -> None:
    table = tmp_path / "t.csv"
    table.write_bytes(content)
    try:
        m = prepare("csv", table, tmp_path / "m.csv", on_error="skip", n_folds=3, **(COLS | opts))
    except KNOWN as e:
        assert "t.csv" in str(e) or "csv:" in str(e), f"{type(e).__name__} does not name the table: {e}"
        return
    assert set(m.df["split"]) <= {"train", "val", "test", "unlabeled"}
    assert m.meta["rows_kept"] + m.meta["rows_rejected"] == m.meta["rows_in"]


@SETTINGS
@given(st.binary(max_size=600))
def test_random_bytes(tmp_path, data):
    _check(tmp_path, data)


@SETTINGS
@given(st.binary(max_size=300))
def test_random_bytes_after_a_valid_header(tmp_path, data):
    _check(tmp_path, b"id,label,text,speaker\n" + data)


cell = st.text(alphabet=string.printable + "éâ€™\u00a0\u2019\u201c\ufffd\x00\x92", max_size=12)


@SETTINGS
@given(st.lists(st.lists(cell, min_size=0, max_size=6), min_size=1, max_size=25),
       st.sampled_from(["utf-8", "latin-1", "cp1252", "utf-16"]))
def test_ragged_rows_and_encodings(tmp_path, rows, encoding):
    lines = ["id,label,text,speaker"] + [",".join(r) for r in rows]
    _check(tmp_path, "\n".join(lines).encode(encoding, errors="replace"))


@SETTINGS
@given(st.lists(st.tuples(st.sampled_from(["happy", "sad", "neutral", "hapy", "", "HAPPY ", "joy"]),
                          cell, st.sampled_from(["s1", "s2", "s3", "s4", ""])), min_size=1, max_size=40))
def test_plausible_tables(tmp_path, rows):
    df = pd.DataFrame([{"id": f"r{i}", "label": lab, "text": text, "speaker": spk}
                       for i, (lab, text, spk) in enumerate(rows)])
    _check(tmp_path, df.to_csv(index=False).encode())


def test_the_checker_sees_crashes(tmp_path, monkeypatch):
    """The property can fail: an adapter raising an unexpected type is caught by it."""
    import emofuse.corpora.csv as csv_mod

    monkeypatch.setattr(csv_mod, "read_table", lambda *a, **k: (_ for _ in ()).throw(UnicodeDecodeError("utf-8", b"", 0, 1, "x")))
    with pytest.raises(AssertionError, match="does not name the table"):
        _check(tmp_path, b"id,label,text,speaker\nr1,happy,hi,s1\n")
