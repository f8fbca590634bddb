"""finetune_text's input: past [SEP] utterance [SEP] future within max_length, the utterance never
cut, context truncated at its far ends, batches padded to their longest row, texts tokenised once."""

from __future__ import annotations

import pytest
import torch

from emofuse.data.raw import collate_raw
from emofuse.models.finetune_text import special_tokens
from emofuse.models.build import build_model
from tests.features.tiny_hf import build

C = 7


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    return build("bert", tmp_path_factory.mktemp("bert"))


def _model(bert, max_length: int):
    return build_model("finetune_text", {"encoder": f"hf:{bert}", "max_length": max_length}, {"text": 0}, C)


def _tokens(model, enc, row: int = 0) -> list[str]:
    ids = enc["input_ids"][row][enc["attention_mask"][row].bool()].tolist()
    return model.tokenizer.convert_ids_to_tokens(ids)


def test_past_utterance_future_order_without_truncation(bert):
    model = _model(bert, 64)
    enc = model.inputs(["Ross: happy"], [["Joey: door"]], [["Rachel: table"]])
    assert _tokens(model, enc) == ["[CLS]", "joey", ":", "door", "[SEP]", "ross", ":", "happy", "[SEP]",
                                   "rachel", ":", "table", "[SEP]"]


def test_context_is_cut_at_its_far_ends_and_the_utterance_never(bert):
    model = _model(bert, 16)
    past = ["Joey: " + "brown " * 20 + "oldest", "Joey: near past"]
    future = ["Rachel: near future", "Rachel: " + "table " * 20 + "farthest"]
    toks = _tokens(model, model.inputs(["Ross: I am so happy"], [past], [future]))
    assert len(toks) == 16 and toks[0] == "[CLS]" and toks[-1] == "[SEP]"
    first, second = toks.index("[SEP]"), toks.index("[SEP]", toks.index("[SEP]") + 1)
    assert toks[first + 1:second] == ["ross", ":", "i", "am", "so", "happy"]  # whole
    assert toks[first - 2:first] == ["near", "past"] and "oldest" not in toks  # the newest past is kept
    assert toks[second + 1:second + 4] == ["rachel", ":", "near"] and "farthest" not in toks
    # a short future leaves its share of the room to the past
    toks = _tokens(model, model.inputs(["Ross: I am so happy"], [past], [["ok"]]))
    assert len(toks) == 16 and toks[-3:] == ["[SEP]", "ok", "[SEP]"]
    assert toks[:7] == ["[CLS]", "oldest", "joey", ":", "near", "past", "[SEP]"]  # 5 of the 6 free places


def test_plain_text_matches_the_tokenizer_and_batches_pad_to_their_longest(bert):
    model = _model(bert, 32)
    texts = ["what a joyful day", "hi"]
    enc = model.inputs(texts)
    ref = model.tokenizer(texts, padding=True, return_tensors="pt")
    assert torch.equal(enc["input_ids"], ref["input_ids"]) and torch.equal(enc["attention_mask"], ref["attention_mask"])
    assert enc["input_ids"].shape[1] == len(model.tokenizer("what a joyful day")["input_ids"]) < 32
    assert special_tokens(model.tokenizer) == ([model.tokenizer.cls_token_id], [model.tokenizer.sep_token_id])
    # an utterance longer than max_length alone keeps its beginning
    long = _tokens(model, model.inputs(["happy " * 50]))
    assert len(long) == 32 and long[-1] == "[SEP]"


def test_texts_are_tokenised_once(bert, monkeypatch):
    model = _model(bert, 32)
    calls = []
    tok = model.tokenizer
    real = type(tok).__call__
    monkeypatch.setattr(type(tok), "__call__", lambda self, *a, **k: calls.append(a[0]) or real(self, *a, **k))
    batch = {"text": ["Ross: hi", "Joey: hey"], "text_context": [[], ["Ross: hi"]], "text_after": [["Joey: hey"], []]}
    first = model.inputs(batch["text"], batch["text_context"], batch["text_after"])
    n = len(calls)
    again = model.inputs(batch["text"], batch["text_context"], batch["text_after"])
    assert n == 2 and len(calls) == n  # two distinct turns, each tokenised once, never again
    assert torch.equal(first["input_ids"], again["input_ids"])


def test_model_reads_the_future_from_the_batch(bert):
    torch.manual_seed(0)
    model = _model(bert, 32).eval()
    items = [{"id": "a", "label": 0, "target": torch.zeros(C).numpy(), "text": "Ross: hi", "text_present": True,
              "text_context": [], "text_after": ["Joey: the table is brown"]}]
    with_future = model(collate_raw(items))["logits"]
    items[0]["text_after"] = []
    without = model(collate_raw(items))["logits"]
    assert with_future.shape == (1, C) and not torch.allclose(with_future, without)


def test_utterance_pooling_ignores_the_context_tokens_in_the_average(bert):
    torch.manual_seed(0)
    model = build_model("finetune_text", {"encoder": f"hf:{bert}", "max_length": 32, "pooling": "utterance"},
                        {"text": 0}, C).eval()
    enc = model.inputs(["Ross: happy"], [["Joey: door"]], [["Rachel: table"]])
    toks = _tokens(model, enc)
    span = enc["utterance_mask"][0].bool().tolist()
    assert [t for t, s in zip(toks, span) if s] == ["ross", ":", "happy"]
    batch = {"text": ["Ross: happy"], "text_context": [["Joey: door"]], "text_after": [["Rachel: table"]]}
    with torch.no_grad():
        pooled = model.encode(batch)[0]
        states = model.backbone(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state[0]
    torch.testing.assert_close(pooled, states[torch.tensor(span[: states.shape[0]])].mean(0))
    assert not torch.allclose(pooled, states.mean(0))
