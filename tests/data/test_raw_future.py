"""EmoBERTa-style dialogue context: following turns (nearest first) beside the preceding ones, in
items, batches and the length used to group training batches."""

from __future__ import annotations

from emofuse.config import RawInputConfig
from emofuse.data.raw import RawDataset, collate_raw, dialogue_context, dialogue_turns
from tests.data.test_raw import ROWS, _manifest


def test_following_turns_nearest_first_and_limited():
    df = _manifest(ROWS).df
    texts, past, future = dialogue_turns(df, before=1, after=2)
    assert texts[0] == "Ross: Hi." and future[0] == ["Rachel: Hey!", "Monica: What?"]  # the empty turn is skipped
    assert past[0] == [] and past[4] == ["Rachel: Hey!"]
    assert future[4] == [] and future[1] == []  # the dialogue's last turn; a one-turn dialogue
    assert future[3] == ["Monica: What?"]  # a row without text still gets its neighbours
    assert past[5] == [] and future[5] == [] and texts[5] == "Alone."  # no dialogue, no speaker
    _, _, one = dialogue_turns(df, before=0, after=1)
    assert one[0] == ["Rachel: Hey!"]


def test_future_only_still_names_speakers_and_past_is_unchanged():
    df = _manifest(ROWS).df
    texts, past, future = dialogue_turns(df, before=0, after=1)
    assert texts[2] == "Rachel: Hey!" and past[2] == [] and future[2] == ["Monica: What?"]
    assert dialogue_context(df, 2) == dialogue_turns(df, 2, 0)[:2]
    bare, _, none = dialogue_turns(df, 0, 0)
    assert bare[0] == "Hi." and none[0] == []


def test_dataset_batches_and_lengths_carry_the_future():
    m = _manifest(ROWS)
    ds = RawDataset.from_manifest(m, {"text": "raw"}, RawInputConfig(context=1, context_after=1))
    batch = collate_raw([ds[0], ds[2]])
    assert batch["text_after"] == [["Rachel: Hey!"], ["Monica: What?"]]
    assert batch["text_context"] == [[], ["Ross: Hi."]]
    without = RawDataset.from_manifest(m, {"text": "raw"}, RawInputConfig(context=1))
    assert ds.lengths()[0] == without.lengths()[0] + len("Rachel: Hey!")
    assert ds.features["text"].fingerprint != without.features["text"].fingerprint
    assert collate_raw([without[0]])["text_after"] == [[]]
