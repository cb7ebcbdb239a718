"""A bundle's network comes back from its ONNX graph (batch norms folded), so a new model can
start from the shipped one: the recovered torch network embeds images as the graph does."""

from __future__ import annotations

import numpy as np
import torch

from artylyze.imaging import load_image
from artylyze.model.bundle import DEFAULT_BUNDLE_DIR, load_bundle
from artylyze.train.data import to_tensor
from artylyze.train.from_bundle import recover, save_backbone
from artylyze.train.inputs import predict
from artylyze.train.models import build_model


def test_the_shipped_bundle_recovers_from_its_graph(wikiart, tmp_path):
    bundle = load_bundle(DEFAULT_BUNDLE_DIR)
    size = bundle.manifest.input_size
    paths = sorted((wikiart / "images").rglob("*.jpg"))[:4]
    images = np.stack([load_image(p, size, bundle.manifest.resize).pixels for p in paths])
    graph = bundle.run(images)["embedding"]
    model = recover(DEFAULT_BUNDLE_DIR)
    # float32 with batch norms folded in another order: agreement to rounding, not bits
    np.testing.assert_allclose(predict(model, images)["embedding"], graph, atol=2e-4)
    # the domain head reads the backbone features, not the embedding: it comes back too
    # (the graph's probabilities are calibrated: logits / T + bias, then softmax)
    cal = bundle.manifest.calibration
    with torch.no_grad():
        logits = model(to_tensor(images))["domain"] / cal["temperature"]["domain"]
        p = (logits + torch.tensor(cal["bias"]["domain"])).softmax(1).numpy()
    np.testing.assert_allclose(p, bundle.run(images)["domain"], atol=1e-3)

    # the saved backbone loads into a fresh network of the bundle's backbone by name
    weights = save_backbone(DEFAULT_BUNDLE_DIR, tmp_path / "backbone.safetensors")
    fresh = build_model(bundle.manifest.backbone, {"style": 2}, pretrained=False,
                        weights=str(weights)).eval()
    with torch.no_grad():
        x = model.normalize(to_tensor(images))
        torch.testing.assert_close(fresh.backbone(x), model.backbone(x))
