"""Image intake: every kind of upload either becomes an 8-bit RGB image or a clear InputError."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from demo_core.errors import InputError
from demo_core.examples import as_dicom
from demo_core.intake import LoadedImage, load_image
from conftest import png_bytes

GRADIENT = np.tile(np.arange(256, dtype=np.uint8), (64, 1))


def test_png_becomes_rgb_uint8():
    img = load_image(png_bytes(GRADIENT))
    assert isinstance(img, LoadedImage)
    assert img.pixels.dtype == np.uint8 and img.pixels.shape == (64, 256, 3)
    assert img.size == (256, 64) and img.source_format == "PNG"


@pytest.mark.parametrize("data, message", [
    (b"", "empty"),
    (np.random.default_rng(0).bytes(5000), "not an image"),
    (b"hello, I am a text file pretending to be a PNG\n" * 20, "not an image"),
])
def test_garbage_is_refused_with_a_message(data, message):
    with pytest.raises(InputError, match=message):
        load_image(data, name="upload.png")


def test_truncated_jpeg_is_refused():
    jpeg = png_bytes(np.random.default_rng(1).integers(0, 255, (300, 300, 3), dtype=np.uint8), format="JPEG")
    with pytest.raises(InputError, match="damaged or truncated"):
        load_image(jpeg[: len(jpeg) // 2])


def test_sixteen_bit_png_is_windowed_to_eight_bits():
    arr = (np.linspace(0, 4095, 128 * 128).reshape(128, 128)).astype(np.uint16)
    img = load_image(png_bytes(arr))  # uint16 array -> 16-bit grayscale PNG
    assert img.pixels.dtype == np.uint8
    assert img.pixels[..., 0].min() == 0 and img.pixels[..., 0].max() == 255
    assert any("16-bit" in s for s in img.steps)


def test_palette_and_rgba_are_converted():
    pal = Image.fromarray(GRADIENT).convert("P")
    buf = io.BytesIO(); pal.save(buf, format="PNG")
    assert load_image(buf.getvalue()).pixels.shape == (64, 256, 3)
    rgba = np.zeros((32, 32, 4), np.uint8)
    rgba[..., 3] = 0  # fully transparent: flattened onto white
    img = load_image(png_bytes(rgba))
    assert (img.pixels == 255).all()


def test_cmyk_jpeg_is_converted():
    buf = io.BytesIO()
    Image.new("CMYK", (40, 30), (0, 255, 255, 0)).save(buf, format="JPEG")
    img = load_image(buf.getvalue())
    assert img.pixels.shape == (30, 40, 3)
    assert img.pixels[..., 0].mean() > 200 and img.pixels[..., 1].mean() < 60  # red
    assert any("CMYK" in s for s in img.steps)


def test_exif_rotation_is_applied():
    arr = np.zeros((20, 60, 3), np.uint8)  # wide image...
    im = Image.fromarray(arr)
    exif = im.getexif()
    exif[0x0112] = 6  # ...stored as "rotate 90° clockwise to display"
    buf = io.BytesIO(); im.save(buf, format="JPEG", exif=exif)
    img = load_image(buf.getvalue())
    assert img.size == (20, 60)
    assert "EXIF orientation applied" in img.steps


def test_decompression_bomb_is_refused_from_the_header():
    # A valid PNG header claiming 100,000 x 100,000 pixels; refused before any decoding.
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    bomb = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b"")
    with pytest.raises(InputError, match="pixels"):
        load_image(bomb)


def test_byte_limit():
    with pytest.raises(InputError, match="limit"):
        load_image(b"\0" * 2000, max_bytes=1000)


def test_tiny_image_is_refused():
    with pytest.raises(InputError, match="at least"):
        load_image(png_bytes(np.zeros((4, 4), np.uint8)))


def test_missing_path_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="No such file"):
        load_image(tmp_path / "missing.png")


@pytest.mark.parametrize("fmt", ["WEBP", "BMP", "TIFF"])
def test_other_formats(fmt):
    img = load_image(png_bytes(GRADIENT, format=fmt))
    assert img.pixels.shape == (64, 256, 3)


# ----------------------------------------------------------------------------- DICOM

def gradient_dataset():
    """The gradient film as a pydicom dataset, to edit into the case a test needs."""
    import pydicom
    return pydicom.dcmread(io.BytesIO(as_dicom(GRADIENT)))


def saved(ds) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def test_dicom_monochrome2_matches_the_png():
    img = load_image(as_dicom(GRADIENT), name="film.dcm")
    assert img.source_format == "DICOM"
    assert np.abs(img.pixels[..., 0].astype(int) - GRADIENT).max() <= 3


def test_dicom_monochrome1_is_inverted():
    mono1 = load_image(as_dicom(GRADIENT, monochrome1=True))
    mono2 = load_image(as_dicom(GRADIENT))
    assert np.abs(mono1.pixels.astype(int) - mono2.pixels.astype(int)).max() <= 3
    assert any("MONOCHROME1" in s for s in mono1.steps)


def test_dicom_window_is_applied():
    img = load_image(as_dicom(GRADIENT, window=(2048, 2048)))  # center/width in stored 12-bit units
    assert any("window" in s for s in img.steps)
    g = img.pixels[..., 0]
    assert g[:, :64].max() == 0 and g[:, -40:].min() == 255  # values outside the window clip


def test_dicom_without_pixels_is_refused():
    ds = gradient_dataset()
    del ds.PixelData
    with pytest.raises(InputError, match="no image"):
        load_image(saved(ds))


def test_dicom_info_never_holds_identifiers():
    img = load_image(as_dicom(GRADIENT, patient_name="Doe^Jane", patient_id="ID-424242"))
    text = repr(img.info) + repr(img.steps)
    assert "Doe" not in text and "424242" not in text


def test_multiframe_dicom_uses_the_first_frame():
    ds = gradient_dataset()
    frames = np.stack([GRADIENT, 255 - GRADIENT]).astype(np.uint16) * 16
    ds.NumberOfFrames = 2
    ds.PixelData = frames.tobytes()
    img = load_image(saved(ds))
    assert "first of 2 frames used" in img.steps
    assert img.pixels[0, 0, 0] < img.pixels[0, -1, 0]


def test_damaged_dicom_is_refused():
    data = as_dicom(GRADIENT)
    with pytest.raises(InputError):
        load_image(data[:400], name="x.dcm")


@pytest.mark.parametrize("syntax", ["RLELossless", "JPEG2000Lossless"])
def test_compressed_dicom_gives_the_same_pixels(syntax):
    import pydicom.uid
    ds = gradient_dataset()
    ds.compress(getattr(pydicom.uid, syntax))  # what many PACS exports look like
    img = load_image(saved(ds), name="film.dcm")
    assert np.array_equal(img.pixels, load_image(as_dicom(GRADIENT)).pixels)
    assert img.info["TransferSyntax"] == getattr(pydicom.uid, syntax).name


def test_damaged_compressed_dicom_says_damaged_not_unsupported():
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGLosslessSV1
    ds = gradient_dataset()
    ds.file_meta.TransferSyntaxUID = JPEGLosslessSV1  # decodable here (pylibjpeg), but the stream is cut short
    ds.PixelData = encapsulate([b"\xff\xd8\xff\xc3" + b"\0" * 64 + b"\xff\xd9"])
    ds["PixelData"].VR = "OB"
    with pytest.raises(InputError, match="damaged or incomplete"):
        load_image(saved(ds))


def acr_nema(ds, *, implicit: bool = True) -> bytes:
    """The dataset as an old ACR-NEMA style file: no preamble, no 'DICM', no file meta header."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset
    del ds.file_meta
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, implicit
    write_dataset(fp, ds)
    return fp.getvalue()


@pytest.mark.parametrize("implicit", [True, False])
def test_old_style_dicom_without_header_or_extension_opens(implicit):
    # an old archive's Fuji CR export, named as PACS exports are: no extension at all
    ds = gradient_dataset()
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.PixelData = (4095 - GRADIENT.astype(np.uint16) * 16).tobytes()
    data = acr_nema(ds, implicit=implicit)
    assert data[128:132] != b"DICM"
    img = load_image(data, name="IM000001")
    assert img.source_format == "DICOM"
    assert np.abs(img.pixels[..., 0].astype(int) - GRADIENT).max() <= 3  # MONOCHROME1 still inverted
    assert any("ACR-NEMA" in s for s in img.steps)


def test_old_style_dicom_keeps_identifiers_private():
    ds = gradient_dataset()
    ds.PatientName, ds.PatientID = "Doe^Jane", "ID-424242"
    img = load_image(acr_nema(ds), name="IM000002")
    text = repr(img.info) + repr(img.steps)
    assert "Doe" not in text and "424242" not in text


def test_truly_broken_old_style_dicom_still_gets_a_clear_error():
    ds = gradient_dataset()
    with pytest.raises(InputError, match="DICOM"):
        load_image(acr_nema(ds)[:300], name="IM000003")
