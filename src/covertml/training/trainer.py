"""The reference trainer, with the extension points the attacks plug into.

Three hooks make a training run malicious without touching the loop:

- ``loss_terms``: extra losses computed from the model's parameters (correlated-value and
  sign encoding are such regularizers);
- ``extra_data``: extra labelled examples mixed into the training data (capacity abuse);
- ``post_steps``: functions applied to the trained model (LSB encoding).

``callbacks`` observe each epoch and may return extra metrics to log. The trainer works with
any ``nn.Module`` and any data loader, not only registry models.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn
from torch.utils.data import ConcatDataset, DataLoader
from torch.utils.data import Dataset as TorchDataset

from covertml.data.base import Split
from covertml.devices import describe_device, is_accelerator, resolve_device
from covertml.errors import ConfigError
from covertml.models.registry import loss_name
from covertml.training.batches import ArrayData, DeviceBatches, flip_and_crop, make_loader
from covertml.training.config import (
    EpochStats,
    TrainConfig,
    TrainResult,
    make_optimizer,
    make_scheduler,
)
from covertml.training.evaluate import accuracy_on, as_loader
from covertml.training.progress import ProgressBar

log = logging.getLogger(__name__)

DataLike = Split | ArrayData | TorchDataset[Any] | DataLoader[Any]


class LossTerm(Protocol):
    """An extra loss computed from the model (e.g. a malicious regularizer)."""

    name: str

    def __call__(self, model: nn.Module) -> torch.Tensor:
        """Returns a scalar tensor added to the training loss."""
        ...


class Callback(Protocol):
    """Observes training; may return metrics to record for the epoch."""

    def __call__(self, epoch: int, model: nn.Module) -> dict[str, float] | None:
        """Called after each epoch (``epoch`` counts from 1)."""
        ...


PostStep = Callable[[nn.Module], None]


@runtime_checkable
class Rejoinable(Protocol):
    """A callback told when the excluded items rejoin training (``Trainer(exclude_epochs=)``)."""

    def rejoined(self, epoch: int) -> None:
        """Called after epoch ``epoch``, from which on the excluded items are trained on."""
        ...


class Privacy(Protocol):
    """A private-training wrapper (see :class:`covertml.defenses.dp.DPSGD`)."""

    def attach(
        self, model: nn.Module, optimizer: torch.optim.Optimizer, loader: Any, *, epochs: int
    ) -> tuple[nn.Module, torch.optim.Optimizer, Any]:
        """Wraps the run's model, optimizer and loader."""
        ...

    def spent(self) -> dict[str, float]:
        """Privacy spent so far."""
        ...


def seed_everything(seed: int) -> None:
    """Seeds torch and NumPy's global generators (call before building a model)."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)


def _on_device(loader: DataLoader[Any], device: torch.device, *, channels_last: bool) -> Any:
    """The loader's batches held on an accelerator where they fit (else ``loader``)."""
    if is_accelerator(device) and DeviceBatches.fits(loader.dataset, device):
        assert isinstance(loader.dataset, ArrayData)
        return DeviceBatches(loader.dataset, loader, device=device, channels_last=channels_last)
    return loader


def _criterion(model: nn.Module) -> nn.Module:
    return nn.MultiMarginLoss() if loss_name(model) == "hinge" else nn.CrossEntropyLoss()


class Trainer:
    """Trains a model with optional malicious (or defensive) extensions.

    Args:
        config: Hyper-parameters.
        loss_terms: Extra losses from the model's parameters, added every step.
        extra_data: Extra labelled examples mixed into every epoch's training data.
        post_steps: Applied in order to the trained model.
        callbacks: Called after every epoch; returned metrics are recorded.
        criterion: Training loss; defaults to the model's (cross-entropy or hinge).
        progress: Show a progress bar (for the CLI; library use logs instead).
        privacy: Train with DP-SGD (:class:`covertml.defenses.dp.DPSGD`).
        exclude: Indices of ``train_data`` (a split) not to train on -- a validation
            slice that a loss term's controller watches.
        exclude_epochs: The excluded items rejoin training after this many epochs
            (callbacks with a ``rejoined(epoch)`` method are told); ``None``: never.
        extend_while: After the configured epochs, keep training (at the last epoch's
            learning rate) while this returns True, for at most ``max_extra_epochs``.
        max_extra_epochs: Bound of those extra epochs.

    Example:
        >>> from covertml.data import create_dataset
        >>> from covertml.models import create_model_for
        >>> ds = create_dataset("digits", train_limit=300, test_limit=100)
        >>> seed_everything(0)
        >>> model = create_model_for(ds)
        >>> result = Trainer(TrainConfig(epochs=2)).fit(model, ds.train, test_data=ds.test)
        >>> len(result.history), 0.0 <= (result.test_accuracy or 0.0) <= 1.0
        (2, True)
    """

    def __init__(
        self,
        config: TrainConfig | None = None,
        *,
        loss_terms: Sequence[LossTerm] = (),
        extra_data: DataLike | None = None,
        post_steps: Sequence[PostStep] = (),
        callbacks: Sequence[Callback] = (),
        criterion: nn.Module | None = None,
        progress: bool = False,
        privacy: Privacy | None = None,
        exclude: Sequence[int] = (),
        exclude_epochs: int | None = None,
        extend_while: Callable[[], bool] | None = None,
        max_extra_epochs: int = 0,
    ) -> None:
        self.config = config or TrainConfig()
        self.extend_while = extend_while
        self.max_extra_epochs = max(0, int(max_extra_epochs))
        self.exclude = tuple(int(i) for i in exclude)
        self.exclude_epochs = exclude_epochs
        self.loss_terms = list(loss_terms)
        self.extra_data = extra_data
        self.post_steps = list(post_steps)
        self.callbacks = list(callbacks)
        self.criterion = criterion
        self.progress = progress
        self.privacy = privacy

    def _train_loader(self, train_data: DataLike, seed: int) -> DataLoader[Any]:
        cfg = self.config
        base: TorchDataset[Any]
        if isinstance(train_data, DataLoader):
            if self.extra_data is None:
                return train_data
            base = train_data.dataset
        else:
            base = ArrayData.from_split(train_data) if isinstance(train_data, Split) else train_data
        if self.extra_data is not None:
            extra = self.extra_data
            if isinstance(extra, Split):
                extra = ArrayData.from_split(extra)
            if isinstance(extra, DataLoader):
                extra = extra.dataset
            if isinstance(base, ArrayData) and isinstance(extra, ArrayData):
                # The malicious code augments only the real data: its synthetic inputs must
                # be learned exactly as they will be queried.
                base = base.concat(extra, other_fixed=True)
            else:
                base = ConcatDataset([base, extra])
        return make_loader(base, batch_size=cfg.batch_size, shuffle=True, seed=seed)

    def _another_epoch(self, done: int) -> bool:
        if done < self.config.epochs:
            return True
        if self.extend_while is None or done >= self.config.epochs + self.max_extra_epochs:
            return False
        more = bool(self.extend_while())
        if more:
            log.info("epoch %d: the attack asks for another epoch", done + 1)
        return more

    def fit(
        self, model: nn.Module, train_data: DataLike, *, test_data: DataLike | None = None
    ) -> TrainResult:
        """Trains ``model`` in place and returns the per-epoch history.

        Training runs on ``config.device``; the model comes back on the CPU, in the
        default memory format, where covertml's attacks, audits and model files expect it.

        Args:
            model: Any module mapping an input batch to class scores.
            train_data: A dataset split, :class:`ArrayData`, torch dataset or data loader.
            test_data: Evaluated after every epoch when given.
        """
        cfg = self.config
        torch.manual_seed(cfg.seed)
        device = resolve_device(cfg.device)
        model.to(device)
        terms = [t for t in self.loss_terms if isinstance(t, nn.Module)]
        for module in terms:  # their buffers (targets, signs, indices) live beside the model
            module.to(device)
        # NHWC convolutions: faster on CUDA, and 15-30% faster on the CPU too (oneDNN;
        # bench/cifar_epoch_time.py). Not under DP-SGD (per-example gradients) or on MPS.
        channels_last = (
            device.type in ("cuda", "cpu")
            and self.privacy is None
            and any(isinstance(m, nn.Conv2d) for m in model.modules())
        )
        if channels_last:
            model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        full_data = train_data
        if self.exclude:
            if not isinstance(train_data, Split):
                raise ConfigError(
                    "exclude needs the training data as a Split",
                    fix="pass the dataset split, not a loader",
                )
            if self.privacy is not None and self.exclude_epochs is not None:
                raise ConfigError(
                    "excluded items cannot rejoin a DP-SGD run (its accounting fixes the data)",
                    fix="leave exclude_epochs unset under DP-SGD",
                )
            keep = np.setdiff1d(np.arange(len(train_data)), np.asarray(self.exclude))
            train_data = train_data.take(keep)
        loader = self._train_loader(train_data, cfg.seed)
        test_loader = as_loader(test_data) if test_data is not None else None
        optimizer = make_optimizer(cfg, model)
        net = model  # what the batches go through (DP-SGD wraps it; parameters are shared)
        if self.privacy is not None:
            if self.loss_terms:
                raise ConfigError(
                    "DP-SGD bounds each example's gradient; loss terms on the parameters "
                    "would bypass it",
                    fix="train without the white-box attack's loss terms",
                )
            net, optimizer, loader = self.privacy.attach(
                model, optimizer, loader, epochs=cfg.epochs
            )
        if self.privacy is None:
            loader = _on_device(loader, device, channels_last=channels_last)
        scheduler = make_scheduler(cfg, optimizer)
        sums_dtype = torch.float32 if device.type == "mps" else torch.float64
        criterion = self.criterion or _criterion(model)
        aug_gen = torch.Generator().manual_seed(cfg.seed + 1)
        history: list[EpochStats] = []
        start = time.perf_counter()
        bar = ProgressBar(self.progress, cfg.epochs, len(loader))
        with bar:
            epoch, last_lr = 0, float(optimizer.param_groups[0]["lr"])
            while self._another_epoch(epoch):
                epoch += 1
                if epoch > cfg.epochs:  # an extra epoch: the schedule's last rate, held
                    for group in optimizer.param_groups:
                        group["lr"] = last_lr
                t0 = time.perf_counter()
                net.train()
                # summed on the device; read once per epoch (no host round trip per step)
                totals = torch.zeros(3, dtype=sums_dtype, device=device)  # loss, correct, seen
                term_sums = torch.zeros(len(self.loss_terms), dtype=sums_dtype, device=device)
                for batch in loader:
                    xb = batch[0].to(device, non_blocking=True)
                    yb = batch[1].to(device, non_blocking=True)
                    if cfg.augment == "flip-crop" and xb.dim() == 4:
                        augmented = flip_and_crop(xb, generator=aug_gen)
                        if len(batch) > 2:  # rows marked fixed keep their exact pixels
                            fixed = batch[2].to(device).view(-1, 1, 1, 1)
                            augmented = torch.where(fixed, xb, augmented)
                        xb = augmented
                    if channels_last and xb.dim() == 4:
                        xb = xb.contiguous(memory_format=torch.channels_last)
                    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.amp):
                        out = net(xb)
                        loss = criterion(out, yb)
                    total = loss.float()
                    for i, term in enumerate(self.loss_terms):
                        value = term(model)
                        term_sums[i] += value.detach().to(sums_dtype)
                        total = total + value
                    optimizer.zero_grad(set_to_none=True)
                    total.backward()
                    optimizer.step()
                    n = yb.shape[0]
                    totals[0] += loss.detach().to(sums_dtype) * n
                    totals[1] += (out.argmax(1) == yb).sum()
                    totals[2] += n
                    bar.advance()
                lr = last_lr = float(optimizer.param_groups[0]["lr"])
                if epoch <= cfg.epochs:
                    scheduler.step()
                loss_sum, correct, seen = totals.tolist()
                extra = {
                    t.name: v / max(len(loader), 1)
                    for t, v in zip(self.loss_terms, term_sums.tolist(), strict=True)
                }
                for callback in self.callbacks:
                    extra.update(callback(epoch, model) or {})
                if self.exclude and epoch == self.exclude_epochs:  # the slice rejoins
                    log.info("epoch %d: the %d excluded items rejoin training", epoch,
                             len(self.exclude))  # fmt: skip
                    loader = _on_device(
                        self._train_loader(full_data, cfg.seed + 7919),
                        device,
                        channels_last=channels_last,
                    )
                    for callback in self.callbacks:
                        if isinstance(callback, Rejoinable):
                            callback.rejoined(epoch)
                test_acc = accuracy_on(model, test_loader) if test_loader is not None else None
                stats = EpochStats(
                    epoch=epoch,
                    train_loss=loss_sum / max(seen, 1),
                    train_accuracy=correct / max(seen, 1),
                    test_accuracy=test_acc,
                    lr=lr,
                    seconds=time.perf_counter() - t0,
                    extra=extra,
                )
                history.append(stats)
                bar.epoch_done(stats)
                log.info(
                    "epoch %d/%d loss %.4f train acc %.4f test acc %s (%.1fs)",
                    epoch,
                    cfg.epochs,
                    stats.train_loss,
                    stats.train_accuracy,
                    "-" if test_acc is None else f"{test_acc:.4f}",
                    stats.seconds,
                )
        if channels_last:  # files, bit-level work and audits expect contiguous tensors
            model.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
        if device.type != "cpu":  # attacks, audits, bit-level steps and files work on the CPU
            for held in (model, *terms):
                held.to("cpu")
        for step in self.post_steps:  # exact bit work (LSB) on host float32, on any device
            step(model)
        model.eval()
        final = None
        if test_loader is not None:  # a lossless copy back for the final accuracy
            final = accuracy_on(model.to(device), test_loader)
            model.to("cpu")
        seconds = time.perf_counter() - start
        return TrainResult(cfg, tuple(history), final, seconds, device=describe_device(device))
