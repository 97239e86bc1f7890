"""Train a registry model on a dataset and write the model file and metrics: one call."""

from __future__ import annotations

import json
import logging
import platform
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from covertml import __version__
from covertml.attacks.base import Attack, AttackPlan
from covertml.data.base import Dataset
from covertml.errors import ConfigError
from covertml.models.files import save_model
from covertml.models.registry import create_model_for, model_spec
from covertml.paths import atomic_write_text
from covertml.training.config import TrainConfig, TrainResult
from covertml.training.trainer import Privacy, Trainer, seed_everything

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class TrainedModel:
    """A trained model, its training record and the files written for it."""

    model: nn.Module
    result: TrainResult
    model_path: Path
    metrics_path: Path
    metrics: dict[str, Any]
    plan: AttackPlan | None = None
    key_path: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary (the metrics written to ``metrics.json``)."""
        return self.metrics


def check_out_dir(out_dir: Path, *, overwrite: bool, files: tuple[str, ...]) -> None:
    """Refuses to replace earlier results in ``out_dir`` unless ``overwrite``."""
    existing = [f for f in files if (out_dir / f).exists()]
    if existing and not overwrite:
        raise ConfigError(
            f"{out_dir / existing[0]} already exists",
            fix="choose another --out folder or pass --overwrite",
        )


def train_and_save(
    dataset: Dataset,
    out_dir: str | Path,
    *,
    model_name: str | None = None,
    model_args: dict[str, Any] | None = None,
    config: TrainConfig,
    trainer: Trainer | None = None,
    overwrite: bool = False,
    progress: bool = False,
    extra_metrics: dict[str, Any] | None = None,
    attack: Attack | None = None,
    n_secrets: int | None = None,
    dataset_ref: dict[str, Any] | None = None,
    privacy: Privacy | None = None,
) -> TrainedModel:
    """Trains a fresh model on ``dataset`` and writes its file and metrics into ``out_dir``.

    Seeds everything from ``config.seed``, builds the model, trains it, then writes
    ``model.safetensors`` and ``metrics.json`` (both atomically).

    Args:
        dataset: Training and test data.
        out_dir: Output folder (created).
        model_name: Registry model; defaults to the dataset's.
        model_args: Extra model arguments.
        config: Hyper-parameters (``config.seed`` also seeds the model's initialization).
        trainer: A configured :class:`Trainer` (e.g. with attack hooks); default plain.
        overwrite: Replace existing results in ``out_dir``.
        progress: Show progress bars.
        extra_metrics: Merged into ``metrics.json``.
        attack: Train maliciously with this attack; also writes ``key.json``.
        n_secrets: Items the attack steals (default: as many as fit).
        dataset_ref: How to reload the training data (stored in the key for scoring).
        privacy: Train with DP-SGD; ``metrics.json`` then records the epsilon spent.

    Example:
        >>> import tempfile
        >>> from covertml.data import create_dataset
        >>> ds = create_dataset("digits", train_limit=200, test_limit=50)
        >>> run = train_and_save(ds, tempfile.mkdtemp(), config=TrainConfig(epochs=1))
        >>> run.model_path.name, run.metrics["model"]["name"], len(run.metrics["history"])
        ('model.safetensors', 'mlp', 1)
    """
    out = Path(out_dir)
    files = ("model.safetensors", "metrics.json") + (("key.json",) if attack else ())
    check_out_dir(out, overwrite=overwrite, files=files)
    seed_everything(config.seed)
    model = create_model_for(dataset, model_name, **(model_args or {}))
    plan = None
    if attack is not None and trainer is not None:
        raise ConfigError("pass either a trainer or an attack, not both", fix="drop one")
    if attack is not None:
        plan = attack.plan(model, dataset, n_secrets=n_secrets, seed=config.seed)
        plan = replace(plan, key=replace(plan.key, dataset=dataset_ref or {"name": dataset.name}))
        trainer = plan.trainer(config)
    trainer = trainer or Trainer(config)
    trainer.config = config
    trainer.progress = progress
    if privacy is not None:
        trainer.privacy = privacy
    result = trainer.fit(model, dataset.train, test_data=dataset.test)
    spec = model_spec(model)
    metrics = {
        "dataset": dataset.summary(),
        "model": spec.to_dict(),
        "n_parameters": sum(p.numel() for p in model.parameters()),
        "test_accuracy": result.test_accuracy,
        "train_seconds": result.seconds,
        "device": result.device,
        "config": config.to_dict(),
        "history": [e.to_dict() for e in result.history],
        "environment": {
            "covertml": __version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "threads": torch.get_num_threads(),
        },
        **(extra_metrics or {}),
    }
    if plan is not None:
        metrics["attack"] = attack_summary(plan, model, result)
    if privacy is not None:
        metrics["privacy"] = {"mechanism": "DP-SGD (opacus, RDP accountant)", **privacy.spent()}
    out.mkdir(parents=True, exist_ok=True)
    release = plan.release_dtype if plan is not None else None
    model_path = save_model(
        model, out / "model.safetensors", classes=dataset.classes, dtype=release
    )
    metrics_path = out / "metrics.json"
    atomic_write_text(metrics_path, json.dumps(metrics, indent=2, default=str) + "\n")
    key_path = plan.key.save(out / "key.json") if plan is not None else None
    log.info("wrote %s and %s", model_path, metrics_path)
    return TrainedModel(model, result, model_path, metrics_path, metrics, plan, key_path)


def attack_summary(plan: AttackPlan, model: nn.Module, result: TrainResult) -> dict[str, Any]:
    """What ``metrics.json`` records about an attack (never the passphrase)."""
    settings = {k: v for k, v in plan.key.settings.items() if k not in ("passphrase", "pool")}
    carriers = plan.key.carriers
    secret = plan.secret
    last = result.history[-1].test_accuracy if result.history else None
    bps = secret.bits_per_symbol
    if "bits_per_pixel" in settings and secret.kind == "image":
        bps = int(settings["bits_per_pixel"])  # capacity abuse quantizes pixels
    extra: dict[str, Any] = {}
    if "m" in settings:  # capacity abuse: synthetic inputs and how well they were learned
        extra = {
            "synthetic_inputs": settings["m"],
            "m_over_n": settings["m"] / max(int(settings["n_train"]), 1),
            "synthetic_accuracy": (
                result.history[-1].extra.get("synthetic_acc") if result.history else None
            ),
        }
    for callback in plan.callbacks:  # a self-calibrating strength: the schedule it used
        schedule = getattr(callback, "schedule", None)
        if schedule:
            extra["strength_schedule"] = list(schedule)
            extra["held_out_items"] = len(plan.exclude)
            extra["held_out_epochs"] = plan.exclude_epochs(result.config)
    return {
        "name": plan.key.attack,
        "settings": settings,
        "encrypted": bool(plan.key.settings.get("passphrase")),
        "items": secret.count,
        "symbols": int(secret.values.size),
        "bits_encoded": int(secret.values.size * bps),
        "carriers": carriers.size if carriers is not None else None,
        "parameters": sum(p.numel() for p in model.parameters()),
        "test_accuracy_before_post_steps": last,
        **extra,
    }
