"""Defenses: sanitizers a model owner applies before release (the paper's section 7 and more).

Example:
    >>> from covertml.defenses import list_sanitizers
    >>> list_sanitizers()
    ['bf16', 'finetune', 'fp16', 'int8', 'lsb-randomize', 'lsb-zero', 'noise', 'prune']
"""

from covertml.defenses import bits, finetune, perturb, precision  # noqa: F401  (registers)
from covertml.defenses.base import (
    SANITIZERS,
    Sanitizer,
    create_sanitizer,
    list_sanitizers,
    register_sanitizer,
    sanitizer_options,
)
from covertml.defenses.files import SanitizeResult, sanitize_file, sanitize_state

__all__ = [
    "SANITIZERS",
    "SanitizeResult",
    "Sanitizer",
    "create_sanitizer",
    "list_sanitizers",
    "register_sanitizer",
    "sanitize_file",
    "sanitize_state",
    "sanitizer_options",
]
