"""What is refused before the gate's network is asked: files that say, or show, they are not a chest film.

The gate (a logistic regression on the probe's ImageNet features) learnt films against photos, pages and
generated images; it never saw another modality. A nuclear-medicine whole-body bone scan (a 1:4 strip) passed
it. So a DICOM's own Modality is read first, and an image far from a film's proportions is refused whatever
its pixels look like.
"""

from __future__ import annotations

# Projection radiographs: computed and digital radiography (and vendors' "DR"), "RG", and "OT" (other), which
# secondary captures and many exports carry. Everything else (CT, MR, NM, PT, US, MG, XA, RF, ...) is not a chest
# radiograph as the model learnt them; a DICOM with no Modality is judged by its pixels alone.
RADIOGRAPH_MODALITIES = frozenset({"CR", "DX", "DR", "RG", "OT"})
MODALITY_NAMES = {"CT": "a CT image", "MR": "an MR image", "NM": "a nuclear-medicine image", "PT": "a PET image",
                  "US": "an ultrasound image", "MG": "a mammogram", "XA": "an angiography image",
                  "RF": "a fluoroscopy image", "IO": "an intra-oral dental radiograph",
                  "PX": "a panoramic dental radiograph", "BMD": "a bone densitometry scan",
                  "OP": "an ophthalmic photograph", "XC": "a photograph", "SM": "a microscopy slide",
                  "ES": "an endoscopy image", "OCT": "an OCT scan", "SEG": "a segmentation", "RTIMAGE": "a "
                  "radiotherapy portal image", "RTDOSE": "a radiotherapy dose map"}
# BodyPartExamined values (DICOM's defined terms and common variants) that say the film is of another part.
OTHER_BODY_PARTS = frozenset({
    "SKULL", "HEAD", "BRAIN", "FACE", "ORBIT", "SINUS", "JAW", "TMJ", "NECK", "CSPINE", "TSPINE", "LSPINE", "SSPINE",
    "LSSPINE", "SPINE", "COCCYX", "SACRUM", "ABDOMEN", "PELVIS", "HIP", "SHOULDER", "HUMERUS", "ARM", "ELBOW",
    "FOREARM", "WRIST", "HAND", "FINGER", "LEG", "FEMUR", "KNEE", "TIBIA", "FIBULA", "ANKLE", "FOOT", "HEEL", "TOE",
    "EXTREMITY", "BREAST", "KIDNEY", "BLADDER"})
# The widest film in the training films is 2.2:1 (a paper's two-panel figure); a whole-body strip is 4:1.
MAX_ASPECT_RATIO = 3.0


def refusal_before_gate(info: dict, size: tuple[int, int]) -> str | None:
    """Why an image is not a chest film, from what its file says (``LoadedImage.info``: its Modality, or a
    BodyPartExamined of another part) and its proportions; None when nothing does."""
    modality = str(info.get("Modality", "")).strip().upper()
    if modality and modality not in RADIOGRAPH_MODALITIES:
        what = MODALITY_NAMES.get(modality, "not a projection radiograph")
        return f"This DICOM file says its modality is {modality} ({what}); the model reads chest radiographs only."
    part = str(info.get("BodyPartExamined", "")).strip().upper().replace(" ", "")
    if part in OTHER_BODY_PARTS:
        return (f"This DICOM file says the body part examined is {part.lower()}; the model reads frontal chest "
                "radiographs only.")
    w, h = size
    if max(w, h) > MAX_ASPECT_RATIO * max(1, min(w, h)):
        return (f"This image is {w} × {h} px, {max(w, h) / max(1, min(w, h)):.1f} times as long as it is wide; a "
                "chest film is close to square.")
    return None
