"""The adversary's side end to end: model file + key -> recovered secret on disk (+ scores)."""

from __future__ import annotations

import io
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from covertml.attacks.base import decode_secret
from covertml.attacks.capacity import decode_capacity
from covertml.attacks.key import AttackKey
from covertml.attacks.labelcode import dequantize, quantize
from covertml.attacks.oracle import LabelOracle
from covertml.attacks.score import RecoveryScores, score_recovery
from covertml.attacks.secrets import Secret, secret_from_dataset
from covertml.data.registry import create_dataset
from covertml.errors import ConfigError
from covertml.paths import atomic_write, atomic_write_text
from covertml.report.grid import save_grid

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Extraction:
    """What ``covertml extract`` wrote."""

    secret_kind: str
    items: int
    files: tuple[str, ...]
    scores: RecoveryScores | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "secret_kind": self.secret_kind,
            "items": self.items,
            "files": list(self.files),
            "scores": self.scores.to_dict() if self.scores is not None else None,
            **self.details,
        }


def true_secret(
    key: AttackKey, dataset: str, *, data_dir: str | os.PathLike[str] | None = None
) -> tuple[Secret, tuple[str, ...] | None]:
    """The secret as it really was: the first training items of ``dataset`` (and vocabulary).

    The dataset is loaded with the limits recorded in the key, so the item order matches.
    """
    ref = dict(key.dataset)
    if ref.get("name") and ref["name"] != dataset:
        raise ConfigError(
            f"the key was made on dataset {ref['name']!r}, not {dataset!r}",
            fix=f"pass --dataset {ref['name']}",
        )
    ds = create_dataset(
        dataset,
        data_dir=data_dir,
        train_limit=ref.get("train_limit"),
        test_limit=ref.get("test_limit"),
        seed=int(ref.get("seed", 0)),
        **dict(ref.get("options") or {}),
    )
    count = int(key.secret["count"])
    tokens = key.secret.get("max_doc_tokens")
    truth = secret_from_dataset(ds, max_items=count, max_doc_tokens=tokens)
    return truth, ds.vocabulary


def quantization_scores(key: AttackKey, truth: Secret, recovered: Secret) -> dict[str, float]:
    """Quantization facts for attacks that quantize pixels (capacity abuse).

    Returns the best MAPE possible at that many bits per pixel (every bucket right, decoded
    to its centre) and the fraction of pixels whose bucket came back right.
    """
    bits = key.settings.get("bits_per_pixel")
    if bits is None or truth.kind != "image":
        return {}
    best = truth.with_values(dequantize(quantize(truth.values, int(bits)), int(bits)))
    right = quantize(truth.values, int(bits)) == quantize(recovered.values, int(bits))
    return {
        "quantization_floor_mape": float(np.abs(truth.values - best.values).mean()),
        "exact_buckets": float(right.mean()) if right.size else 1.0,
    }


def write_recovered(
    secret: Secret, out: Path, *, vocabulary: tuple[str, ...] | None = None
) -> list[str]:
    """Writes ``images.npz`` + ``recovered.png`` or ``documents.jsonl`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    if secret.kind == "image":
        buf = io.BytesIO()
        np.savez_compressed(buf, images=secret.images())
        with atomic_write(out / "images.npz") as handle:
            handle.write(buf.getvalue())
        save_grid(out / "recovered.png", [secret.images()])
        return ["images.npz", "recovered.png"]
    lines = []
    for i, doc in enumerate(secret.documents()):
        row: dict[str, Any] = {"index": i, "tokens": doc.tolist()}
        if vocabulary is not None:
            row["text"] = " ".join(vocabulary[t] for t in doc.tolist())
        lines.append(json.dumps(row))
    atomic_write_text(out / "documents.jsonl", "\n".join(lines) + ("\n" if lines else ""))
    return ["documents.jsonl"]


def extract(
    model: nn.Module | None,
    key: AttackKey,
    out_dir: str | os.PathLike[str],
    *,
    dataset: str | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    recovered: Secret | None = None,
    details: dict[str, Any] | None = None,
) -> Extraction:
    """Decodes the secret from ``model`` with ``key`` and writes it (and scores) to ``out_dir``.

    Args:
        model: The released model (white-box) -- ignored when ``recovered`` is given.
        key: The adversary's key.
        out_dir: Output folder.
        dataset: Also score against this dataset's true training items.
        data_dir: Where the dataset's archives are.
        recovered: An already decoded secret (e.g. from black-box queries).
        details: Extra facts to record (e.g. queries used).
    """
    out = Path(out_dir)
    if recovered is None and model is None:
        raise ValueError("pass the model or an already recovered secret")
    secret = recovered if recovered is not None else decode_secret(model, key)  # type: ignore[arg-type]
    truth, vocabulary = (None, None)
    if dataset is not None:
        truth, vocabulary = true_secret(key, dataset, data_dir=data_dir)
    files = write_recovered(secret, out, vocabulary=vocabulary)
    scores = None
    extra = dict(details or {})
    if truth is not None:
        scores = score_recovery(truth, secret)
        extra.update(quantization_scores(key, truth, secret))
        if truth.kind == "image":
            save_grid(out / "original_vs_recovered.png", [truth.images(), secret.images()])
            files.append("original_vs_recovered.png")
    result = Extraction(secret.kind, secret.count, tuple(files), scores, extra)
    atomic_write_text(out / "metrics.json", json.dumps(result.to_dict(), indent=2) + "\n")
    log.info("extracted %d %s items into %s", secret.count, secret.kind, out)
    return result


def extract_with_oracle(
    oracle: LabelOracle,
    key: AttackKey,
    out_dir: str | os.PathLike[str],
    *,
    dataset: str | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    endpoint: str | None = None,
) -> Extraction:
    """Black-box extraction: asks ``oracle`` for labels, then writes like :func:`extract`.

    Records the queries used and the ``endpoint`` asked (``None``: a local model).
    """
    recovered = decode_capacity(oracle, key)
    details = {"queries": oracle.queries, "endpoint": endpoint}
    return extract(
        None,
        key,
        out_dir,
        dataset=dataset,
        data_dir=data_dir,
        recovered=recovered,
        details=details,
    )
