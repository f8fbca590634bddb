"""finetune_face: the face network trained end to end through the one loop on tiny generated face
images (a trivially separable two-class set), its augmentation, and its run folder as a feature
encoder (finetuned:RUN), for predict and for export."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image

from emofuse.config import RunConfig, load_config
from emofuse.corpora.base import FACE_IMAGES, MANIFEST_COLUMNS, Manifest
from emofuse.data.raw import RawDataset, collate_raw
from emofuse.labels import LabelSet
from emofuse.models.finetune_face import augment
from emofuse.models.build import build_model
from emofuse.training.run import train_run

N = {"train": 48, "val": 16, "test": 16}


def _face(label: int, rng: np.random.Generator, size: int = 48) -> np.ndarray:
    """A grey 'face': class 0 bright on top, class 1 bright at the bottom, with noise."""
    img = rng.normal(90, 20, (size, size))
    half = slice(0, size // 2) if label == 0 else slice(size // 2, size)
    img[half] += 100
    return np.clip(img, 0, 255).astype(np.uint8)


def toy_faces(root: Path, n: dict[str, int] = N) -> Path:
    """A manifest of face images (decoding images_are_faces, as FER2013's), two classes."""
    rng = np.random.default_rng(0)
    labels = LabelSet("toy2", ("happy", "sad"))
    rows = []
    for split, k in n.items():
        for i in range(k):
            y = i % 2
            path = root / "img" / f"{split}{i:03d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(_face(y, rng)).save(path)
            rows.append({c: "" for c in MANIFEST_COLUMNS} | {"id": f"{split}{i:03d}", "split": split, "fold": -1,
                                                              "label": labels.classes[y], "video": str(path)})
    Manifest("toyfaces", labels, pd.DataFrame(rows, columns=MANIFEST_COLUMNS),
             {"synthetic": True, "decoding": dict(FACE_IMAGES)}).save(root / "manifest.csv")
    return root / "manifest.csv"


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> Path:
    return toy_faces(tmp_path_factory.mktemp("faces"))


def _config(manifest: Path, out: Path, **train) -> Path:
    cfg = {"name": "face", "data": {"manifest": str(manifest), "features": {"video": "raw"}, "batch_size": 16,
                                    "raw": {"face_size": 48}},
           "model": {"name": "finetune_face", "params": {"width": 8, "blocks": 3}},
           "train": {"max_epochs": 6, "patience": 6, "lr": 3e-3, "mse_weight": 0.0, "lr_schedule": "cosine",
                     "ce_label_smoothing": 0.1, "progress": False, "logger": "none", **train},
           "out": str(out)}
    path = out / "face.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def trained(faces, tmp_path_factory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("runs")
    m = train_run(load_config(RunConfig, _config(faces, out)))
    return m, out / "face"


def test_learns_a_separable_toy_set(trained):
    m, run = trained
    assert m["test"]["accuracy"] == 1.0, m["test"]
    assert (run / "encoder" / "config.json").is_file() and (run / "encoder" / "model.safetensors").is_file()
    assert json.loads((run / "encoder" / "config.json").read_text())["model_type"] == "emofuse-face-cnn"


def test_face_images_are_decoded_once_and_kept_in_memory(faces, monkeypatch):
    import emofuse.media.faces as mf

    cfg = load_config(RunConfig, _config(faces, faces.parent / "o"))
    data = RawDataset.from_manifest(Manifest.load(faces), cfg.data.features, cfg.data.raw)
    assert data.images_are_faces
    calls = []
    real = mf.crop_image_file
    monkeypatch.setattr(mf, "crop_image_file", lambda *a, **k: calls.append(a[0]) or real(*a, **k))
    train = data.subset(np.arange(10))
    first = [train[i]["video"] for i in range(10)]
    second = [train[i]["video"] for i in range(10)]  # the next epoch: from memory
    again = data.subset(np.arange(10))[3]["video"]  # another subset shares the memory
    assert len(calls) == 10
    assert all(a.shape == (1, 48, 48, 3) and a.dtype == np.uint8 for a in first)
    assert all(np.array_equal(a, b) for a, b in zip(first, second)) and np.array_equal(again, first[3])


def test_augmentation_keeps_shape_and_dtype_and_is_seeded():
    x = torch.randn(8, 1, 48, 48)
    a = augment(x, generator=torch.Generator().manual_seed(3))
    b = augment(x, generator=torch.Generator().manual_seed(3))
    c = augment(x, generator=torch.Generator().manual_seed(4))
    assert a.shape == x.shape and a.dtype == x.dtype
    assert torch.equal(a, b) and not torch.equal(a, c) and not torch.equal(a, x)
    half = augment(x.half(), generator=torch.Generator().manual_seed(3))
    assert half.dtype == torch.float16 and half.shape == x.shape
    # nothing but a flip: each face is itself or its mirror image
    f = augment(x, flip=True, zoom=0, shift=0, rotate=0, erase=0, generator=torch.Generator().manual_seed(0))
    same = [(torch.allclose(f[i], x[i], atol=1e-5), torch.allclose(f[i], x[i].flip(-1), atol=1e-5)) for i in range(8)]
    assert all(s or m for s, m in same) and any(m and not s for s, m in same) and any(s for s, _ in same)


def test_the_same_seed_gives_the_same_training_batches():
    model = build_model("finetune_face", {"width": 4, "blocks": 2}, {"video": 0}, 2).train()
    frames = torch.randint(0, 255, (4, 48, 48, 3), dtype=torch.uint8)
    outs = []
    for _ in range(2):
        torch.manual_seed(0)
        outs.append(model.frame_logits(frames))
    assert torch.equal(outs[0], outs[1])


def test_frames_are_pooled_and_absent_faces_give_no_evidence():
    model = build_model("finetune_face", {"width": 4, "blocks": 2}, {"video": 0}, 3).eval()
    items = [{"id": "a", "label": 0, "target": np.eye(3, dtype=np.float32)[0],
              "video": np.random.default_rng(0).integers(0, 255, (3, 64, 64, 3), dtype=np.uint8),
              "video_face": np.ones(3, bool), "video_present": True},
             {"id": "b", "label": 1, "target": np.eye(3, dtype=np.float32)[1],
              "video": np.zeros((0, 64, 64, 3), np.uint8), "video_face": np.zeros(0, bool), "video_present": False}]
    batch = collate_raw(items)
    with torch.no_grad():
        out = model(batch)["logits"]
        one = model.frame_logits(torch.from_numpy(items[0]["video"])).mean(0)
    assert out.shape == (2, 3)
    assert torch.allclose(out[0], one, atol=1e-5)  # 64x64 crops resized to the network's 48
    assert torch.equal(out[1], torch.zeros(3))  # no frame: uniform


def test_refuses_other_inputs():
    with pytest.raises(ValueError, match=r"finetune_face reads faces only"):
        build_model("finetune_face", {}, {"audio": 0}, 2)


def test_the_run_is_a_feature_encoder(trained, faces):
    from emofuse.features.encoders.hf import build_encoder
    from emofuse.inference.bundle import load_bundle

    _, run = trained
    enc = build_encoder(f"finetuned:{run}")
    assert enc.modality == "video" and enc.dim == 2 + 32  # class probabilities + width 8 * 2**2 channels
    crop = np.asarray(Image.open(faces.parent / "img" / "test000.png").convert("RGB"))[None]  # (1, 48, 48, 3)
    got = enc.encode([crop, np.concatenate([crop, crop[:, :, ::-1]])])
    assert got[0].vector.shape == (34,) and got[1].sequence.shape == (2, 34)
    model = load_bundle(run).model
    with torch.no_grad():
        probs = torch.softmax(model.frame_logits(torch.from_numpy(crop.copy())), -1)[0].numpy()
    # the encoder averages the probabilities of the face and its mirror image, the model their logits
    assert np.allclose(got[0].vector[:2], probs, atol=0.05) and got[0].vector[:2].sum() == pytest.approx(1, abs=1e-5)
    assert enc.fingerprint() == build_encoder(f"finetuned:{run}").fingerprint()


def test_predict_export_and_serve_read_the_faces_themselves(trained, faces, tmp_path):
    from typer.testing import CliRunner

    from emofuse.cli import app
    from emofuse.inference.bundle import export_bundle
    from emofuse.inference.predict import Clip, Predictor

    _, run = trained
    image = faces.parent / "img" / "test001.png"  # a 'sad' face (class 1)
    res = CliRunner().invoke(app, ["predict", "--model", str(run), "--image", str(image), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output[res.output.index("{"):])
    assert out["label"] == "sad" and set(out["probabilities"]) == {"happy", "sad"}
    exported = export_bundle(run, tmp_path / "bundle")
    p = Predictor.load(exported)
    p.warm_up()
    again = p.predict(Clip(image=image))
    assert again.label == "sad" and again.probabilities == pytest.approx(out["probabilities"], abs=1e-4)
    with pytest.raises(Exception, match="no media given"):
        p.predict(Clip())


def test_evaluate_scores_the_network_on_another_corpus(trained, tmp_path):
    """emofuse evaluate on a face run: the faces of another manifest, decoded as the run decoded its own."""
    from emofuse.inference.evaluate import EvaluateConfig, evaluate_run

    _, run = trained
    other = toy_faces(tmp_path / "other", {"train": 0, "val": 0, "test": 12})
    got = evaluate_run(EvaluateConfig(run=str(run), data=str(other), out=str(tmp_path / "ev")), progress=False)
    assert got["rows"]["scored"] == 12 and got["test"]["accuracy"] == 1.0
    assert got["encoders"]["video"]["encoder"] == "raw"


def test_test_time_shifts_move_the_face_by_whole_pixels():
    from emofuse.features.encoders.face_net import tta_views

    x = torch.arange(2 * 36, dtype=torch.float32).view(2, 1, 6, 6)
    assert len(tta_views(x, flip=False, shift=0)) == 1 and len(tta_views(x, flip=True, shift=0)) == 2
    views = tta_views(x, flip=True, shift=1)
    assert len(views) == 10 and all(v.shape == x.shape for v in views)
    assert torch.equal(views[0], x) and torch.equal(views[5], x.flip(-1))
    right, left, down, up = views[1:5]
    assert torch.equal(right[..., 1:], x[..., :-1]) and torch.equal(right[..., 0], x[..., 0])  # edge repeated
    assert torch.equal(left[..., :-1], x[..., 1:]) and torch.equal(down[..., 1:, :], x[..., :-1, :])
    assert torch.equal(up[..., :-1, :], x[..., 1:, :])
    assert torch.equal(views[6], right.flip(-1))
    # the model averages the logits of every view; shift 0 with flip is the face and its mirror image
    model = build_model("finetune_face", {"width": 4, "blocks": 2, "tta_shift": 1}, {"video": 0}, 3).eval()
    frames = torch.randint(0, 255, (2, 48, 48, 3), dtype=torch.uint8)
    from emofuse.features.encoders.face_net import to_grey

    with torch.no_grad():
        want = torch.stack([model.net(v) for v in tta_views(to_grey(frames, 48), shift=1)]).mean(0)
        assert torch.allclose(model.frame_logits(frames), want, atol=1e-6)
    with pytest.raises(Exception, match="tta_shift"):
        build_model("finetune_face", {"tta_shift": -1}, {"video": 0}, 3)


def test_the_encoder_takes_the_runs_shift_and_refuses_a_shift_past_half_the_face(trained):
    from emofuse.features.encoders.face_net import FaceNetEncoder
    from emofuse.features.encoders.hf import build_encoder

    _, run = trained
    plain, shifted = build_encoder(f"finetuned:{run}"), build_encoder(f"finetuned:{run}@tta_shift=2")
    assert plain.tta_shift == 0 and shifted.tta_shift == 2
    assert "tta_shift" not in plain.config() and plain.fingerprint() != shifted.fingerprint()
    crop = np.random.default_rng(1).integers(0, 255, (3, 48, 48, 3), dtype=np.uint8)
    a, b = plain.frames(crop), shifted.frames(crop)
    assert a.shape == b.shape and not np.allclose(a, b)
    with pytest.raises(ValueError, match="tta_shift must be 0 to 23"):
        FaceNetEncoder(run / "encoder", tta_shift=24)


def test_several_networks_make_one_encoder_their_probabilities_averaged(tmp_path):
    from emofuse.features.encoders.face_net import FaceNet, FaceNetEncoder, save_face_net, shipped_face_net

    folders = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        folders.append(save_face_net(FaceNet(3, width=4, blocks=2).eval(), tmp_path / f"net{seed}", size=48, width=4,
                                     blocks=2, tta_flip=True))
    crops = np.random.default_rng(0).integers(0, 255, (5, 60, 60, 3), dtype=np.uint8)
    a, b = (FaceNetEncoder(f).frames(crops) for f in folders)
    both = FaceNetEncoder(folders)
    ab = both.frames(crops)
    assert ab.shape == (5, 3 + 8 + 8) and both.dim == 19  # width 4, two stages: 8 activations
    np.testing.assert_allclose(ab[:, :3], (a[:, :3] + b[:, :3]) / 2, atol=1e-6)  # the mean of the probabilities
    np.testing.assert_allclose(ab[:, 3:11], a[:, 3:], atol=1e-6)  # then each network's activations
    np.testing.assert_allclose(ab[:, 11:], b[:, 3:], atol=1e-6)
    # its own cache identity, neither network's; one network keeps the identity it always had
    prints = {FaceNetEncoder(folders[0]).fingerprint(), FaceNetEncoder(folders[1]).fingerprint(), both.fingerprint(),
              FaceNetEncoder(folders[::-1]).fingerprint()}
    assert len(prints) == 4
    # the registered name takes several folders joined by '+'
    named = shipped_face_net(folder="+".join(str(f) for f in folders))
    assert named.fingerprint() == both.fingerprint() and named.name == "emofuse-face"
    # networks that answer another question are refused
    save_face_net(FaceNet(2, width=4, blocks=2), tmp_path / "two", size=48, width=4, blocks=2, tta_flip=True)
    with pytest.raises(ValueError, match="classes or input size"):
        FaceNetEncoder([folders[0], tmp_path / "two"])
    with pytest.raises(FileNotFoundError, match="no face network"):
        shipped_face_net(folder=f"{folders[0]}+{tmp_path / 'missing'}")


def test_bench_fer2013_scores_a_saved_network_folder_as_it_scores_a_run(trained, faces, tmp_path, monkeypatch):
    """bench fer2013's face_run also takes saved network folders (as the package ships them): predicted on
    the task's rows with the face encoder, faces decoded as the manifest says."""
    from safetensors.torch import load_file

    from emofuse.bench.fer2013 import face_run_probs, is_face_network, runs_probs
    from emofuse.features.encoders.face_net import FaceNet, FaceNetEncoder, save_face_net

    _, run = trained
    cfg = json.loads((run / "encoder" / "config.json").read_text())
    net = FaceNet(2, cfg["width"], cfg["blocks"]).eval()
    net.load_state_dict(load_file(str(run / "encoder" / "model.safetensors")))
    folder = save_face_net(net, tmp_path / "net", size=cfg["size"], width=cfg["width"], blocks=cfg["blocks"],
                           tta_flip=cfg["tta_flip"], classes=["happy", "sad"])
    assert is_face_network(folder) and not is_face_network(run)
    ids, p = face_run_probs(folder, faces, "test")
    run_ids, q = face_run_probs(run, faces, "test")
    assert ids == run_ids and p.shape == (16, 2)
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-5)
    # the run averages logits over the mirror views, the encoder probabilities: the same answers
    assert (p.argmax(1) == q.argmax(1)).all()
    m = Manifest.load(faces)
    test = m.df[m.df["split"] == "test"]
    images = np.stack([np.asarray(Image.open(v).convert("RGB")) for v in test["video"]])
    np.testing.assert_allclose(p, FaceNetEncoder(folder).frames(images)[:, :2], atol=1e-5)
    # a run and a network averaged; shifted views change the probabilities
    both_ids, both = runs_probs([run, folder], faces, "test")
    np.testing.assert_allclose(both, (p + q) / 2, atol=1e-6)
    assert not np.allclose(face_run_probs(folder, faces, "test", tta_shift=2)[1], p, atol=1e-4)
    # the face_run row and the ensemble row ask for the same networks: predicted once, until a file changes
    import emofuse.bench.fer2013 as fer

    calls = []
    monkeypatch.setattr(fer, "face_run_probs", lambda r, *a, **k: calls.append(r) or (run_ids, q))
    fer._runs_probs.cache_clear()
    for _ in range(2):
        again_ids, again = runs_probs([run, folder], faces, "test")
        again[:] = 0  # the caller's copy; the next call's answer is unharmed
    assert len(calls) == 2 and again_ids == run_ids
    assert runs_probs([run, folder], faces, "test")[1].any()
    (folder / "config.json").write_text((folder / "config.json").read_text() + " ")
    runs_probs([run, folder], faces, "test")
    assert len(calls) == 4
    # the run's own encoder folder names its classes, so it is scored as the network it is
    assert json.loads((run / "encoder" / "config.json").read_text())["classes"] == list(m.label_set.classes)
    np.testing.assert_allclose(face_run_probs(run / "encoder", faces, "test")[1], p, atol=1e-6)
    # a network whose classes are not named cannot be matched to the task's
    save_face_net(net, tmp_path / "unnamed", size=cfg["size"], width=cfg["width"], blocks=cfg["blocks"],
                  tta_flip=cfg["tta_flip"])
    with pytest.raises(ValueError, match="task's classes"):
        face_run_probs(tmp_path / "unnamed", faces, "test")


def test_bench_fer2013_averages_a_clips_faces_per_row(demo_run, tmp_path):
    """A saved network on clips of several frames (the demo's): each row's probabilities are the mean over
    its face frames (all its frames where none has a face), as the encoder's pooling would give them."""
    from emofuse.bench.fer2013 import _network_probs
    from emofuse.config import RawInputConfig
    from emofuse.data.raw import RawDataset
    from emofuse.features.encoders.face_net import FaceNet, FaceNetEncoder, save_face_net

    manifest = Manifest.load(Path(demo_run[0]) / "manifest.csv")
    classes = list(manifest.label_set.classes)
    torch.manual_seed(0)
    folder = save_face_net(FaceNet(len(classes), width=4, blocks=2).eval(), tmp_path / "net", size=48, width=4,
                           blocks=2, tta_flip=True, classes=classes)
    rows = np.flatnonzero((manifest.df["split"] == "test").to_numpy())[:6]
    ids, probs = _network_probs(folder, manifest, rows, None)
    assert ids == list(manifest.df["id"].to_numpy()[rows]) and probs.shape == (6, len(classes))
    enc = FaceNetEncoder(folder)
    ds = RawDataset.from_manifest(manifest, {"video": "raw"}, RawInputConfig(face_size=48)).subset(rows)
    frames_per_row = []
    for i in range(len(ds)):
        item = ds[i]
        f = item["video"][item["video_face"]] if item["video_face"].any() else item["video"]
        frames_per_row.append(len(f))
        np.testing.assert_allclose(probs[i], enc.frames(f)[:, :len(classes)].mean(0), atol=1e-5)
    assert max(frames_per_row) > 1  # rows of several frames were pooled
    assert not np.allclose(probs, probs[0])  # and rows differ: no row's mean leaked into another's


def test_init_starts_from_a_saved_network_and_refuses_another_shape(trained):
    from safetensors.torch import load_file

    _, run = trained
    saved = load_file(str(run / "encoder" / "model.safetensors"))
    model = build_model("finetune_face", {"width": 8, "blocks": 3, "init": str(run / "encoder")}, {"video": 0}, 2)
    assert not all(torch.equal(v, saved[k]) for k, v in model.net.state_dict().items())  # built: not read yet
    model.prepare_fit()  # the loop's call before the fit
    assert all(torch.equal(v, saved[k]) for k, v in model.net.state_dict().items())
    assert model.classes == ["happy", "sad"]  # the loop checks them against the manifest's
    with pytest.raises(ValueError, match=r"the saved network has .*'width': 8"):
        build_model("finetune_face", {"width": 4, "blocks": 3, "init": str(run / "encoder")}, {"video": 0}, 2).prepare_fit()
    with pytest.raises(FileNotFoundError, match="no config.json"):
        build_model("finetune_face", {"width": 8, "blocks": 3, "init": str(run)}, {"video": 0}, 2).prepare_fit()


def test_weight_averaging_keeps_the_mean_of_the_last_epochs_and_recomputes_batch_norm():
    from types import SimpleNamespace

    from emofuse.training.module import WeightAverage

    net = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.BatchNorm1d(3))
    swa = WeightAverage(epochs=2, max_epochs=3)
    module = SimpleNamespace(model=net)
    for epoch, w in enumerate((1.0, 2.0, 4.0)):  # the end of epochs 1, 2 and 3: the last two are averaged
        torch.nn.init.constant_(net[0].weight, w)
        swa.on_train_epoch_end(SimpleNamespace(current_epoch=epoch), module)
    x = torch.randn(40, 2)
    batches = [x[:20], x[20:]]
    assert swa.apply(net, batches) == 2
    assert torch.allclose(net[0].weight, torch.full((3, 2), 3.0))
    h = net[0](x)  # momentum None while recomputing: the running mean is the mean over the batches
    assert torch.allclose(net[1].running_mean, h.mean(0).detach(), atol=1e-5) and not net.training
    with pytest.raises(ValueError, match="more than train.max_epochs"):
        WeightAverage(epochs=4, max_epochs=3)
    assert WeightAverage(epochs=1, max_epochs=3).apply(net, batches) == 0  # the fit stopped before: nothing


def test_weight_averaging_recomputes_batch_norm_from_dict_batches_as_torch_does_from_tensors():
    """The loop's batches are dicts keyed by modality, which torch's update_bn cannot move to a device."""
    from types import SimpleNamespace

    from emofuse.training.module import WeightAverage

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.body = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.BatchNorm1d(3, momentum=0.3))

        def forward(self, x):
            return self.body(x["video"])

    torch.manual_seed(0)
    net, reference = Net(), Net()
    swa = WeightAverage(epochs=1, max_epochs=1)
    swa.on_train_epoch_end(SimpleNamespace(current_epoch=0), SimpleNamespace(model=net))
    reference.load_state_dict(net.state_dict())
    x = torch.randn(60, 2) * 3 + 1
    assert swa.apply(net, [{"video": x[:25], "id": ["r"] * 25}, {"video": x[25:], "id": ["s"] * 35}], "cpu") == 1
    torch.optim.swa_utils.update_bn([x[:25], x[25:]], reference.body)
    assert torch.allclose(net.body[1].running_mean, reference.body[1].running_mean)
    assert torch.allclose(net.body[1].running_var, reference.body[1].running_var)
    assert not torch.allclose(net.body[1].running_mean, torch.zeros(3))  # recomputed, not just reset
    assert net.body[1].momentum == 0.3 and int(net.body[1].num_batches_tracked) == 2 and not net.training


def test_a_trained_network_trained_further_with_weight_averaging(trained, faces, tmp_path):
    from safetensors.torch import load_file

    _, run = trained
    cfg = load_config(RunConfig, _config(faces, tmp_path, max_epochs=3, lr=1e-3, lr_schedule="constant",
                                         swa_epochs=2))
    cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update={
        "params": {**cfg.model.params, "init": str(run / "encoder")}})})
    m = train_run(cfg)
    assert m["test"]["accuracy"] == 1.0
    assert m["units"][0]["weights"] == "mean of epochs 2-3 (train.swa_epochs)"
    before = load_file(str(run / "encoder" / "model.safetensors"))
    after = load_file(str(tmp_path / "face" / "encoder" / "model.safetensors"))
    assert any(not torch.equal(before[k], after[k]) for k in before)
    # the run is loaded without its initial network, which an exported bundle does not carry
    from emofuse.inference.bundle import load_bundle

    (run / "encoder" / "model.safetensors").rename(tmp_path / "moved.safetensors")
    try:
        model = load_bundle(tmp_path / "face").model
    finally:
        (tmp_path / "moved.safetensors").rename(run / "encoder" / "model.safetensors")
    assert all(torch.equal(v, after[k]) for k, v in model.net.state_dict().items())
    other = toy_faces(tmp_path / "three", {"train": 6, "val": 3, "test": 3})
    df = Manifest.load(other)
    bad = Manifest(df.corpus, LabelSet("toy2b", ("angry", "sad")), df.df.replace({"happy": "angry"}), df.meta)
    bad.save(tmp_path / "three" / "m.csv")
    cfg2 = cfg.model_copy(update={"data": cfg.data.model_copy(update={"manifest": str(tmp_path / "three" / "m.csv")})})
    with pytest.raises(ValueError, match="predicts classes"):
        train_run(cfg2)
