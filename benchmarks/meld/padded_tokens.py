"""Padded tokens per training epoch (batch 32) on MELD train, length-grouped vs random batches,
for the project's finetune_text inputs; the work of an epoch is roughly proportional to them."""
import numpy as np, torch
from emofuse.corpora.base import Manifest
from emofuse.config import RawInputConfig
from emofuse.data.raw import RawDataset
from emofuse.models.finetune_text import FinetuneText, FinetuneTextConfig
from transformers.trainer_pt_utils import LengthGroupedSampler
man = Manifest.load("runs/meld/timing/meld.csv")
tr = Manifest(man.corpus, man.label_set, man.df[man.df.split == "train"].reset_index(drop=True), {})
for before, after, ml in [tuple(map(int, a.split(","))) for a in __import__("sys").argv[1:]] or ((0, 0, 128), (2, 0, 128), (3, 0, 192), (2, 1, 128)):
    m = FinetuneText({"text": 0}, 7, FinetuneTextConfig(max_length=ml))
    ds = RawDataset.from_manifest(tr, {"text": "raw"}, RawInputConfig(context=before, context_after=after))
    L = np.array([len(m._sequence(t, c, a)) for t, c, a in zip(ds.columns["text"], ds.columns["text_context"], ds.columns["text_after"])])
    order = list(LengthGroupedSampler(32, lengths=ds.lengths(), generator=torch.Generator().manual_seed(0)))
    grouped = sum(L[order[i:i + 32]].max() * len(order[i:i + 32]) for i in range(0, len(L), 32))
    perm = np.random.default_rng(0).permutation(len(L))
    rand = sum(L[perm[i:i + 32]].max() * len(perm[i:i + 32]) for i in range(0, len(L), 32))
    print(f"before={before} after={after} max_length={ml}: mean {L.mean():.1f} tokens, at max_length {(L >= ml).mean():.3%}, "
          f"padded per epoch grouped {grouped} random {rand} real {L.sum()}", flush=True)
