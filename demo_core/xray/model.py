"""Chest X-ray model: one loader, one ``predict``.

The fine-tuned Keras graph gives, in one forward pass, its class
probabilities, the opacity heat map and box sizes, the chest X-ray gate and the
final feature map used for the attention map.  A second member, a linear probe
on frozen ImageNet MobileNetV2 features, ranks the classes better on
validation; the shipped probabilities blend both with the card's weight.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import cv2
import numpy as np

from .. import _tf
from ..bn_folding import load_for_inference
from ..cards import task_dir, verified_card
from ..errors import InputError
from ..intake import LoadedImage, load_image
from .boxes import decode_boxes
from .labels import CLASSES
from .preprocess import INPUT_SIZE, to_model_input

# Colour photos are refused before the gate: radiographs are grey.
PROBE_FILE = "probe.keras"
_MAX_COLOURED_FRACTION = 0.05
_COLOUR_CHROMA = 40


@dataclass(frozen=True)
class Box:
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in the input image's pixels
    score: float

    def to_dict(self) -> dict:
        return {"box": [round(v, 1) for v in self.box], "score": round(self.score, 4)}


@dataclass(frozen=True)
class XrayPrediction:
    probabilities: dict[str, float]
    label: str
    boxes: tuple[Box, ...]
    is_chest_xray: bool
    gate_score: float  # model's probability that this is a frontal chest X-ray
    refusal_reason: str | None
    image_size: tuple[int, int]  # (width, height)
    preprocessing: tuple[str, ...] = ()
    _features: tuple[np.ndarray, ...] | None = field(default=None, repr=False, compare=False)  # per member

    def to_dict(self) -> dict:
        """The CLI's answer schema."""
        return {"probabilities": {k: round(v, 6) for k, v in self.probabilities.items()},
                "label": self.label,
                "boxes": [b.to_dict() for b in self.boxes],
                "is_chest_xray": self.is_chest_xray}

    def boxes_above(self, threshold: float) -> list[Box]:
        return [b for b in self.boxes if b.score >= threshold]


class XrayModel:
    """Thread-safe: Keras inference on a loaded model does not mutate it."""

    def __init__(self, keras_model, card: dict, probe_model=None):
        self.model = keras_model
        self.card = card
        # weight of the fine-tuned member in the class probabilities; 1.0 when there is no probe
        self.finetuned_weight = float(card.get("ensemble", {}).get("finetuned_weight", 1.0)) if probe_model else 1.0
        decoding = card.get("decoding", {})
        self.default_threshold = float(decoding.get("default_score_threshold", 0.3))
        self.gate_threshold = float(decoding.get("gate_threshold", 0.5))
        self.top_k = int(decoding.get("top_k", 10))
        self._class_weights = keras_model.get_layer("class_logits").get_weights()[0]  # (1280, 4)
        self._tf = _tf.tf()
        # autograph=False: nothing to convert, and autograph writes generated source to a temp dir
        # The probe reads the film at its own size (chosen on validation; larger than the fine-tuned member's
        # 224 px when the frozen ImageNet features see more of the lungs' texture that way).
        self.probe_size = int(probe_model.input_shape[1]) if probe_model is not None else None
        if probe_model is not None:
            # The probe's head may read several pooled layers; the last layer comes last, and its rows
            # are the ones that map onto the last feature map the attention map is drawn from.
            channels = probe_model.output["features"].shape[-1]
            self._probe_weights = probe_model.get_layer("probe_logits").get_weights()[0][-channels:]

        def forward(x, x_probe):
            out = dict(self.model(x, training=False))
            if probe_model is not None:
                probe = probe_model(x_probe, training=False)
                out.update(probe_probabilities=probe["probabilities"], probe_features=probe["features"])
            return out

        # One graph for both members: TensorFlow runs the two backbones side by side on the two cores
        # (24 ms instead of 36 ms one after the other).
        self._forward = self._tf.function(forward, reduce_retracing=True, autograph=False)
        self.predict_image(LoadedImage(np.full((256, 256, 3), 128, np.uint8), "warm-up"))  # trace once

    # -- public API
    def predict(self, source, *, name: str | None = None) -> XrayPrediction:
        """``source``: bytes, a path, or a LoadedImage."""
        image = source if isinstance(source, LoadedImage) else load_image(source, name=name)
        return self.predict_image(image)

    def input_description(self) -> str:
        """How the film is resized for the members, in words for the page."""
        text = f"resized (squashed) to {INPUT_SIZE} × {INPUT_SIZE} grayscale for the fine-tuned model"
        if self.probe_size and self.probe_size != INPUT_SIZE:
            text += f" and to {self.probe_size} × {self.probe_size} for the ImageNet probe"
        return text + "; boxes are mapped back to your image"

    def member_inputs(self, image: LoadedImage) -> tuple:
        """The film as each member reads it: (fine-tuned member's input, probe's input), batches of one."""
        gray = image.gray()
        x = to_model_input(gray)[None]
        x_probe = x if self.probe_size in (None, x.shape[1]) else to_model_input(gray, self.probe_size)[None]
        return self._tf.constant(x), self._tf.constant(x_probe)

    def predict_image(self, image: LoadedImage) -> XrayPrediction:
        out = self._forward(*self.member_inputs(image))
        probs = out["probabilities"].numpy()[0].astype(float)
        features = (out["features"].numpy()[0],)
        if "probe_probabilities" in out:
            w = self.finetuned_weight
            probs = w * probs + (1 - w) * out["probe_probabilities"].numpy()[0].astype(float)
            features += (out["probe_features"].numpy()[0],)
        probs = probs / probs.sum()
        heat = out["heatmap"].numpy()[0, ..., 0]
        size = out["box_size"].numpy()[0]
        gate = float(out["is_chest_xray"].numpy()[0, 0])
        reason = None
        if _coloured_fraction(image.pixels) > _MAX_COLOURED_FRACTION:
            reason = "This is a colour image; chest radiographs are greyscale."
        elif gate < self.gate_threshold:
            reason = "This does not look like a frontal chest X-ray."
        boxes = tuple(Box(tuple(b), s) for b, s in decode_boxes(heat, size, image.size, threshold=0.05,
                                                               top_k=self.top_k))
        return XrayPrediction(
            probabilities=dict(zip(CLASSES, probs.tolist())),
            label=CLASSES[int(np.argmax(probs))],
            boxes=boxes if reason is None else (),
            is_chest_xray=reason is None,
            gate_score=gate,
            refusal_reason=reason,
            image_size=image.size,
            preprocessing=image.steps,
            _features=features,
        )

    def attention_map(self, prediction: XrayPrediction, class_name: str | None = None) -> np.ndarray:
        """Class activation map in [0, 1], at the input image's size.

        For a global-average-pool + linear head, Grad-CAM's channel weights are
        exactly the head's weights, so no gradient pass is needed.  With two
        members, their maps are weighted as their probabilities are.
        """
        if prediction._features is None:
            raise InputError("No features kept for this prediction.")
        k = CLASSES.index(class_name or prediction.label)
        w, h = prediction.image_size

        def at_image_size(features: np.ndarray, weights: np.ndarray) -> np.ndarray:
            # each member's map on its own grid (7x7 at 224 px, 10x10 at 320), brought to the film's size
            cam = _unit(np.maximum(features @ weights[:, k], 0)).astype(np.float32)
            return cv2.resize(cam, (w, h), interpolation=cv2.INTER_CUBIC).clip(0, 1)

        cam = at_image_size(prediction._features[0], self._class_weights)
        if len(prediction._features) > 1:
            probe_cam = at_image_size(prediction._features[1], self._probe_weights)
            cam = _unit(self.finetuned_weight * cam + (1 - self.finetuned_weight) * probe_cam)
        return cam.clip(0, 1)


def _unit(a: np.ndarray) -> np.ndarray:
    return a / a.max() if a.max() > 0 else a


def _coloured_fraction(rgb: np.ndarray) -> float:
    small = rgb[:: max(1, rgb.shape[0] // 256), :: max(1, rgb.shape[1] // 256)].astype(np.int16)
    chroma = small.max(axis=2) - small.min(axis=2)
    return float((chroma > _COLOUR_CHROMA).mean())


def load() -> XrayModel:
    """Verify the files against the card, then load (a few seconds, once per process)."""
    card = verified_card("xray")
    model = load_for_inference(task_dir("xray") / "model.keras")
    probe = load_for_inference(task_dir("xray") / PROBE_FILE) if PROBE_FILE in card["files"] else None
    return XrayModel(model, card, probe)
