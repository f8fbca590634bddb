"""One epoch slice of the project's fine-tuning path vs a plain PyTorch loop, same rows/model/batch/lr.
usage: python benchmarks/meld/time_epoch.py STEPS CONTEXT MAXLEN [parts]"""
import os, sys, time, json
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
from pathlib import Path
import numpy as np, torch, pandas as pd

STEPS, CONTEXT, MAXLEN = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
PARTS = sys.argv[4].split(",") if len(sys.argv) > 4 else ["plain", "project", "loop"]
B = 32
out = Path("runs/meld/timing"); out.mkdir(parents=True, exist_ok=True)
from emofuse.corpora.base import prepare, Manifest
mpath = out / "meld.csv"
man = Manifest.load(mpath) if mpath.exists() else prepare("meld", Path("../shared/data/meld"), mpath, on_error="skip", text_only=True)
df = man.df
rng = np.random.default_rng(0)
# a slice: STEPS*B training rows (whole dialogues kept in order), 256 dev rows, 64 test rows
keep = set(df.index[df.split == "train"][: STEPS * B]) | set(df.index[df.split == "val"][:256]) | set(df.index[df.split == "test"][:64])
small = Manifest(man.corpus, man.label_set, df.loc[sorted(keep)].reset_index(drop=True), dict(man.meta))
spath = out / f"slice{STEPS}.csv"; small.save(spath)
res = {"steps": STEPS, "context": CONTEXT, "max_length": MAXLEN, "threads": torch.get_num_threads()}

from emofuse.config import RawInputConfig
from emofuse.data.raw import RawDataset
ds = RawDataset.from_manifest(small, {"text": "raw"}, RawInputConfig(context=CONTEXT))
tr = ds.subset(np.flatnonzero(small.df.split == "train"))
params = {"encoder": "minilm", "max_length": MAXLEN, "pooling": "mean", "freeze_layers": 0}

def plain():
    """pre-tokenised once, dynamic padding per random batch, AdamW + linear schedule, no Lightning."""
    from emofuse.models.finetune_text import FinetuneText, FinetuneTextConfig
    torch.manual_seed(0)
    m = FinetuneText({"text": 0}, 7, FinetuneTextConfig(**params)).train()
    tok = m.tokenizer
    t0 = time.perf_counter()
    texts = [(" ".join(c) + f" {tok.sep_token} " + t) if c else t for t, c in zip(tr.columns["text"], tr.columns["text_context"])]
    tok.truncation_side = "left"
    enc = tok(texts, truncation=True, max_length=MAXLEN)
    res["plain_tokenise_all_s"] = time.perf_counter() - t0
    y = torch.tensor(tr.labels)
    opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=5e-5, weight_decay=0.01)
    order = torch.randperm(len(y)).tolist()
    t0 = time.perf_counter(); ntok = 0
    for s in range(STEPS):
        idx = order[s * B:(s + 1) * B]
        batch = tok.pad({"input_ids": [enc["input_ids"][i] for i in idx], "attention_mask": [enc["attention_mask"][i] for i in idx]}, return_tensors="pt")
        ntok += batch["input_ids"].numel()
        st = m.backbone(**batch).last_hidden_state
        mk = batch["attention_mask"].unsqueeze(-1).float()
        logits = m.head((st * mk).sum(1) / mk.sum(1))
        loss = torch.nn.functional.cross_entropy(logits, y[idx])
        opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0); opt.step()
    res["plain_train_s"] = time.perf_counter() - t0
    res["plain_padded_tokens"] = ntok

def loop_parts():
    """the project model's forward (tokenising inside) on length-grouped vs random batches, no Lightning."""
    from emofuse.models.finetune_text import FinetuneText, FinetuneTextConfig
    from emofuse.data.raw import collate_raw
    from transformers.trainer_pt_utils import LengthGroupedSampler
    torch.manual_seed(0)
    m = FinetuneText({"text": 0}, 7, FinetuneTextConfig(**params)).train()
    opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=5e-5, weight_decay=0.01)
    lengths = tr.lengths()
    for name, order in (("grouped", list(LengthGroupedSampler(B, lengths=lengths, generator=torch.Generator().manual_seed(0)))),
                        ("random", torch.randperm(len(tr)).tolist())):
        t_tok = t_all = 0.0; ntok = 0
        for s in range(min(STEPS, 40)):
            b = collate_raw([tr[i] for i in order[s * B:(s + 1) * B]])
            t0 = time.perf_counter(); enc = m.inputs(b["text"], b["text_context"]); t_tok += time.perf_counter() - t0
            ntok += enc["input_ids"].numel()
            t1 = time.perf_counter()
            loss = torch.nn.functional.cross_entropy(m(b)["logits"], b["label"])
            opt.zero_grad(); loss.backward(); opt.step()
            t_all += time.perf_counter() - t1
        res[f"loop40_{name}_s"] = t_all; res[f"loop40_{name}_tokenise_s"] = t_tok; res[f"loop40_{name}_padded_tokens"] = ntok

def project():
    from emofuse.config import RunConfig, DataConfig, ModelConfig, TrainConfig
    from emofuse.training.run import train_run
    cfg = RunConfig(name=f"proj{STEPS}_c{CONTEXT}", out=str(out / "runs"),
        data=DataConfig(manifest=str(spath), features={"text": "raw"}, batch_size=B, raw={"context": CONTEXT}),
        model=ModelConfig(name="finetune_text", params=params),
        train=TrainConfig(max_epochs=1, patience=2, lr=5e-5, lr_schedule="linear", warmup=0.1, gradient_clip=1.0,
                          mse_weight=0.0, class_weights="sqrt", progress=False, logger="none", seeds=[0]))
    t0 = time.perf_counter(); m = train_run(cfg)
    res["project_total_s"] = time.perf_counter() - t0
    res["project_fit_s"] = m["units"][0]["fit_time_s"]

for p in PARTS:
    {"plain": plain, "project": project, "loop": loop_parts}[p]()
    print(json.dumps(res), flush=True)
(out / f"timing_{STEPS}_c{CONTEXT}_{MAXLEN}_{'-'.join(PARTS)}.json").write_text(json.dumps(res, indent=2))
