"""Use a trained model: bundles (load, export), prediction on clips, and the HTTP API with its page.

    from emofuse.inference import Predictor, Clip
    p = Predictor.load("runs/demo/runs/fusion-attention")
    p.predict(Clip(video="clip.mp4", text="I can't believe it!")).label
"""

from emofuse.inference.bundle import (
    Bundle, BundleError, BundleSpec, MissingEncodersError, export_bundle, load_bundle, read_spec,
)
from emofuse.inference.predict import Clip, InputError, Prediction, Predictor

__all__ = [
    "Bundle", "BundleError", "BundleSpec", "MissingEncodersError", "export_bundle", "load_bundle", "read_spec",
    "Clip", "InputError", "Prediction", "Predictor",
]
