"""Example inputs for the app.

The pack in ``examples/`` ships with the repository: a few licence-clean films, public-domain poems
and car photos (``examples/LICENSES.md``; rebuilt by ``training/build_examples.py``), so the hosted
app, which has no data directory, still offers one-click examples. When the data directory is
present it adds more, never replacing the pack's.
"""

from __future__ import annotations

import functools
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .poem.split import split_of
from .settings import PROJECT_ROOT, data_dir

PACK_DIR = PROJECT_ROOT / "examples"
PACK_FILE = "pack.json"


@dataclass(frozen=True)
class Example:
    label: str
    path: Path
    note: str = ""
    licence: str = ""


@dataclass(frozen=True)
class CarDetails:
    """A car described by its details only (no photo): what a visitor would type."""

    label: str
    details: dict = field(hash=False)


def held_out_poem(poem_id: str) -> bool:
    """True for poems in the poem model's test split (the model never saw them)."""
    return split_of(poem_id) == "test"


@functools.lru_cache(maxsize=1)
def _pack() -> dict:
    path = PACK_DIR / PACK_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _data_rows(relative: str):
    """(data dir, rows of the CSV at ``relative`` as dicts of strings), or None without a data directory."""
    d = data_dir()
    if d is None or not (d / relative).is_file():
        return None
    import pandas as pd  # its parser has no field-size limit (poem texts are long), unlike csv's global one
    return d, pd.read_csv(d / relative, dtype=str, keep_default_na=False).to_dict("records")


@functools.lru_cache(maxsize=1)
def xray_examples() -> tuple[Example, ...]:
    """The pack's films (CC BY, test split) first; with a data directory, one film per class more."""
    picks = [Example(f"{f['label'].capitalize()}: {f['note']}, film {Path(f['file']).stem.split('_')[1]}",
                     PACK_DIR / f["file"], f["note"], f["licence"]) for f in _pack().get("xray", [])]
    found = _data_rows("cxr/manifest.csv")
    if found is None:
        return tuple(picks)
    d, rows = found
    wanted = [("typical", "covidquex", "COVID-19 with expert opacity annotation (COVID-QU-Ex)"),
              ("negative", "covidquex", "No finding (COVID-QU-Ex)"),
              ("atypical", "covidquex", "Non-COVID pneumonia (COVID-QU-Ex)"),
              ("indeterminate", "ieee8023", "Non-COVID viral pneumonia (ieee8023)")]
    for label, source, note in wanted:
        for r in rows[::-1]:  # from the end: less likely to be the first rows anyone trains on
            if r["label"] == label and Path(r["file"]).name.startswith(source + "_") and \
                    (label != "typical" or r["boxes"] != "[]"):
                picks.append(Example(f"{label.capitalize()}: {note}", d / "cxr" / r["file"], note,
                                     r["license"]))
                break
    return tuple(picks)


@functools.lru_cache(maxsize=1)
def poem_examples() -> tuple[dict, ...]:
    """Held-out public-domain poems: the pack's, then (with a data directory) more from the same source."""
    out = list(_pack().get("poems", []))
    found = _data_rows("poems/poems.csv")
    if found is not None:
        shipped = {(p["title"], p["author"]) for p in out}
        more = [{"title": r["title"], "text": r["text"], "author": r["author"], "year": r["year"],
                 "topics": r["topics"].replace("|", ", ")}
                for r in found[1] if r["id"].startswith("pdp_") and r["topics"] and r["year"]
                and 200 < len(r["text"]) < 1500 and held_out_poem(r["id"])
                and (r["title"], r["author"]) not in shipped]
        rng = np.random.default_rng(3)
        idx = rng.choice(len(more), size=min(12, len(more)), replace=False) if more else []
        out += [more[i] for i in idx]
    return tuple(out)


@functools.lru_cache(maxsize=1)
def car_photo_examples() -> tuple[Example, ...]:
    """The pack's photos (CC BY 4.0 listings, public-domain not-cars); a data directory adds UK brands."""
    picks = [Example(p["label"], PACK_DIR / p["file"], licence=p["licence"]) for p in _pack().get("car_photos", [])]
    found = _data_rows("cars/images.csv")
    if found is None:
        return tuple(picks)
    d, rows = found
    more = []
    for want in ("BMW", "Audi", "Ford", "Mercedes-Benz"):
        for r in rows:
            if r["is_car"] == "1" and r["brand"] == want and r["file"].split("/")[-1].startswith("sc_"):
                more.append(Example(f"{want} {r['model']} {r['year']}".strip(), d / "cars" / r["file"],
                                    licence=r["license"]))
                break
    return tuple(more + picks)  # a listed brand first: it shows the make suggestion


def car_details_examples() -> tuple[CarDetails, ...]:
    """Cars by their details alone (the pack's), for a price without any photo."""
    return tuple(CarDetails(c["label"], {k: v for k, v in c.items() if k != "label"})
                 for c in _pack().get("car_details", []))


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
