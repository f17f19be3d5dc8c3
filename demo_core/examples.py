"""Example inputs for the app, read from the data directory at run time (never shipped).

Every function returns an empty result when the data directory is absent, so
the app still works on a deployment without it.
"""

from __future__ import annotations

import csv
import functools
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .settings import data_dir


@dataclass(frozen=True)
class Example:
    label: str
    path: Path
    note: str = ""


def _manifest_rows(relative: str) -> tuple[Path, list[dict]] | None:
    """(data dir, rows of the CSV at ``relative``), or None without a data directory."""
    d = data_dir()
    if d is None or not (d / relative).is_file():
        return None
    csv.field_size_limit(10**9)  # poem texts are long
    with open(d / relative, newline="", encoding="utf-8") as f:
        return d, list(csv.DictReader(f))


@functools.lru_cache(maxsize=1)
def xray_examples() -> tuple[Example, ...]:
    """One film per class, from sources whose licence allows showing them (CC BY first)."""
    found = _manifest_rows("cxr/manifest.csv")
    if found is None:
        return ()
    d, rows = found
    picks: list[Example] = []
    wanted = [("typical", "hannover", "COVID-19, Hannover Medical School (CC BY 3.0)"),
              ("typical", "covidquex", "COVID-19 with expert opacity annotation (COVID-QU-Ex)"),
              ("negative", "covidquex", "No finding (COVID-QU-Ex)"),
              ("atypical", "covidquex", "Non-COVID pneumonia (COVID-QU-Ex)"),
              ("indeterminate", "ieee8023", "Non-COVID viral pneumonia (ieee8023)")]
    for label, source, note in wanted:
        for r in rows[::-1]:  # from the end: less likely to be the first rows anyone trains on
            if r["label"] == label and Path(r["file"]).name.startswith(source + "_") and \
                    (label != "typical" or source != "covidquex" or r["boxes"] != "[]"):
                picks.append(Example(f"{label.capitalize()}: {note}", d / "cxr" / r["file"], note))
                break
    return tuple(picks)


def _held_out_poem(poem_id: str) -> bool:
    """True for poems in the test split of training/train_poem.py (the model never saw them)."""
    import hashlib
    return int(hashlib.sha1(poem_id.encode()).hexdigest(), 16) % 100 < 15


@functools.lru_cache(maxsize=1)
def poem_examples() -> tuple[dict, ...]:
    """Held-out public-domain poems (facjure/public-domain-poetry rows) with topics and a year."""
    found = _manifest_rows("poems/poems.csv")
    if found is None:
        return ()
    out = [{"title": r["title"], "text": r["text"], "author": r["author"], "year": r["year"],
            "topics": r["topics"].replace("|", ", ")}
           for r in found[1] if r["id"].startswith("pdp_") and r["topics"] and r["year"]
           and 200 < len(r["text"]) < 1500 and _held_out_poem(r["id"])]
    rng = np.random.default_rng(3)
    idx = rng.choice(len(out), size=min(12, len(out)), replace=False) if out else []
    return tuple(out[i] for i in idx)


@functools.lru_cache(maxsize=1)
def car_photo_examples() -> tuple[Example, ...]:
    found = _manifest_rows("cars/images.csv")
    if found is None:
        return ()
    d, rows = found
    picks = []
    for want in ("BMW", "Audi", "Ford", "Mercedes-Benz"):
        for r in rows:
            if r["is_car"] == "1" and r["brand"] == want and r["file"].split("/")[-1].startswith("sc_"):
                picks.append(Example(f"{want} {r['model']} {r['year']}".strip(), d / "cars" / r["file"]))
                break
    for r in rows:
        if r["is_car"] == "0" and "int_" in r["file"]:
            picks.append(Example("Not a car exterior: " + r["content"][:40], d / "cars" / r["file"]))
            break
    return tuple(picks)


def as_dicom(gray: np.ndarray, *, monochrome1: bool = False, window: tuple[float, float] | None = None,
             patient_name: str = "Anonymous", patient_id: str = "EXAMPLE") -> bytes:
    """Wrap an 8-bit grayscale image in a minimal DICOM file, in memory (examples and tests)."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=["demo", patient_id])
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.PatientName, ds.PatientID, ds.Modality = patient_name, patient_id, "DX"
    pixels = gray.astype(np.uint16) * 16  # 12-bit range, as detectors write
    if monochrome1:
        pixels = 4095 - pixels
    ds.PhotometricInterpretation = "MONOCHROME1" if monochrome1 else "MONOCHROME2"
    ds.Rows, ds.Columns = gray.shape
    ds.SamplesPerPixel, ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 1, 16, 12, 11, 0
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    ds.PixelData = pixels.tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()
