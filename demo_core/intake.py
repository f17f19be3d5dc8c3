"""Turn uploaded bytes (or a path) into one normalized RGB image.

One entry point, :func:`load_image`, accepts what a browser upload or a
hospital export is likely to be: PNG, JPEG, WebP, BMP, TIFF and DICOM.  Every
failure becomes an :class:`~demo_core.errors.InputError` with a message meant
for the person who uploaded the file.  Nothing here writes to disk, and DICOM
element values (which can hold a patient's name) are never logged or returned.
"""

from __future__ import annotations

import contextlib
import io
import logging
import struct
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import InputError

MAX_BYTES = 50 * 1024 * 1024
MAX_PIXELS = 40_000_000  # ~6300 x 6300: larger than any radiograph, smaller than a bomb
MIN_SIDE = 16

_PIL_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "TIFF", "MPO", "GIF")
# Safe, non-identifying DICOM attributes we may show to the user.
_DICOM_SAFE_FIELDS = ("Modality", "ViewPosition", "BodyPartExamined", "PhotometricInterpretation",
                      "BitsStored", "Rows", "Columns", "NumberOfFrames")


@dataclass(frozen=True)
class LoadedImage:
    """An 8-bit RGB image plus a record of what was done to get it."""

    pixels: np.ndarray  # (H, W, 3) uint8
    source_format: str  # "PNG", "JPEG", "DICOM", ...
    steps: tuple[str, ...] = ()  # human-readable preprocessing applied
    info: dict = field(default_factory=dict)  # safe, non-identifying facts

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels, the coordinate frame of any boxes returned."""
        return int(self.pixels.shape[1]), int(self.pixels.shape[0])

    def gray(self) -> np.ndarray:
        return np.asarray(Image.fromarray(self.pixels).convert("L"))


def load_image(source: bytes | bytearray | memoryview | str | Path, *, name: str | None = None,
               max_bytes: int = MAX_BYTES, max_pixels: int = MAX_PIXELS) -> LoadedImage:
    """Decode ``source`` (raw bytes or a file path) into a :class:`LoadedImage`."""
    data, name = _read_bytes(source, name, max_bytes)
    if not data:
        raise InputError("The file is empty.")
    if _looks_like_dicom(data, name):
        return _load_dicom(data, max_pixels)
    return _load_raster(data, max_pixels)


def _read_bytes(source, name, max_bytes) -> tuple[bytes, str]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif isinstance(source, (str, Path)):
        path = Path(source)
        name = name or path.name
        try:
            if not path.is_file():
                raise InputError(f"No such file: {path.name}")
            if path.stat().st_size > max_bytes:
                raise InputError(_too_big_message(path.stat().st_size, max_bytes))
            data = path.read_bytes()
        except OSError as exc:
            raise InputError(f"Cannot read {path.name}: {exc.strerror or 'I/O error'}.") from None
    else:
        raise InputError("Expected image bytes or a file path.")
    if len(data) > max_bytes:
        raise InputError(_too_big_message(len(data), max_bytes))
    return data, (name or "")


def _too_big_message(size: int, limit: int) -> str:
    return f"The file is {size / 2**20:.1f} MB; the limit is {limit / 2**20:.0f} MB."


def _looks_like_dicom(data: bytes, name: str) -> bool:
    return (data[128:132] == b"DICM" or name.lower().endswith((".dcm", ".dicom"))
            or _looks_like_headerless_dicom(data))


def _looks_like_headerless_dicom(data: bytes) -> bool:
    """An old ACR-NEMA style file, or a DICOM written without preamble and file meta: it starts straight
    with a group 0000 or 0008 element in little endian. No raster format starts like that (PNG, JPEG,
    BMP, TIFF, WebP all have letters or 0x89 / 0xFF first)."""
    if len(data) < 12:
        return False
    group = int.from_bytes(data[0:2], "little")
    if group not in (0x0000, 0x0008):
        return False
    vr = data[4:6]
    if vr.isalpha() and vr.isupper():  # explicit VR
        return True
    return int.from_bytes(data[4:8], "little") < len(data)  # implicit VR: a plausible value length


def _check_pixels(width: int, height: int, max_pixels: int) -> None:
    if width <= 0 or height <= 0:
        raise InputError("The image has no pixels.")
    if width * height > max_pixels:
        raise InputError(f"The image is {width} x {height} pixels, more than the "
                         f"{max_pixels / 1e6:.0f} megapixels this demo accepts. Please downscale it.")
    if min(width, height) < MIN_SIDE:
        raise InputError(f"The image is only {width} x {height} pixels; at least "
                         f"{MIN_SIDE} pixels per side are needed.")


# --------------------------------------------------------------------------- raster

def _load_raster(data: bytes, max_pixels: int) -> LoadedImage:
    steps: list[str] = []
    with warnings.catch_warnings():
        # Pillow only warns between 1x and 2x its own limit; a warning must not let a bomb through.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(data))
            fmt = img.format or "image"
            if fmt not in _PIL_FORMATS:
                raise InputError(f"{fmt} files are not supported; please upload PNG, JPEG, WebP, "
                                 "BMP, TIFF or DICOM.")
            # The size comes from the header: refuse before decoding a single pixel.
            _check_pixels(img.width, img.height, max_pixels)
            n_frames = getattr(img, "n_frames", 1)
            if n_frames > 1:
                img.seek(0)
                steps.append(f"first of {n_frames} frames used")
            img.load()
        except InputError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise InputError("The image's header declares far more pixels than this demo accepts "
                             f"({max_pixels / 1e6:.0f} megapixels); it was refused without decoding.") from None
        except UnidentifiedImageError:
            raise InputError("This file is not an image we can read (PNG, JPEG, WebP, BMP, TIFF or "
                             "DICOM).") from None
        except (OSError, SyntaxError, ValueError, EOFError, MemoryError, TypeError, IndexError,
                KeyError, struct.error, ZeroDivisionError, RuntimeError):
            raise InputError("The image file is damaged or truncated and cannot be decoded.") from None
        try:
            transposed = ImageOps.exif_transpose(img)
        except Exception:  # a malformed EXIF block is no reason to refuse the pixels
            transposed = img
        if transposed is not img and transposed.size != img.size or _exif_orientation(img) not in (None, 1):
            steps.append("EXIF orientation applied")
        img = transposed
        rgb = _to_rgb(img, steps)
    info = {"format": fmt, "original_mode": img.mode, "width": rgb.shape[1], "height": rgb.shape[0]}
    return LoadedImage(rgb, fmt, tuple(steps), info)


def _exif_orientation(img: Image.Image) -> int | None:
    try:
        return img.getexif().get(0x0112)
    except Exception:
        return None


def _to_rgb(img: Image.Image, steps: list[str]) -> np.ndarray:
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        steps.append(f"{'16-bit' if mode.startswith('I;16') else mode + '-mode'} image "
                     "scaled to 8-bit (0.5-99.5 percentile window)")
        return _gray_to_rgb(_window_to_uint8(arr))
    if mode == "P" or mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        if mode == "P":
            steps.append("palette image converted to RGB")
        img = img.convert("RGBA")
        if np.asarray(img)[..., 3].min() < 255:
            steps.append("transparency flattened onto white")
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img)
    elif mode == "CMYK":
        steps.append("CMYK converted to RGB")
    elif mode not in ("RGB", "L"):
        steps.append(f"{mode} converted to RGB")
    return np.ascontiguousarray(np.asarray(img.convert("RGB"), dtype=np.uint8))


def _window_to_uint8(arr: np.ndarray, lo_pct: float = 0.5, hi_pct: float = 99.5) -> np.ndarray:
    finite = arr[np.isfinite(arr)]
    if finite.size == 0:
        raise InputError("The image holds no valid pixel values.")
    lo, hi = np.percentile(finite, [lo_pct, hi_pct])
    if hi <= lo:
        lo, hi = float(finite.min()), float(finite.max())
    if hi <= lo:
        return np.zeros(arr.shape, dtype=np.uint8)
    scaled = (np.nan_to_num(arr, nan=lo) - lo) / (hi - lo)
    return (np.clip(scaled, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.repeat(gray[..., None], 3, axis=2))


# --------------------------------------------------------------------------- DICOM

@contextlib.contextmanager
def _quiet_pydicom():
    """Silence pydicom: its warnings and log lines can quote element values (names, ids)."""
    logger = logging.getLogger("pydicom")
    previous = logger.level, logger.propagate
    logger.setLevel(logging.CRITICAL + 1)
    logger.propagate = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(previous[0])
        logger.propagate = previous[1]


def _load_dicom(data: bytes, max_pixels: int) -> LoadedImage:
    try:
        import pydicom
        from pydicom.pixels import apply_modality_lut, apply_voi_lut
    except ImportError:  # pragma: no cover - pydicom is in requirements.txt
        raise InputError("DICOM support is not installed on this server.") from None

    steps: list[str] = []
    with _quiet_pydicom():
        try:
            ds = pydicom.dcmread(io.BytesIO(data), force=True)
        except Exception:
            raise InputError("This DICOM file is damaged and cannot be read.") from None
        if _without_transfer_syntax(ds):
            _assume_transfer_syntax(ds)
            steps.append("old-style (ACR-NEMA) file without a DICOM header: read as uncompressed "
                         + ("implicit" if ds.original_encoding[0] else "explicit") + " VR little endian")
        try:
            if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
                raise InputError("This DICOM file holds no image (no pixel data); it may be a "
                                 "structured report or a presentation state.")
            rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
            _check_pixels(cols, rows, max_pixels)
            n_frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
            photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
            arr = _decode_first_frame(ds, n_frames)
        except InputError:
            raise
        except Exception:
            raise InputError("This DICOM file's header is damaged or inconsistent; its image "
                             "cannot be decoded.") from None
        if n_frames > 1:
            steps.append(f"first of {n_frames} frames used")

        try:
            if photometric.startswith("MONOCHROME"):
                rgb, more = _dicom_gray(ds, arr, photometric, apply_modality_lut, apply_voi_lut)
                steps += more
            else:
                rgb = _dicom_color(ds, arr, photometric, steps)
        except InputError:
            raise
        except Exception:
            raise InputError("This DICOM file's pixel values could not be interpreted.") from None
        info = {"format": "DICOM"}
        for key in _DICOM_SAFE_FIELDS:
            value = ds.get(key)
            if value is not None and str(value).strip():
                info[key] = str(value)
        ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        if ts is not None:
            info["TransferSyntax"] = getattr(ts, "name", str(ts))
    info["width"], info["height"] = int(rgb.shape[1]), int(rgb.shape[0])
    return LoadedImage(rgb, "DICOM", tuple(steps), info)


def _without_transfer_syntax(ds) -> bool:
    return getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None) is None


def _assume_transfer_syntax(ds) -> None:
    """A file with no file meta (ACR-NEMA, or a bare dataset) holds uncompressed pixels; pydicom found the
    encoding while parsing (``force=True``), and says it in ``original_encoding``."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import (
        ExplicitVRBigEndian,
        ExplicitVRLittleEndian,
        ImplicitVRLittleEndian,
    )
    implicit, little = ds.original_encoding
    implicit = True if implicit is None else implicit
    little = True if little is None else little
    if not isinstance(getattr(ds, "file_meta", None), FileMetaDataset):
        ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = (ImplicitVRLittleEndian if implicit else
                                      ExplicitVRLittleEndian if little else ExplicitVRBigEndian)


def _decode_first_frame(ds, n_frames: int) -> np.ndarray:
    from pydicom.pixels import pixel_array

    ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    try:
        arr = pixel_array(ds, index=0) if n_frames > 1 else ds.pixel_array
    except (NotImplementedError, RuntimeError) as exc:
        if ts is not None and getattr(ts, "is_compressed", False):
            compression = getattr(ts, "name", ts)
            if _can_decode(ts):  # pydicom says RuntimeError for a broken stream as well as for a missing decoder
                raise InputError(f"This DICOM image's compressed pixel data ('{compression}') is "
                                 "damaged or incomplete and could not be decoded.") from None
            raise InputError(f"This DICOM image is compressed as '{compression}', which "
                             "this installation cannot decode. Please export it uncompressed "
                             "or as PNG.") from None
        raise InputError("This DICOM file's pixel data cannot be decoded.") from exc
    except InputError:
        raise
    except Exception:
        raise InputError("This DICOM file's pixel data is damaged or incomplete.") from None
    arr = np.asarray(arr)
    if arr.ndim == 4 or (arr.ndim == 3 and n_frames > 1 and arr.shape[0] == n_frames):
        arr = arr[0]
    if arr.ndim not in (2, 3) or arr.size == 0:
        raise InputError("This DICOM file's pixel data has an unexpected shape.")
    return arr


def _can_decode(transfer_syntax) -> bool:
    """Whether an installed plugin decodes this transfer syntax (pylibjpeg covers JPEG, JPEG-LS, JPEG 2000, RLE)."""
    try:
        from pydicom.pixels import get_decoder
        return bool(get_decoder(transfer_syntax).is_available)
    except Exception:  # unknown or private transfer syntax: no decoder
        return False


def _dicom_gray(ds, arr, photometric, apply_modality_lut, apply_voi_lut):
    steps = []
    if arr.ndim == 3:
        arr = arr[..., 0]
    values = arr
    if "RescaleSlope" in ds or "RescaleIntercept" in ds or "ModalityLUTSequence" in ds:
        values = apply_modality_lut(arr, ds)
        steps.append("DICOM modality rescale (slope/intercept) applied")
    has_window = "WindowCenter" in ds and "WindowWidth" in ds
    if "VOILUTSequence" in ds:
        lut = ds.VOILUTSequence[0]
        mapped = np.asarray(apply_voi_lut(values, ds, index=0), dtype=np.float64)
        table = np.asarray(lut.LUTData, dtype=np.float64).ravel()
        lo, hi = float(table.min()), float(table.max())
        gray = np.zeros(mapped.shape, np.uint8) if hi <= lo else \
            (np.clip((mapped - lo) / (hi - lo), 0, 1) * 255.0 + 0.5).astype(np.uint8)
        steps.append("DICOM VOI LUT applied")
    elif has_window and _first(ds.WindowWidth) > 0:
        values = np.asarray(values, dtype=np.float64)
        center, width = _first(ds.WindowCenter), _first(ds.WindowWidth)
        function = str(ds.get("VOILUTFunction", "LINEAR")).strip().upper()
        # DICOM PS3.3 C.11.2.1.2: the window maps linearly (or by a sigmoid) onto the full output range.
        if function == "SIGMOID":
            scaled = 1.0 / (1.0 + np.exp(-4.0 * (values - center) / width))
        elif function == "LINEAR_EXACT":
            scaled = (values - center) / width + 0.5
        else:
            scaled = (values - (center - 0.5)) / max(width - 1.0, 1.0) + 0.5
        gray = (np.clip(scaled, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        steps.append(f"DICOM window applied (center {center:g}, width {width:g})")
    else:
        gray = _window_to_uint8(np.asarray(values, dtype=np.float64))
        steps.append("no window in the file: 0.5-99.5 percentile window applied")
    if photometric == "MONOCHROME1":
        gray = 255 - gray
        steps.append("MONOCHROME1 inverted (bright bones, dark air)")
    return _gray_to_rgb(gray), steps


def _dicom_color(ds, arr, photometric, steps):
    from pydicom.pixels import convert_color_space

    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise InputError("This DICOM colour image has an unexpected layout.")
    if photometric.startswith("YBR") and photometric != "YBR_FULL_422" or photometric == "YBR_FULL_422":
        arr = convert_color_space(arr, photometric, "RGB")
        steps.append(f"{photometric} converted to RGB")
    if arr.dtype != np.uint8:
        arr = _window_to_uint8(np.asarray(arr, dtype=np.float64).mean(axis=-1))
        return _gray_to_rgb(arr)
    return np.ascontiguousarray(arr)


def _first(value) -> float:
    try:
        return float(value[0])
    except (TypeError, IndexError, KeyError):
        return float(value)
