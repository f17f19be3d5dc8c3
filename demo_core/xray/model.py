"""Chest X-ray model: one loader, one ``predict``.

Both members read only the lung field, at one common level of detail
(``preprocess.LungReading``), so that an export's resolution, compression,
borders or gamma barely move them; the probe reads three framings of it
and averages its class probabilities (``preprocess.FRAMINGS``).  The fine-tuned network
gives, in one forward pass over that crop, its class probabilities, the opacity
heat map and box sizes, and the final feature map used for the attention map.
The second member is a linear probe on frozen ImageNet MobileNetV2 features of
the same crop; the same features decide whether the upload is a chest X-ray at
all (the gate: ImageNet features tell a film from a photo or a page far better
than features trained on films alone).  Both pool their feature maps with the
lung prior (``lung_prior``), so the mediastinum, shoulders and corners of the
crop count little in the answer.  All three networks (the lung field's
too) are served through LiteRT (``demo_core.served``): no TensorFlow import,
a few milliseconds a reading.  The shipped probabilities blend both
with the card's weight and are calibrated with the card's temperature; the
probe's pooled features also say how unlike the training films a film is
(``familiarity.FamiliarityIndex``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ..cards import task_dir, verified_card
from ..errors import InputError
from ..intake import LoadedImage, load_image
from ..served import ServedNet
from ..stats import tempered
from .boxes import boxes_in_window
from .familiarity import FAMILIARITY_FILE, FamiliarityIndex
from .gate import refusal_before_gate
from .labels import CLASSES
from .lung_prior import prior_over
from .view import VIEW_FILE, ViewHead, ViewReading
from .preprocess import (CROP_DETAIL, FRAMINGS, INPUT_SIZE, LUNG_PASSES, LungReading, framings_in_words, lung_crop,
                         lung_field, member_input, probe_input)

PROBE_FILE = "probe.keras"
LUNG_FILE = "lungs.keras"
SERVED = ("model", "probe", "lungs")  # NAME.keras as trained, NAME.tflite as served (export_xray_litert.py)
HEADS_FILE = "heads.npz"  # each member's class weights over its last feature map and the lung prior: attention maps
# Who reads every framing of the lung crop (``FRAMINGS``). The probe alone: averaging the fine-tuned member too
# steadied the answer a little more on validation (worst mean TV over the exports 0.046 against 0.048) but took a
# request from about 14 to 18 ms on two cores, too near the speed target (5x a VGG19 forward pass).
FRAMINGS_READ_BY = "the lung probe"
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
    lungs: LungReading | None = None  # where both members read the film
    familiarity: float | None = None  # distance to the training films; 1.0 = a typical familiar film
    familiarity_threshold: float = float("inf")
    view: ViewReading | None = None  # AP (bedside) or PA, stated by the DICOM or estimated
    bedside_note: str | None = None  # what AP films from another hospital showed (from the card)
    _attention: _AttentionInputs | None = field(default=None, repr=False, compare=False)

    @property
    def unfamiliar(self) -> bool:
        """Whether the film lies farther from the training films than held-out sources' films did."""
        return self.familiarity is not None and self.familiarity > self.familiarity_threshold

    def caution(self) -> str | None:
        """What the page says beside the answer when the film is unfamiliar."""
        return UNFAMILIAR_MESSAGE if self.is_chest_xray and self.unfamiliar else None

    def bedside_caution(self) -> str | None:
        """What the page says beside an abnormal answer on an AP (bedside) film: the view still moves the answer."""
        if self.is_chest_xray and self.view is not None and self.view.view == "AP" and self.label != "negative":
            return self.bedside_note
        return None

    def cautions(self) -> tuple[str, ...]:
        """Every caution that goes beside this answer."""
        return tuple(c for c in (self.caution(), self.bedside_caution()) if c)

    def to_dict(self) -> dict:
        """The CLI's answer schema. A refused image gets the reason and the gate's score, never a class."""
        if not self.is_chest_xray:
            return {"is_chest_xray": False, "refusal_reason": self.refusal_reason,
                    "gate_score": round(self.gate_score, 4)}
        return {"probabilities": {k: round(v, 6) for k, v in self.probabilities.items()},
                "label": self.label,
                "boxes": [b.to_dict() for b in self.boxes],
                "is_chest_xray": self.is_chest_xray,
                "unfamiliar_film": self.unfamiliar,
                "familiarity": None if self.familiarity is None else round(self.familiarity, 3),
                "view": None if self.view is None else self.view.to_dict(),
                "cautions": list(self.cautions())}

    def boxes_above(self, threshold: float) -> list[Box]:
        return [b for b in self.boxes if b.score >= threshold]

    def attention(self, class_name: str | None = None, member: str = "blend") -> np.ndarray:
        """Class activation map in [0, 1], at the input image's size, zero outside the lung crop both members read.

        Each member pools its feature map with the lung prior and a linear head, so each cell's share of the class
        score is its prior weight times the head's weights over its features (Grad-CAM for this head, no gradient
        pass needed); the map spreads that share over the cell's pixels by the prior (``lung_prior``). The two
        members' maps are weighted as their probabilities are (``"blend"``), or one member's map alone
        (``"finetuned"``, ``"lung_probe"``).
        """
        if self._attention is None or self.lungs is None:
            raise InputError("No features kept for this prediction.")
        k = CLASSES.index(class_name or self.label)
        window = self.lungs.window_in_image(self.image_size)
        a, pooling = self._attention, self.pooling_weights()
        maps = [_unit(_member_map(f, w[:, k], window, self.image_size) * pooling)
                for f, w in zip(a.features, a.class_weights)]
        weight = {"blend": a.finetuned_weight, "finetuned": 1.0, "lung_probe": 0.0}[member]
        return _unit(weight * maps[0] + (1 - weight) * maps[1]).clip(0, 1)

    def pooling_weights(self) -> np.ndarray:
        """How both members weigh each pixel of the film when pooling, in [0, 1] at the input image's size: the
        lung prior over the crop, zero outside it. An attention map with no preference of its own looks like this."""
        if self._attention is None or self.lungs is None:
            raise InputError("No features kept for this prediction.")
        w, h = self.image_size
        x0, y0, x1, y1 = self.lungs.window_in_image(self.image_size)
        full = np.zeros((h, w), np.float32)
        if x1 > x0 and y1 > y0:
            full[y0:y1, x0:x1] = prior_over(self._attention.lung_prior, x1 - x0, y1 - y0)
        return full

    def annotated(self, pixels: np.ndarray, threshold: float, *, attention: bool = False):
        """The film as the page shows it (a PIL image, at most 1,280 px): boxes at or above ``threshold``, the lung
        frame, and the attention map when asked."""
        from .drawing import annotated_film
        window = self.lungs.window_in_image(self.image_size) if self.lungs is not None else None
        return annotated_film(pixels, self.boxes_above(threshold), window, self.attention() if attention else None)


@dataclass(frozen=True)
class _AttentionInputs:
    """What a prediction keeps to draw its attention map: each member's last feature map and class weights."""
    features: tuple[np.ndarray, np.ndarray]  # (fine-tuned, probe), each (grid, grid, channels)
    class_weights: tuple[np.ndarray, np.ndarray]  # each (channels, 4): shared with the model, not copied
    finetuned_weight: float
    lung_prior: np.ndarray  # (PRIOR_SIZE, PRIOR_SIZE): how both members weigh the crop when pooling


class XrayModel:
    """Thread-safe: each served network takes one reading at a time, and nothing else changes after loading."""

    def __init__(self, card: dict, nets: dict[str, ServedNet], heads: dict[str, np.ndarray],
                 familiarity: FamiliarityIndex, view: ViewHead | None = None):
        self.card = card
        ensemble = card["ensemble"]
        self.finetuned_weight = float(ensemble["finetuned_weight"])  # in the class probabilities
        self.temperature = float(ensemble.get("temperature", 1.0))
        self.familiarity_index = familiarity
        self.view_head = view
        self.bedside_note = bedside_note(card)
        decoding = card.get("decoding", {})
        self.default_threshold = float(decoding.get("default_score_threshold", 0.3))
        self.gate_threshold = float(decoding.get("gate_threshold", 0.5))
        self.top_k = int(decoding.get("top_k", 10))
        self._member, self._probe, self._lungs = nets["model"], nets["probe"], nets["lungs"]
        # The probe reads the lung crop at its own size (chosen on validation).
        self.probe_size = int(self._probe.input_shape[1])
        # Each member's class weights over its last feature map: its attention map (the probe's head may read
        # more pooled layers; these are the rows that map onto its last feature map).
        self._class_weights = heads["finetuned_class_weights"]  # (1280, 4)
        self._probe_weights = heads["probe_class_weights"]
        self.lung_prior = heads["lung_prior"]  # the pooling weights both graphs hold, for the attention maps
        self.predict_image(LoadedImage(np.full((256, 256, 3), 128, np.uint8), "warm-up"))  # first reading

    def _forward(self, x: np.ndarray, x_probe: np.ndarray) -> dict[str, np.ndarray]:
        """Both members: the fine-tuned one's outputs, and the probe's as ``probe_*``."""
        out = self._member(x)
        out.update({f"probe_{k}": v for k, v in self._probe(x_probe).items()})
        return out

    # -- public API
    def predict_request(self, request: dict) -> XrayPrediction:
        """A CLI / API request: ``{"image": "path/to/film"}`` (PNG, JPEG or DICOM, any file name). With
        ``"annotated": "out.png"`` the film is also drawn as the page shows it (boxes at the default threshold,
        the lung frame; ``"attention": true`` adds the attention map) and saved there."""
        path, target = request.get("image"), request.get("annotated")
        if not isinstance(path, str) or not path:
            raise InputError('Each request needs "image": a path to a PNG, JPEG or DICOM file.')
        if target is not None and (not isinstance(target, str) or not target.lower().endswith(".png")):
            raise InputError('"annotated" must be a path ending in .png.')
        image = load_image(path)
        result = self.predict_image(image)
        if target is not None:
            picture = result.annotated(image.pixels, self.default_threshold, attention=bool(request.get("attention")))
            try:
                picture.save(target, format="PNG")
            except OSError as exc:
                raise InputError(f"The annotated film could not be written to {target} ({exc.strerror}).") from None
        return result

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

    def attention_reliability(self) -> str | None:
        """How far the attention map points at the lungs, as measured on the test films (from the card)."""
        a = self.card.get("metrics", {}).get("robustness", {}).get("attention_in_lungs", {})
        share, uniform = a.get("mean_share_inside_lung_boxes"), a.get("uniform_map_share")
        if share is None or uniform is None:
            return None
        pooling = a.get("pooling_weights_share")
        baseline = f"{uniform:.0%} for an even map" + (
            "" if pooling is None else f" and {pooling:.0%} for the model's lung weighting alone")
        return (f"On {a.get('n', 'the')} test films with drawn lungs, {share:.0%} of the map's weight lay inside the "
                f"lungs, against {baseline}: a coarse guide to what the model weighed, not a locator of findings.")

    def outside_hospital_note(self) -> str | None:
        """How the answer held on held-out films from another hospital, as measured (from the card)."""
        t = self.card.get("metrics", {}).get("outside_hospital", {}).get("table")
        if not t:
            return None
        ap, pa = (t["no_finding_called_negative"][v] for v in ("AP", "PA"))
        return (f"On {t['n']} held-out films from another hospital (NIH), {ap['share']:.0%} of normal bedside (AP) "
                f"films and {pa['share']:.0%} of normal PA films came back negative (n = {ap['n']} and {pa['n']}); "
                f"ranking report-labelled pneumonia above normal films, the AUC was {t['pneumonia_auc']:.2f}.")

    def input_description(self) -> str:
        """How the film is resized for the members, in words for the page."""
        return (f"lung field found in {LUNG_PASSES} looks, cut from your film with a margin (dashed frame), brought "
                f"to the common detail of {CROP_DETAIL} × {CROP_DETAIL} px (squashed) and histogram-equalised; the "
                f"fine-tuned model reads that crop at {INPUT_SIZE} × {INPUT_SIZE}, the ImageNet probe at "
                f"{self.probe_size} × {self.probe_size} and at {len(FRAMINGS)} framings ({framings_in_words()}), "
                "averaging its class probabilities over them; boxes are mapped back to your image")

    def _lung_fields(self, batch: np.ndarray) -> np.ndarray:
        return np.concatenate([self._lungs(x[None])["output"] for x in batch])

    def read_lungs(self, gray: np.ndarray) -> tuple[list[np.ndarray], LungReading]:
        """The lung crop at each framing (``FRAMINGS``, the first as found) at the common detail, and where the
        lungs lie on the film."""
        lungs = LungReading.of(lung_field(self._lung_fields, [gray])[0])
        return [lung_crop(gray, w) for w in lungs.windows], lungs

    def member_inputs(self, image: LoadedImage) -> tuple:
        """The film as each member reads it at the first framing: (fine-tuned member's input, probe's input, the
        lung reading)."""
        crops, lungs = self.read_lungs(image.gray())
        return *self._inputs_of(crops[0]), lungs

    def _inputs_of(self, crop: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One lung crop as (fine-tuned member's input, probe's input), each a batch of one."""
        x = member_input(crop)[None]
        # a probe at the member's size reads the very same array: one equalisation and resize, not two
        return x, (x if self.probe_size == x.shape[1] else probe_input(crop, self.probe_size)[None])

    def framed_forward(self, crops: list[np.ndarray]) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
        """Both members on the first framing, the probe on every framing (``FRAMINGS_READ_BY``): the first
        framing's outputs, the fine-tuned member's class probabilities, and the probe's averaged over the
        framings, before the blend and the temperature."""
        out = self._forward(*self._inputs_of(crops[0]))
        probe = [out["probe_probabilities"][0].astype(float)]
        probe += [self._probe(probe_input(c, self.probe_size)[None])["probabilities"][0].astype(float)
                  for c in crops[1:]]
        return out, out["probabilities"][0].astype(float), np.mean(probe, axis=0)

    def mixed(self, finetuned: np.ndarray, probe: np.ndarray) -> np.ndarray:
        """Both members' class probabilities mixed with the card's weight, before the temperature."""
        w = self.finetuned_weight
        return w * finetuned + (1 - w) * probe

    def blend(self, finetuned: np.ndarray, probe: np.ndarray) -> np.ndarray:
        """The shipped class probabilities from both members' (the card's weight, then its temperature)."""
        return tempered(self.mixed(finetuned, probe), self.temperature)

    def _refusal_by_pixels(self, rgb: np.ndarray, gate: float) -> str | None:
        if _coloured_fraction(rgb) > _MAX_COLOURED_FRACTION:
            return "This is a colour image; chest radiographs are greyscale."
        if gate < self.gate_threshold:
            return "This does not look like a frontal chest X-ray."
        return None

    def predict_image(self, image: LoadedImage) -> XrayPrediction:
        crops, lungs = self.read_lungs(image.gray())
        out, finetuned, probe = self.framed_forward(crops)
        probs = self.blend(finetuned, probe)
        attention = _AttentionInputs((out["features"][0], out["probe_features"][0]),
                                     (self._class_weights, self._probe_weights), self.finetuned_weight,
                                     self.lung_prior)
        familiarity = float(self.familiarity_index.scores(out["probe_pooled"])[0])
        heat = out["heatmap"][0, ..., 0]
        size = out["box_size"][0]
        gate = float(out["probe_is_chest_xray"][0, 0])
        reason = refusal_before_gate(image.info, image.size) or self._refusal_by_pixels(image.pixels, gate)
        boxes = tuple(Box(tuple(b), score) for b, score in
                      boxes_in_window(heat, size, lungs.window_in_image(image.size), threshold=0.05, top_k=self.top_k))
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
            view=None if self.view_head is None else self.view_head.read(out["probe_pooled"], image.info),
            bedside_note=self.bedside_note,
            _attention=attention,
        )


def _member_map(features: np.ndarray, weights: np.ndarray, window: tuple[int, int, int, int],
                image_size: tuple[int, int]) -> np.ndarray:
    """One member's map on its own grid (7x7 at 224 px, 12x12 at 384), brought to the part of the film it read
    (before the pooling weights)."""
    cam = _unit(np.maximum(features @ weights, 0)).astype(np.float32)
    w, h = image_size
    x0, y0, x1, y1 = window
    full = np.zeros((h, w), np.float32)
    if x1 > x0 and y1 > y0:
        full[y0:y1, x0:x1] = cv2.resize(cam, (x1 - x0, y1 - y0), interpolation=cv2.INTER_CUBIC).clip(0, 1)
    return full


def _unit(a: np.ndarray) -> np.ndarray:
    return a / a.max() if a.max() > 0 else a


def _coloured_fraction(rgb: np.ndarray) -> float:
    """The share of pixels (on a grid of about 256 x 256) whose channels differ by more than ``_COLOUR_CHROMA``."""
    small = np.ascontiguousarray(rgb[:: max(1, rgb.shape[0] // 256), :: max(1, rgb.shape[1] // 256)])
    r, g, b = cv2.split(small)
    # max - min over three channels is the largest of their pairwise differences (cv2: a tenth of numpy's time)
    chroma = cv2.max(cv2.max(cv2.absdiff(r, g), cv2.absdiff(g, b)), cv2.absdiff(r, b))
    return float(np.count_nonzero(chroma > _COLOUR_CHROMA)) / chroma.size


def load(folder: Path | None = None) -> XrayModel:
    """Verify the files against the card, then load the served networks (well under a second, once per process).
    ``folder``: where the model lies, by default the shipped weights (training reads the folder it wrote)."""
    folder = folder or task_dir("xray")
    card = verified_card("xray", folder)
    served = card.get("served", {}).get("files", {})
    nets = {name: ServedNet(folder / f"{name}.tflite", served.get(f"{name}.tflite", {}).get("outputs", {}))
            for name in SERVED}
    with np.load(folder / HEADS_FILE) as heads:
        return XrayModel(card, nets, {k: heads[k] for k in heads.files}, FamiliarityIndex.load(folder / FAMILIARITY_FILE),
                         ViewHead.load(folder / VIEW_FILE))


def bedside_note(card: dict) -> str | None:
    """The caution beside an abnormal answer on an AP film, in the held-out figures of films from another hospital
    (None for a card without them)."""
    table = card.get("metrics", {}).get("outside_hospital", {}).get("table")
    if not table:
        return None
    ap, pa = (table["no_finding_called_negative"][v] for v in ("AP", "PA"))
    return (f"On {ap['n']} held-out normal bedside (AP) films from another hospital, this model still called "
            f"{1 - ap['share']:.0%} abnormal (against {1 - pa['share']:.0%} of {pa['n']} normal PA films): on an AP "
            "film the heart looks larger and the shoulder blades lie over the lungs, and the model can read the "
            "kind of film as disease.")
