"""Fine-tuning and zero-shot models on tiny random checkpoints: shapes, gradients, layer freezing,
dialogue context in the input, the saved encoder as a feature encoder, and CLIP's frame weighting."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emofuse.data.raw import collate_raw
from emofuse.training.module import emotion_loss
from emofuse.models.build import build_model
from tests.features.tiny_hf import build
from tests.models.tiny_media import build_clip, build_speech

C = 7


def _text_items(n: int, context: bool) -> list[dict]:
    return [{"id": f"s{i}", "label": i % C, "target": np.eye(C, dtype=np.float32)[i % C],
             "text": f"Ross: I am so happy today {i}" if context else f"what a joyful day {i}",
             "text_context": ["Rachel: the table is brown", "Joey: dogs are sitting by the door"][: i % 3] if context else [],
             "text_present": True} for i in range(n)]


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    return build("bert", tmp_path_factory.mktemp("bert"))


@pytest.mark.parametrize("context", [False, True])
def test_finetune_text_shapes_and_gradients(bert, context):
    torch.manual_seed(0)
    model = build_model("finetune_text", {"encoder": f"hf:{bert}", "max_length": 24}, {"text": 0}, C)
    batch = collate_raw(_text_items(4, context))
    out = model(batch)
    assert out["logits"].shape == (4, C)
    emotion_loss(out["logits"], batch["label"], batch["target"], 0.0).backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_context_goes_first_and_is_cut_from_the_left(bert):
    model = build_model("finetune_text", {"encoder": f"hf:{bert}", "max_length": 12}, {"text": 0}, C)
    long_past = ["Rachel: " + "the table is brown " * 10]
    enc = model.inputs(["Ross: happy"], [long_past])
    toks = model.tokenizer.convert_ids_to_tokens(enc["input_ids"][0].tolist())
    assert len(toks) == 12 and toks[0] == "[CLS]" and toks[-1] == "[SEP]"
    assert "[SEP]" in toks[1:-1] and toks[-2] == "happy"  # the utterance survives, the oldest context went
    plain = model.inputs(["Ross: happy"], [[]])
    assert model.tokenizer.convert_ids_to_tokens(plain["input_ids"][0].tolist()).count("[SEP]") == 1


def test_freeze_layers(bert):
    model = build_model("finetune_text", {"encoder": f"hf:{bert}", "freeze_layers": 2}, {"text": 0}, C)
    grads = {n: p.requires_grad for n, p in model.backbone.named_parameters()}
    assert not any(v for n, v in grads.items() if n.startswith("embeddings."))
    assert not any(v for n, v in grads.items() if n.startswith(("encoder.layer.0.", "encoder.layer.1.")))
    assert all(v for n, v in grads.items() if n.startswith(("encoder.layer.2.", "encoder.layer.3.")))
    probe = build_model("finetune_text", {"encoder": f"hf:{bert}", "freeze_layers": -1}, {"text": 0}, C)
    assert [n for n, p in probe.named_parameters() if p.requires_grad] == ["head.1.weight", "head.1.bias"]
    with pytest.raises(ValueError, match="has 4 layers"):
        build_model("finetune_text", {"encoder": f"hf:{bert}", "freeze_layers": 5}, {"text": 0}, C)
    table = build_model("finetune_text", {"encoder": f"hf:{bert}", "freeze_input_embeddings": True}, {"text": 0}, C)
    frozen = [n for n, p in table.backbone.named_parameters() if not p.requires_grad and not n.startswith("pooler.")]
    assert frozen == ["embeddings.word_embeddings.weight"]  # BERT's pooler is unused, so frozen with or without
    assert table.frozen == table.backbone.get_input_embeddings().weight.numel()


def test_saved_encoder_is_a_feature_encoder(bert, tmp_path):
    from emofuse.features.encoders.hf import build_encoder

    model = build_model("finetune_text", {"encoder": f"hf:{bert}"}, {"text": 0}, C)
    with torch.no_grad():
        model.backbone.embeddings.word_embeddings.weight.add_(0.5)  # "fine-tuned": differs from the base
    run = tmp_path / "my-run"
    model.save_artifacts(run)
    enc = build_encoder(f"finetuned:{run}")
    assert enc.name == "ft-my-run" and enc.modality == "text" and enc.dim == 32
    v = enc.encode(["what a joyful day"])[0].vector
    model.eval()
    with torch.no_grad():
        ref = model.encode({"text": ["what a joyful day"], "text_context": [[]]})[0].numpy()
    np.testing.assert_allclose(v, ref, atol=1e-5)  # mean pooling, the same weights
    assert build_encoder(f"hf:{run}/encoder").fingerprint() == enc.fingerprint()
    with pytest.raises(FileNotFoundError, match="no fine-tuned encoder"):
        build_encoder(f"finetuned:{tmp_path / 'nothing'}")


def test_raw_model_rejects_other_modalities(bert):
    with pytest.raises(ValueError, match="text: raw"):
        build_model("finetune_text", {"encoder": f"hf:{bert}"}, {"audio": 0}, C)
    with pytest.raises(ValueError, match="not a Hugging Face model"):
        build_model("finetune_text", {"encoder": "egemaps"}, {"text": 0}, C)


@pytest.mark.parametrize("kind", ["wav2vec2", "hubert"])
def test_finetune_audio_shapes_gradients_and_padding(tmp_path, kind):
    folder = build_speech(kind, tmp_path / kind)
    torch.manual_seed(0)
    model = build_model("finetune_audio", {"encoder": f"hf:{folder}", "freeze_layers": 1}, {"audio": 0}, C)
    model.backbone.config.layerdrop = 0.0  # LayerDrop skips whole layers at random in training
    rng = np.random.default_rng(0)
    items = [{"id": f"s{i}", "label": i, "target": np.eye(C, dtype=np.float32)[i],
              "audio": rng.normal(size=n).astype(np.float32) * 0.1, "audio_present": n > 0}
             for i, n in enumerate([8000, 3000, 0])]
    batch = collate_raw(items)
    assert batch["audio"].shape == (3, 8000) and batch["audio_mask"].sum(1).tolist() == [8000, 3000, 0]
    out = model(batch)
    assert out["logits"].shape == (3, C) and torch.isfinite(out["logits"]).all()
    emotion_loss(out["logits"], batch["label"], batch["target"], 0.0).backward()
    assert not any(p.requires_grad for p in model.backbone.feature_extractor.parameters())  # frozen by default
    assert [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None] == []
    if kind == "hubert":  # with an attention mask, padding a clip does not change its prediction
        model.eval()
        with torch.no_grad():
            alone = model(collate_raw(items[1:2]))["logits"]
            padded = model(batch)["logits"][1:2]
        torch.testing.assert_close(alone, padded, atol=1e-4, rtol=1e-4)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return build_clip(tmp_path_factory.mktemp("clip"))


def _video_batch(frames: list[np.ndarray], faces: list[np.ndarray]) -> dict:
    items = [{"id": f"s{i}", "label": 0, "target": np.eye(6, dtype=np.float32)[0], "video": f,
              "video_face": face, "video_present": len(f) > 0} for i, (f, face) in enumerate(zip(frames, faces))]
    return collate_raw(items)


def test_clip_zeroshot_probabilities_and_frame_weights(clip):
    model = build_model("clip_zeroshot", {"model": f"hf:{clip}", "label_set": "mer6",
                                          "prompts": ["a photo of a {emotion} face", "a {emotion} person"]},
                        {"video": 0}, 6).eval()
    assert not any(p.requires_grad for p in model.parameters())  # nothing to train
    assert model.prompt_texts[1] == ["a photo of a angry face", "a angry person"]
    rng = np.random.default_rng(0)
    a, b = (rng.integers(0, 255, size=(1, 40, 40, 3), dtype=np.uint8) for _ in range(2))
    two = np.concatenate([a, b])
    batch = _video_batch([two, two, two, np.zeros((0, 40, 40, 3), np.uint8)],
                         [np.array([True, False]), np.array([False, False]), np.array([True, True]), np.zeros(0, bool)])
    probs = model(batch)["logits"].exp()  # (B, C)
    torch.testing.assert_close(probs.sum(1), torch.ones(4))
    pa, pb = (model.frame_probs(torch.from_numpy(x)) for x in (a, b))
    torch.testing.assert_close(probs[0], pa[0], atol=1e-5, rtol=1e-5)  # only the frame with a face
    torch.testing.assert_close(probs[1], (pa[0] + pb[0]) / 2, atol=1e-5, rtol=1e-5)  # no face: every frame
    torch.testing.assert_close(probs[2], probs[1])
    torch.testing.assert_close(probs[3], torch.full((6,), 1 / 6))  # no video: uniform
    uniform = build_model("clip_zeroshot", {"model": f"hf:{clip}", "label_set": "mer6", "frame_weights": "uniform"},
                          {"video": 0}, 6).eval()
    both = uniform.frame_probs(torch.from_numpy(two)).mean(0)
    torch.testing.assert_close(uniform(batch)["logits"].exp()[0], both, atol=1e-5, rtol=1e-5)


def test_clip_zeroshot_saves_only_its_prompt_embeddings(clip):
    model = build_model("clip_zeroshot", {"model": f"hf:{clip}", "classes": ["neutral", "joy"]}, {"video": 0}, 2)
    sd = model.state_dict()
    assert list(sd) == ["class_embeds"] and sd["class_embeds"].shape == (2, 16)
    model.load_state_dict(sd)  # CLIP's own weights are kept from its folder
    with pytest.raises(ValueError, match="2 classes to prompt for"):
        build_model("clip_zeroshot", {"model": f"hf:{clip}", "classes": ["neutral", "joy"]}, {"video": 0}, 3)
    with pytest.raises(ValueError, match="label_set"):
        build_model("clip_zeroshot", {"model": f"hf:{clip}"}, {"video": 0}, 2)


def test_text_batches_by_tokens_and_predictions_keep_the_rows_order(bert):
    """Rows grouped and evaluated by the model's token counts (context included), predictions put back
    in the dataset's order: the same probabilities as evaluating the rows in their own order."""
    from emofuse.config import RawInputConfig
    from emofuse.data.raw import RawDataset
    from emofuse.evaluation.predictions import eval_order, predict

    words = ["yes", "what a long and winding road this was", "ok then", "I never thought it would end like this at all"]
    n = len(words)
    cols = {"text": words, "text_context": [[], ["Joey: how are you doing"], [], []], "present_text": [True] * n}
    ds = RawDataset([f"r{i}" for i in range(n)], np.arange(n) % C, np.eye(C, dtype=np.float32)[np.arange(n) % C],
                    ["text"], cols, RawInputConfig(), [str(c) for c in range(C)])
    model = build_model("finetune_text", {"encoder": f"hf:{bert}", "max_length": 24}, {"text": 0}, C)
    tokens = model.input_lengths(ds)
    assert tokens == [len(model._sequence(t, c, [])[0]) for t, c in zip(words, cols["text_context"])]
    assert tokens != ds.lengths()  # characters are not tokens
    assert eval_order(model, ds) == sorted(range(n), key=tokens.__getitem__) != list(range(n))
    got = predict(model, ds, 2, torch.device("cpu"))
    assert got["ids"] == ds.ids
    model.eval()
    with torch.no_grad():
        one = [torch.softmax(model(collate_raw([ds[i]]))["logits"], -1)[0].numpy() for i in range(n)]
    np.testing.assert_allclose(got["probs"], np.stack(one), atol=1e-5)
    unsorted = RawDataset(ds.ids, ds.labels, ds.targets, ["text"], cols, RawInputConfig(group_by_length=False), ds.classes)
    assert eval_order(model, unsorted) is None  # grouping off: the rows' own order
