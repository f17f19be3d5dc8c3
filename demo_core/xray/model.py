"""Chest X-ray model: one loader, one ``predict``.

The fine-tuned Keras graph gives, in one forward pass, its class
probabilities, the opacity heat map and box sizes, the chest X-ray gate and the
final feature map used for the attention map.  A second member, a linear probe
on frozen ImageNet MobileNetV2 features, reads only the lung field, at one
common level of detail (``preprocess.LungReading``), so that an export's
resolution, compression, borders or gamma barely move it.  The shipped
probabilities blend both with the card's weight and are calibrated with the
card's temperature; the probe's pooled features also say how unlike the
training films a film is (``familiarity.FamiliarityIndex``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from .. import _tf
from ..bn_folding import load_for_inference
from ..cards import task_dir, verified_card
from ..errors import InputError
from ..intake import LoadedImage, load_image
from ..stats import tempered
from .boxes import decode_boxes
from .familiarity import FAMILIARITY_FILE, FamiliarityIndex
from .labels import CLASSES
from .preprocess import (COMMON_DETAIL, INPUT_SIZE, LungReading, common_detail, crop_window, lung_net_input,
                         probe_input, to_model_input)

PROBE_FILE = "probe.keras"
LUNG_FILE = "lungs.keras"
UNFAMILIAR_MESSAGE = ("This film is unlike the films the model learnt from (another hospital, scanner, export or "
                      "processing, or not an adult frontal chest film). Treat the answer with extra caution.")
# Colour photos are refused before the gate: radiographs are grey.
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
    lungs: LungReading | None = None  # where the probe read the film
    familiarity: float | None = None  # distance to the training films; 1.0 = a typical familiar film
    familiarity_threshold: float = float("inf")
    _features: tuple[np.ndarray, ...] | None = field(default=None, repr=False, compare=False)  # per member

    @property
    def unfamiliar(self) -> bool:
        """Whether the film lies farther from the training films than held-out sources' films did."""
        return self.familiarity is not None and self.familiarity > self.familiarity_threshold

    def caution(self) -> str | None:
        """What the page says beside the answer when the film is unfamiliar."""
        return UNFAMILIAR_MESSAGE if self.is_chest_xray and self.unfamiliar else None

    def to_dict(self) -> dict:
        """The CLI's answer schema."""
        return {"probabilities": {k: round(v, 6) for k, v in self.probabilities.items()},
                "label": self.label,
                "boxes": [b.to_dict() for b in self.boxes],
                "is_chest_xray": self.is_chest_xray,
                "unfamiliar_film": self.unfamiliar,
                "familiarity": None if self.familiarity is None else round(self.familiarity, 3)}

    def boxes_above(self, threshold: float) -> list[Box]:
        return [b for b in self.boxes if b.score >= threshold]


class XrayModel:
    """Thread-safe: Keras inference on a loaded model does not mutate it."""

    def __init__(self, keras_model, card: dict, probe_model, lung_model, familiarity: FamiliarityIndex):
        self.model = keras_model
        self.card = card
        ensemble = card["ensemble"]
        self.finetuned_weight = float(ensemble["finetuned_weight"])  # in the class probabilities
        self.temperature = float(ensemble.get("temperature", 1.0))
        self.familiarity_index = familiarity
        decoding = card.get("decoding", {})
        self.default_threshold = float(decoding.get("default_score_threshold", 0.3))
        self.gate_threshold = float(decoding.get("gate_threshold", 0.5))
        self.top_k = int(decoding.get("top_k", 10))
        self._class_weights = keras_model.get_layer("class_logits").get_weights()[0]  # (1280, 4)
        self._tf = _tf.tf()
        # autograph=False: nothing to convert, and autograph writes generated source to a temp dir
        # The probe reads the lung crop at its own size (chosen on validation).
        self.probe_size = int(probe_model.input_shape[1])
        # The probe's head may read several pooled layers; the last layer comes last, and its rows
        # are the ones that map onto the last feature map the attention map is drawn from.
        channels = probe_model.output["features"].shape[-1]
        self._probe_weights = probe_model.get_layer("probe_logits").get_weights()[0][-channels:]

        def forward(x, x_probe):
            out = dict(self.model(x, training=False))
            probe = probe_model(x_probe, training=False)
            out.update(probe_probabilities=probe["probabilities"], probe_features=probe["features"],
                       probe_pooled=probe["pooled"])
            return out

        # One graph for both members: TensorFlow runs the two backbones side by side on the two cores
        # (24 ms instead of 36 ms one after the other).
        self._forward = self._tf.function(forward, reduce_retracing=True, autograph=False)
        self._lung_field = self._tf.function(lambda x: lung_model(x, training=False), reduce_retracing=True,
                                             autograph=False)
        self.predict_image(LoadedImage(np.full((256, 256, 3), 128, np.uint8), "warm-up"))  # trace once

    # -- public API
    def predict_request(self, request: dict) -> XrayPrediction:
        """A CLI / API request: ``{"image": "path/to/film"}`` (PNG, JPEG or DICOM, any file name)."""
        path = request.get("image")
        if not isinstance(path, str) or not path:
            raise InputError('Each request needs "image": a path to a PNG, JPEG or DICOM file.')
        return self.predict(path)

    def predict(self, source, *, name: str | None = None) -> XrayPrediction:
        """``source``: bytes, a path, or a LoadedImage."""
        image = source if isinstance(source, LoadedImage) else load_image(source, name=name)
        return self.predict_image(image)

    def self_check(self, image: LoadedImage, prediction: XrayPrediction):
        """The film read again after a 6 % border crop and as a quality-50 JPEG (``robustness.SELF_CHECK``):
        does the answer hold?  About two more predictions."""
        from .robustness import self_check
        probabilities = lambda img: np.array(list(self.predict_image(img).probabilities.values()))  # noqa: E731
        return self_check(probabilities, image.gray(), np.array(list(prediction.probabilities.values())), CLASSES)

    def input_description(self) -> str:
        """How the film is resized for the members, in words for the page."""
        return (f"whole film resized (squashed) to {INPUT_SIZE} × {INPUT_SIZE} grayscale for the fine-tuned model; "
                f"for the ImageNet probe, brought to the common detail of {COMMON_DETAIL} px, cropped to the lung "
                f"field (dashed frame), histogram-equalised and read at {self.probe_size} × {self.probe_size}; "
                "boxes are mapped back to your image")

    def read_lungs(self, gray: np.ndarray) -> tuple[np.ndarray, LungReading]:
        """The film at the common detail, and where its lungs are."""
        common = common_detail(gray)
        field = self._lung_field(self._tf.constant(lung_net_input(common)[None])).numpy()[0]
        return common, LungReading(tuple(float(v) for v in field), crop_window(field))

    def member_inputs(self, image: LoadedImage) -> tuple:
        """The film as each member reads it: (fine-tuned member's input, probe's input, the lung reading)."""
        gray = image.gray()
        common, lungs = self.read_lungs(gray)
        x = to_model_input(gray)[None]
        x_probe = probe_input(common, lungs.window, self.probe_size)[None]
        return self._tf.constant(x), self._tf.constant(x_probe), lungs

    def predict_image(self, image: LoadedImage) -> XrayPrediction:
        x, x_probe, lungs = self.member_inputs(image)
        out = self._forward(x, x_probe)
        w = self.finetuned_weight
        blend = (w * out["probabilities"].numpy()[0].astype(float)
                 + (1 - w) * out["probe_probabilities"].numpy()[0].astype(float))
        probs = tempered(blend, self.temperature)
        features = (out["features"].numpy()[0], out["probe_features"].numpy()[0])
        familiarity = float(self.familiarity_index.scores(out["probe_pooled"].numpy())[0])
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
            lungs=lungs,
            familiarity=familiarity,
            familiarity_threshold=self.familiarity_index.threshold,
            _features=features,
        )

    def attention_map(self, prediction: XrayPrediction, class_name: str | None = None,
                      member: str = "blend") -> np.ndarray:
        """Class activation map in [0, 1], at the input image's size.

        For a global-average-pool + linear head, Grad-CAM's channel weights are
        exactly the head's weights, so no gradient pass is needed.  The two
        members' maps are weighted as their probabilities are (``member="blend"``),
        or one member's map alone ("finetuned", "lung_probe").
        """
        if prediction._features is None:
            raise InputError("No features kept for this prediction.")
        k = CLASSES.index(class_name or prediction.label)
        w, h = prediction.image_size

        def at_image_size(features: np.ndarray, weights: np.ndarray, window: tuple[int, int, int, int]) -> np.ndarray:
            # each member's map on its own grid (7x7 at 224 px, 12x12 at 384), brought to the part of the film
            # that member read
            cam = _unit(np.maximum(features @ weights[:, k], 0)).astype(np.float32)
            x0, y0, x1, y1 = window
            full = np.zeros((h, w), np.float32)
            if x1 > x0 and y1 > y0:
                full[y0:y1, x0:x1] = cv2.resize(cam, (x1 - x0, y1 - y0), interpolation=cv2.INTER_CUBIC).clip(0, 1)
            return full

        cam = at_image_size(prediction._features[0], self._class_weights, (0, 0, w, h))
        # the probe read only the lung crop: its map lies there, and is zero elsewhere
        window = prediction.lungs.window_in_image((w, h))
        probe_cam = at_image_size(prediction._features[1], self._probe_weights, window)
        weight = {"blend": self.finetuned_weight, "finetuned": 1.0, "lung_probe": 0.0}[member]
        return _unit(weight * cam + (1 - weight) * probe_cam).clip(0, 1)


def _unit(a: np.ndarray) -> np.ndarray:
    return a / a.max() if a.max() > 0 else a


def _coloured_fraction(rgb: np.ndarray) -> float:
    small = rgb[:: max(1, rgb.shape[0] // 256), :: max(1, rgb.shape[1] // 256)].astype(np.int16)
    chroma = small.max(axis=2) - small.min(axis=2)
    return float((chroma > _COLOUR_CHROMA).mean())


def load() -> XrayModel:
    """Verify the files against the card, then load (a few seconds, once per process)."""
    card = verified_card("xray")
    folder = task_dir("xray")
    return XrayModel(load_for_inference(folder / "model.keras"), card, load_for_inference(folder / PROBE_FILE),
                     load_for_inference(folder / LUNG_FILE), FamiliarityIndex.load(folder / FAMILIARITY_FILE))
