"""Find NLTK resources locally; say clearly which ones are missing.

Lookup order: ``$NLTK_DATA``, ``nltk_data/`` in the repository (the English
punkt_tab, stop words and tagger, shipped), ``$DEMO_DATA_DIR/nltk_data``, then
``.nltk_data/`` in the project, where WordNet is assembled from Debian's
``wordnet-base`` package (``/usr/share/wordnet``). Nothing is ever downloaded.
"""

from __future__ import annotations

import gzip
import logging
import re
import shutil
import threading
from pathlib import Path

from ..settings import LOCAL_NLTK_DATA, nltk_data_dirs

log = logging.getLogger(__name__)

RESOURCES = {
    "punkt_tab": ("tokenizers/punkt_tab/english/", "word tokenization"),
    "stopwords": ("corpora/stopwords/english", "stop-word removal"),
    "averaged_perceptron_tagger_eng": ("taggers/averaged_perceptron_tagger_eng/", "part-of-speech tags for lemmas"),
    "wordnet": ("corpora/wordnet/lexnames", "lemmatization"),
}
DEBIAN_WORDNET = Path("/usr/share/wordnet")
_lock = threading.Lock()
_configured = False


def local_wordnet_dir() -> Path:
    return LOCAL_NLTK_DATA


def build_wordnet_from_debian(target_root: Path | None = None, source: Path = DEBIAN_WORDNET) -> Path | None:
    """Copy Debian's WordNet 3.0 into an NLTK layout and add the ``lexnames`` file NLTK needs."""
    target_root = target_root or local_wordnet_dir()
    target = target_root / "corpora" / "wordnet"
    if (target / "lexnames").is_file():
        return target
    if not (source / "data.noun").is_file():
        return None
    try:
        target.mkdir(parents=True, exist_ok=True)
        for f in source.iterdir():
            if f.is_file():
                shutil.copy(f, target / f.name)
        (target / "lexnames").write_text(_lexnames())
    except OSError as exc:
        log.warning("could not assemble WordNet in %s: %s", target, exc)
        return None
    return target


def _lexnames() -> str:
    """The 45 lexicographer files, as in WordNet's lexnames(5WN) manual page."""
    man = Path("/usr/share/man/man5/lexnames.5WN.gz")
    names: list[str] = []
    if man.is_file():
        for line in gzip.open(man, "rt", errors="replace"):
            m = re.match(r"^(\d{2})\t\s*([a-z]+\.[a-z]+)", line)
            if m:
                names.append(m.group(2))
    if len(names) != 45:
        names = _LEXNAMES
    cat = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}
    return "".join(f"{i:02d}\t{n}\t{cat[n.split('.')[0]]}\n" for i, n in enumerate(names))


_LEXNAMES = ("adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute noun.body "
             "noun.cognition noun.communication noun.event noun.feeling noun.food noun.group noun.location "
             "noun.motive noun.object noun.person noun.phenomenon noun.plant noun.possession noun.process "
             "noun.quantity noun.relation noun.shape noun.state noun.substance noun.time verb.body verb.change "
             "verb.cognition verb.communication verb.competition verb.consumption verb.contact verb.creation "
             "verb.emotion verb.motion verb.perception verb.possession verb.social verb.stative verb.weather "
             "adj.ppl").split()


def configure() -> None:
    """Put the local folders first on nltk's search path (idempotent)."""
    global _configured
    with _lock:
        if _configured:
            return
        import nltk
        build_wordnet_from_debian()
        for d in reversed(nltk_data_dirs() + [local_wordnet_dir()]):
            if str(d) not in nltk.data.path and d.is_dir():
                nltk.data.path.insert(0, str(d))
        _configured = True


def missing() -> dict[str, str]:
    """Resource name -> what degrades without it, for every resource not found."""
    configure()
    import nltk
    absent = {}
    for name, (path, purpose) in RESOURCES.items():
        try:
            nltk.data.find(path)
        except LookupError:
            absent[name] = purpose
    return absent
