"""Quick dev-only A/B of finetune_text pooling with 2 past + 1 future turns: 1 epoch on the first
3000 MELD training rows, dev = all 1109 dev rows. usage: python benchmarks/meld/ab_pooling.py POOLING..."""
import sys, json
from pathlib import Path
from emofuse.corpora.base import Manifest
from emofuse.config import RunConfig, DataConfig, ModelConfig, TrainConfig
from emofuse.training.run import train_run
man = Manifest.load("runs/meld/timing/meld.csv")
df = man.df
keep = list(df.index[df.split == "train"][:3000]) + list(df.index[df.split == "val"]) + list(df.index[df.split == "test"][:64])
path = Path("runs/meld/ab/slice.csv"); path.parent.mkdir(parents=True, exist_ok=True)
Manifest(man.corpus, man.label_set, df.loc[sorted(keep)].reset_index(drop=True), dict(man.meta)).save(path)
for pooling in sys.argv[1:]:
    cfg = RunConfig(name=f"ab-{pooling}", out="runs/meld/ab/runs",
        data=DataConfig(manifest=str(path), features={"text": "raw"}, batch_size=32, raw={"context": 2, "context_after": 1}),
        model=ModelConfig(name="finetune_text", params={"encoder": "minilm", "max_length": 128, "pooling": pooling}),
        train=TrainConfig(max_epochs=1, patience=2, lr=5e-5, weight_decay=0.01, lr_schedule="linear", warmup=0.1,
                          gradient_clip=1.0, mse_weight=0.0, class_weights="sqrt", progress=False, logger="none", seeds=[0]))
    m = train_run(cfg)
    print(json.dumps({"pooling": pooling, "dev_weighted_f1": round(100 * m["val"]["weighted_f1"], 1),
                      "dev_accuracy": round(100 * m["val"]["accuracy"], 1), "fit_s": round(m["units"][0]["fit_time_s"])}), flush=True)
