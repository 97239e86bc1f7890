"""Audit: detectors that look for the attacks' traces, and the scanner that runs them.

Example:
    >>> from covertml.audit import list_detectors
    >>> list_detectors()
    ['distribution', 'lsb-stats', 'noise-probe', 'owner-correlation', 'owner-sign']
"""

from covertml.audit import distribution, lsbstats, owner, probe  # noqa: F401  (registers)
from covertml.audit.base import (
    DETECTORS,
    Detector,
    DetectorReport,
    Finding,
    ScanContext,
    create_detector,
    list_detectors,
    register_detector,
)
from covertml.audit.batch import BatchReport, scan_paths
from covertml.audit.probe import label_entropy
from covertml.audit.sarif import to_sarif, write_sarif
from covertml.audit.scan import (
    EXIT_CLEAN,
    EXIT_ERROR,
    EXIT_FINDINGS,
    ScanReport,
    context_from_file,
    scan,
)

__all__ = [
    "DETECTORS",
    "BatchReport",
    "EXIT_CLEAN",
    "EXIT_ERROR",
    "EXIT_FINDINGS",
    "Detector",
    "DetectorReport",
    "Finding",
    "ScanContext",
    "ScanReport",
    "context_from_file",
    "create_detector",
    "label_entropy",
    "list_detectors",
    "register_detector",
    "scan",
    "scan_paths",
    "to_sarif",
    "write_sarif",
]
