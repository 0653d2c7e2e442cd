"""MESS domains (Blumenstiel et al., "What a MESS: Multi-Domain Evaluation of Zero-Shot Semantic
Segmentation", NeurIPS 2023 Datasets and Benchmarks; github.com/blumenstiel/MESS): benchmarks
``mess_<dataset>`` prepared as MESS's ``prepare_*.py`` scripts prepare them, with MESS's class names
(``CLASSES`` of its ``register_*.py``, not the ``_official`` variants), and the ``mess`` suite that
scores them all and averages them per MESS domain on the leaderboard.

Eight of MESS's 22 datasets so far, at least one per domain; :mod:`._common` has what they share.
"""

from textseg.suite import Suite

from .agriculture import CWFID
from .earth import ISPRS_POTSDAM
from .engineering import CORROSION_CS, DEEPCRACK, ZEROWASTE
from .general import ATLANTIS
from .medical import CHASE_DB1, KVASIR_INSTRUMENT

#: MESS's domains (``dataset_domains`` of mess/evaluation/mess_evaluation.py) and their members here.
DOMAINS = {
    "General": (ATLANTIS.name,),
    "Earth Monitoring": (ISPRS_POTSDAM.name,),
    "Medical Sciences": (KVASIR_INSTRUMENT.name, CHASE_DB1.name),
    "Engineering": (CORROSION_CS.name, DEEPCRACK.name, ZEROWASTE.name),
    "Agriculture and Biology": (CWFID.name,),
}

SUITE = Suite(
    name="mess",
    summary="MESS: segmentation beyond everyday photos, averaged per domain on the leaderboard",
    benchmarks=tuple(name for members in DOMAINS.values() for name in members),
    groups=DOMAINS,
)

__all__ = [
    "ATLANTIS",
    "CHASE_DB1",
    "CORROSION_CS",
    "CWFID",
    "DEEPCRACK",
    "DOMAINS",
    "ISPRS_POTSDAM",
    "KVASIR_INSTRUMENT",
    "SUITE",
    "ZEROWASTE",
]
