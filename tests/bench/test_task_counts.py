"""A bench task's report counts the rows it ran, split by split, whatever its manifest's meta records:
a task whose manifest was made in the bench (bench semi hides rows as `unlabeled`) records none."""

from __future__ import annotations

from emofuse.bench.driver import BenchOptions, ModelRun, Task, run_task
from emofuse.corpora.base import Manifest
from tests.training.test_grid_selection import corpus  # noqa: F401  (a toy 2-class corpus with its cache)


def test_split_counts_are_the_rows_the_task_ran(corpus, tmp_path):  # noqa: F811
    m = Manifest.load(corpus / "manifest.csv")
    df = m.df.copy()
    df.loc[df.index[:40], ["split", "label"]] = ["unlabeled", ""]  # as bench semi hides training rows
    path = tmp_path / "task.csv"
    Manifest(m.corpus, m.label_set, df, {"split_counts": {"train": 160}}).save(path)  # meta from before the hiding
    task = Task("toy", path, [], [ModelRun("early", "early", {"audio": "a1"}, {"hidden": 8})])
    opts = BenchOptions(data=corpus, out=tmp_path / "out", cache=corpus / "cache", max_epochs=1, bootstrap=20,
                        progress=False)
    out = run_task(task, opts)
    assert out["split_counts"] == {"train": 120, "unlabeled": 40, "val": 40, "test": 40}
