"""Films from another hospital: the held-out NIH split, the figures read on it, the gate's refusals before it is
asked, and the training stage's head that learns from partial labels."""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, png_bytes


# ----------------------------------------------------------------------------- the split

def test_the_outside_split_is_fixed_patient_wise_and_holds_both_views_of_both_labels(data_dir):
    from demo_core.xray.split import load_outside_manifest
    df = load_outside_manifest(data_dir)
    again = load_outside_manifest(data_dir)
    assert (df.split == again.split).all()  # fixed: the same rule gives the same split
    assert df.groupby("patient_id").split.nunique().max() == 1  # no patient on both sides
    test = df[df.split == "test"]
    for label in ("no_finding", "pneumonia"):
        for view in ("AP", "PA"):
            assert ((test.label == label) & (test.view == view)).sum() >= 25
    assert 0.30 <= (df.split == "test").mean() <= 0.40
    assert set(df.label) == {"no_finding", "pneumonia"}


# ----------------------------------------------------------------------------- the figures

def test_the_auc_is_the_share_of_pneumonia_normal_pairs_ranked_the_right_way():
    from sklearn.metrics import roc_auc_score

    from demo_core.xray.outside import rank_auc
    rng = np.random.default_rng(0)
    pos, neg = rng.normal(1, 1, 40).round(1), rng.normal(0, 1, 60).round(1)  # rounded: ties count half
    want = roc_auc_score(np.r_[np.ones(40), np.zeros(60)], np.r_[pos, neg])
    assert rank_auc(pos, neg) == pytest.approx(want)


def test_the_outside_table_counts_normal_films_called_negative_per_view():
    from demo_core.xray.outside import meets_outside_targets, outside_table, view_audit
    negative, typical = [0.9, 0.05, 0.03, 0.02], [0.2, 0.6, 0.1, 0.1]
    p = np.array([negative] * 9 + [typical] + [negative] * 5 + [typical] * 5 + [typical] * 4)
    labels = ["no_finding"] * 20 + ["pneumonia"] * 4
    views = ["PA"] * 10 + ["AP"] * 10 + ["AP Supine"] * 4
    table = outside_table(p, labels, views, unfamiliar=[False] * 23 + [True])
    assert table["no_finding_called_negative"]["PA"]["share"] == 0.9
    assert table["no_finding_called_negative"]["AP"]["share"] == 0.5
    lo, hi = table["no_finding_called_negative"]["AP"]["interval_95"]
    assert lo < 0.5 < hi
    assert table["flagged_unfamiliar"] == pytest.approx(1 / 24)
    assert meets_outside_targets(table) == {"no_finding_called_negative_AP": False,
                                            "no_finding_called_negative_PA": True, "pneumonia_auc": True}
    audit = view_audit(p, labels, views, ["nih"] * 24)
    normal = next(r for r in audit["rows"] if r["class"] == "no_finding")
    assert normal["AP"]["n"] == 10 and normal["PA"]["n"] == 10
    assert normal["gap_p_negative"] == pytest.approx(0.5 * 0.9 + 0.5 * 0.2 - (0.9 * 0.9 + 0.1 * 0.2))


def test_the_bench_prints_the_outside_table_and_the_view_audit_on_a_few_films(data_dir):
    done = subprocess.run([sys.executable, "bench/outside_hospital.py", "--films", "16"], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    for line in ("No Finding AP called negative", "No Finding PA called negative", "pneumonia vs No Finding AUC",
                 "flagged unfamiliar", "view audit", "normal AP - normal PA (nih)", "targets met"):
        assert line in out, out


def test_normal_bedside_films_from_another_hospital_come_back_negative_more_often_than_not(xray_model, data_dir):
    # A small, fixed sample of the held-out NIH films (the bench reads all of them). The heads fitted on cxr/ alone
    # called 3 of these 10 normal AP films negative, with a mean P(negative) of 0.31 (against 0.74 for the normal
    # PA films); the shipped heads call 6 of them negative.
    sys.path.insert(0, str(ROOT / "bench"))
    from outside_hospital import films

    from demo_core.xray.outside import outside_report
    report = outside_report(xray_model, *films("test", 40))
    normal_ap = report["table"]["no_finding_called_negative"]["AP"]
    assert normal_ap["n"] == 10 and normal_ap["share"] >= 0.5
    assert report["table"]["mean_p_negative"]["no_finding/AP"] >= 0.45
    assert report["table"]["gate_accepted"] == 1.0


# ----------------------------------------------------------------------------- the gate, before its network

def _dicom(pixels: np.ndarray, modality: str) -> bytes:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid
    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    ds = Dataset()
    ds.file_meta = meta
    ds.Modality, ds.Rows, ds.Columns = modality, *pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit, ds.PixelRepresentation = 7, 0
    ds.PixelData = pixels.tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


@pytest.mark.parametrize("modality, named", [("NM", "nuclear-medicine"), ("CT", "CT image"), ("MR", "MR image"),
                                             ("US", "ultrasound"), ("MG", "mammogram"), ("XA", "angiography")])
def test_a_dicom_that_says_it_is_not_a_radiograph_is_refused_by_its_modality(xray_model, chest_film, modality, named):
    from demo_core.intake import load_image
    film = load_image(chest_film).gray()
    result = xray_model.predict(_dicom(film, modality), name="IM0001")
    assert not result.is_chest_xray
    assert modality in result.refusal_reason and named in result.refusal_reason


def test_the_same_film_as_a_computed_radiograph_is_read(xray_model, chest_film):
    from demo_core.intake import load_image
    film = load_image(chest_film).gray()
    for modality in ("CR", "DX"):
        assert xray_model.predict(_dicom(film, modality), name="IM0001").is_chest_xray


def test_a_whole_body_strip_is_refused_for_its_proportions(xray_model, chest_film):
    import cv2

    from demo_core.intake import load_image
    strip = cv2.resize(load_image(chest_film).gray(), (256, 1024), interpolation=cv2.INTER_AREA)  # 1:4, as a bone scan
    result = xray_model.predict(png_bytes(strip), name="strip.png")
    assert not result.is_chest_xray and "close to square" in result.refusal_reason


def test_no_dicom_among_pydicoms_own_test_files_is_analysed_as_a_chest_film(xray_model):
    from pydicom.data import get_testdata_files

    from demo_core.errors import InputError
    from demo_core.intake import load_image
    files = get_testdata_files()  # DICOM and the other files pydicom tests with, shipped in its wheel
    assert len(files) > 50
    analysed = []
    for f in files:
        try:
            image = load_image(f)
        except InputError:
            continue  # refused with a message at intake: not analysed
        if xray_model.predict_image(image).is_chest_xray:
            analysed.append(f.rsplit("/", 1)[-1])
    assert analysed == []


# ----------------------------------------------------------------------------- the training stage's head

def test_the_partial_label_head_is_scikit_learns_logistic_regression_when_every_label_is_one_class(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "training"))
    import xray_probe
    from xray_outside import allowed_classes, fit_partial_head

    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 400)
    x = rng.normal(size=(400, 12)) + np.eye(4, 12)[y] * 1.5
    want = xray_probe.fit_head(x, y, 0.05, standardise=True)
    got = fit_partial_head(x, allowed_classes([["negative", "typical", "indeterminate", "atypical"][k] for k in y]),
                           xray_probe.film_weights(y), 0.05, standardise=True)
    np.testing.assert_allclose(got[0], want[0], atol=2e-3)
    np.testing.assert_allclose(got[1], want[1], atol=2e-3)


def test_a_pneumonia_label_teaches_abnormal_without_naming_which_abnormal_class(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "training"))
    from xray_outside import allowed_classes, fit_partial_head

    assert allowed_classes(["pneumonia"]).tolist() == [[False, True, True, True]]
    assert allowed_classes(["no_finding"]).tolist() == [[True, False, False, False]]
    rng = np.random.default_rng(1)
    # films with one feature that says "abnormal" and labels that only say "not negative"
    x = rng.normal(size=(300, 4))
    abnormal = x[:, 0] > 0
    w, b = fit_partial_head(x, allowed_classes(np.where(abnormal, "pneumonia", "no_finding")), np.ones(300), 1.0, True)
    z = x @ w + b
    p_negative = np.exp(z[:, 0]) / np.exp(z).sum(1)
    assert ((p_negative < 0.5) == abnormal).mean() > 0.95
    # nothing told it which abnormal class: the three share the abnormal mass
    assert np.ptp(z[abnormal][:, 1:].mean(0)) < 0.5


def test_ap_and_pa_films_of_a_class_weigh_the_same_and_the_head_can_be_blind_to_the_view(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "training"))
    import pandas as pd
    from xray_outside import allowed_classes, film_weights, fit_partial_head, view_directions

    labels = ["typical"] * 30 + ["negative"] * 30
    views = ["AP"] * 24 + ["PA"] * 6 + ["AP"] * 6 + ["PA"] * 24  # AP predicts typical, as in cxr/
    frame = pd.DataFrame({"collection": "cxr", "label": labels, "view": views})
    allowed = allowed_classes(labels)
    w = film_weights(frame, allowed, nih_weight=1.0)
    ap, typical = frame.view.eq("AP").to_numpy(), frame.label.eq("typical").to_numpy()
    assert w[ap & typical].sum() == pytest.approx(w[~ap & typical].sum())
    assert w.mean() == pytest.approx(1.0)
    # features: one that reads the view only, one that reads the finding
    rng = np.random.default_rng(0)
    x = np.c_[ap * 2.0 + rng.normal(0, 0.3, 60), typical * 2.0 + rng.normal(0, 0.3, 60), rng.normal(size=60)]
    removed = view_directions(x, frame, standardise=True)
    assert removed.shape[1] == 2
    hw, hb = fit_partial_head(x, allowed, w, 1.0, True, removed)
    assert abs(hw[0] - hw[0].mean()).max() < 0.1 * abs(hw[1] - hw[1].mean()).max()  # the view barely counts


# ----------------------------------------------------------------------------- the bedside caution

def test_an_abnormal_answer_on_a_bedside_film_says_what_bedside_films_from_elsewhere_showed(xray_model, chest_film):
    from demo_core.intake import load_image
    import pydicom
    film = load_image(chest_film).gray()
    assert xray_model.predict(_dicom(film, "CR"), name="IM0001").view.source == "estimated from the film"
    # the DICOM's own ViewPosition wins over the estimate
    stated = {}
    for view in ("AP", "PA"):
        ds = pydicom.dcmread(io.BytesIO(_dicom(film, "DX")))
        ds.ViewPosition = view
        buf = io.BytesIO()
        ds.save_as(buf)
        stated[view] = xray_model.predict(buf.getvalue(), name="IM0002")
        assert stated[view].view.view == view and stated[view].view.source == "DICOM ViewPosition"
    ap, pa = stated["AP"], stated["PA"]
    assert ap.label == pa.label  # the view tag moves the caution, never the answer
    if ap.label == "negative":
        assert ap.bedside_caution() is None
    else:
        assert "normal bedside (AP) films from another hospital" in ap.bedside_caution()
        assert ap.bedside_caution() in ap.cautions() and ap.bedside_caution() in ap.to_dict()["cautions"]
    assert pa.bedside_caution() is None


def test_the_view_estimate_tells_ap_from_pa_on_held_out_films(xray_model, data_dir):
    sys.path.insert(0, str(ROOT / "bench"))
    from outside_hospital import films

    from demo_core.xray.outside import read_films, view_accuracy
    outside, grays, _, _ = films("test", 40)
    estimated = read_films(xray_model, grays)["view"]
    assert view_accuracy(estimated, outside.view)["share"] >= 0.8


def test_a_refused_image_gets_its_reason_and_score_never_a_class(xray_model, car_photo):
    answer = xray_model.predict(car_photo).to_dict()
    assert answer["is_chest_xray"] is False and answer["refusal_reason"] and 0 <= answer["gate_score"] <= 1
    assert "label" not in answer and "probabilities" not in answer and "boxes" not in answer


def test_a_dicom_that_names_another_body_part_is_refused_by_it(xray_model, chest_film):
    import pydicom

    from demo_core.intake import load_image
    ds = pydicom.dcmread(io.BytesIO(_dicom(load_image(chest_film).gray(), "CR")))
    ds.BodyPartExamined = "KNEE"
    buf = io.BytesIO()
    ds.save_as(buf)
    result = xray_model.predict(buf.getvalue(), name="IM0003")
    assert not result.is_chest_xray and "knee" in result.refusal_reason
    ds.BodyPartExamined = "CHEST"
    buf = io.BytesIO()
    ds.save_as(buf)
    assert xray_model.predict(buf.getvalue(), name="IM0003").is_chest_xray
