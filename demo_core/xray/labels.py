"""The SIIM-FISABIO-RSNA study-level classes, in model output order."""

CLASSES = ["negative", "typical", "indeterminate", "atypical"]

DESCRIPTIONS = {
    "negative": "Negative for pneumonia: no opacity.",
    "typical": "Typical appearance of COVID-19: bilateral, peripheral or lower-zone multifocal opacities.",
    "indeterminate": "Indeterminate appearance: opacities that are not typical (unilateral, central, upper-zone).",
    "atypical": "Atypical appearance: lobar consolidation, cavitation, effusion, nodules.",
}
