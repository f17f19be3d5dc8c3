"""About & privacy."""

import streamlit as st

from ui.navigation import run_inside_app_navigation

run_inside_app_navigation()

st.title("🔒 About & privacy")
st.header("Not a medical device")
st.write("The chest X-ray demo is a student project for teaching. It is **not for clinical use**. Its labels are "
         "mapped from diagnoses in public research collections, not read by radiologists. Its accuracy differs "
         "by image source, and it has never been validated on a clinical population. Do not use it to make any "
         "decision about a patient.")
st.header("What happens to your uploads")
st.markdown("""
- Files are decoded **in memory**, used for one prediction, and discarded. Nothing is written to disk, stored
  or sent anywhere. The models run on this server; no third-party service is called.
- DICOM files can carry patient identifiers. The app never shows or logs them. It shows only technical fields
  (modality, view, photometric interpretation, size). DICOM library warnings are silenced because they can
  quote element values.
- Nothing about your inputs is logged. Streamlit's usage statistics are switched off.
- Anonymise images before uploading them anyway. A hosted server is somebody else's computer.
""")
st.header("Data and licences")
st.markdown("""
**Chest X-ray.** 2,939 public frontal radiographs: ieee8023 covid-chestxray-dataset, Hannover Medical School,
Actualmed, Figure1, COVID-CXNet, TBX11K samples, COVID-QU-Ex, COVID-19 Radiography Database. Licences are mixed
(CC BY, CC BY-NC-SA/ND, research-only and unverified): demo and research use only. Also 408 films from the NIH
Clinical Center's ChestX-ray14 (Wang et al., "ChestX-ray8", CVPR 2017), "No Finding" or "Pneumonia", used to teach
and to measure that a normal film from another hospital is negative whatever its view: we acknowledge the NIH
Clinical Center as the data provider.

**Poem analyzer.** About 16,000 poems: PoemHunter (Kaggle), facjure public-domain-poetry, a Poetry Foundation
slice. Many texts are in copyright, so none of them ships with the app, except eight public-domain example poems
whose poets died more than 70 years ago.

**Car price.** 87,829 UK used-car listings (Kaggle "100,000 UK Used Car Data set"); car and not-car photos
(Stanford Cars, Roboflow damage sets, natural_images, others): research and demo use; Stanford Cars is
non-commercial.

**Backbones.** MobileNetV2 ImageNet weights (TF-slim checkpoint via JonathanCMitchell/mobilenet_v2_keras;
Apache-2.0 / MIT) and the all-MiniLM-L6-v2 sentence model (Apache-2.0).

**Shipped examples and NLTK data.** The example films (Hannover CC BY 3.0, COVID-CXNet CC BY 4.0), poems
(public domain), photos (CC BY 4.0, CC0, public domain) and the English NLTK resources are the only data in the
repository; `examples/LICENSES.md` and `nltk_data/LICENSES.md` credit each file.

Each model's card (**Models** page) lists its data, split, held-out metrics, baselines and the sha256 of
every weight file.
""")
st.header("Honest limits")
st.markdown("""
- **X-ray.** Classes correlate with the source collection. Accuracy is reported per source, and for each large
  source held out of training entirely (the Models page): a film from another hospital may fare as badly as the
  worst of those. Both networks read only the lung field, cut from the film at one common level of detail, so an export as
  JPEG, a crop or another resolution barely moves the answer (each export tried still changes it for up to 5 % of
  test films);
  a film far from every training film gets a caution, and so does an answer that changes when the page re-reads
  the film after such an export.
  In our collections most COVID-19 films are bedside (AP) films, and the model learnt some of that: on normal films
  from another hospital it still calls bedside films abnormal far more often than standing (PA) ones (the Models
  page gives the figures). An abnormal answer on a bedside film carries a caution that says so.
  "Indeterminate" is rare. The gate refuses photos and documents, and DICOM files whose modality is not a
  radiograph (CT, MR, nuclear medicine, ultrasound, ...), but it has never seen other body parts on plain films.
- **Poems.** A text with no English word is refused; a very short text or one in another language gets a year
  interval as wide as measured on texts of a few words. Year labels are mostly estimated from the author's life,
  so the year is an era guess: for a poet the model never saw, the interval spans about two centuries, as wide as
  it had to be for 80 % of held-out poets' poems. Topics come from keyword-mapped tags.
- **Cars.** These are 2020 UK asking prices for nine brands. A photo cannot tell a car's year or mileage, so a
  price from a photo alone is wide.
""")
