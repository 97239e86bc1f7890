"""False positives and detection power of the scanner at a family-wise alpha (issue 13).

Usage:
    python bench/detectors_null.py --quick                       # smoke run: a few models
    python bench/detectors_null.py --data-dir ../shared/data     # the study: hours on 2 cores

HONEST: models of every bundled dataset and model family -- trained by covertml's
``Trainer`` (digits MLP, CIFAR-10 ResNet-20, LFW face-cnn, linear text models), left at
their random initialization, or trained by plain PyTorch loops written here (Adam without
weight decay, SGD with momentum, with and without augmentation). Each is scanned with
``scan(ctx, alpha=...)`` -- every detector the scan runs by default -- given the owner's
data and a trusted reference: an honest twin of the same architecture and recipe with
another seed. The plain ``nn.Sequential`` nets are models covertml cannot describe, so they
are scanned with ``info=None`` and the detectors that need an architecture skip them;
skips and detector errors are recorded per model.

ATTACKED: correlated value and sign encoding written here as plain PyTorch loss terms, in
the layouts an attacker may choose (grey by BT.601 or BT.709, one channel, RGB HWC or CHW;
0-255, [0, 1] or standardized; the first training items in dataset order or a keyed random
selection; from the start of the parameters or inside a tensor; either sign of the
correlation; sign encoding MSB- or LSB-first with either +-1 mapping), and covertml's own
attacks. Each variant runs at its weakest strength -- a sweep (lambda, ratio or bits) on the
first seed -- at which the attacker's own decoder still recovers the data (MAPE <= 55 of
255), on ``--seeds`` seeds. Reported per variant: the detection rate at alpha, and the ROC
AUC of -log10 p (of the detector that targets the attack, and of the whole scan's smallest
adjusted p) against the honest models of the same dataset.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as nnf
from sklearn.metrics import roc_auc_score
from threadpoolctl import threadpool_limits
from torch import nn

from common import markdown_table, save_record
from covertml.attacks import LocalOracle, create_attack, decode_capacity, decode_secret
from covertml.attacks.score import score_recovery
from covertml.audit import ScanContext, ScanReport, create_detector, list_detectors, scan
from covertml.audit.base import correct
from covertml.data import Dataset, create_dataset, images_to_float
from covertml.errors import DataNotFoundError
from covertml.models import ModelInfo, create_model_for, model_spec
from covertml.training import Trainer, accuracy_on, recipe, seed_everything

MAPE_OK = 55.0  # the attacker recovers the data: mean absolute pixel error <= 55 of 255
TARGETS = {
    "correlation": "owner-correlation",
    "sign": "owner-sign",
    "capacity": "noise-probe (opt-in)",
    "lsb": "lsb-stats",
}
LUMA = {"grey601": (0.299, 0.587, 0.114), "grey709": (0.2126, 0.7152, 0.0722)}

# create_dataset options per dataset: the study's subsets, and the smoke run's
DATA: dict[str, dict[str, Any]] = {
    "digits": {},
    "cifar10": {"train_limit": 3000, "test_limit": 1000},
    "lfw-gender": {"train_limit": 1500, "test_limit": 500},
    "20news": {"max_features": 5000},
    "imdb": {"max_features": 5000, "train_limit": 5000, "test_limit": 2000},
}
QUICK_DATA: dict[str, dict[str, Any]] = {
    "digits": {},
    "cifar10": {"train_limit": 400, "test_limit": 200},
    "lfw-gender": {"train_limit": 300, "test_limit": 150},
    "20news": {"max_features": 1000, "train_limit": 1000, "test_limit": 400},
    "imdb": {"max_features": 1000, "train_limit": 1000, "test_limit": 400},
}


@dataclass(frozen=True)
class Family:
    """One family of honest models: how each is built and trained.

    ``arch`` is a covertml model name or one of this script's plain nets (``plain-mlp``,
    ``plain-cnn``); ``trainer`` is ``covertml`` (its ``Trainer`` and the dataset's recipe),
    ``plain`` (this script's loop, with ``optimizer``/``lr``/``augment``/``batch_size``) or
    ``untrained`` (the random initialization). ``recipe`` overrides the dataset's covertml
    recipe (pairs of option and value).
    """

    name: str
    dataset: str
    arch: str
    trainer: str
    seeds: int
    epochs: int = 1
    optimizer: str = "adam"  # plain loops: "adam" (no weight decay) or "sgd" (momentum 0.9)
    lr: float = 1e-3
    augment: str = "none"  # plain loops: "none", "shift" (1 px) or "flip-crop" (4 px pad)
    batch_size: int = 64
    recipe: tuple[tuple[str, Any], ...] = ()


# covertml's CPU recipe for CIFAR-10 (configs/cpu/cifar10.toml): Adam, no weight decay, cosine
CIFAR_CPU = (("optimizer", "adam"), ("lr", 1e-3), ("weight_decay", 0.0), ("schedule", "cosine"))
FAMILIES = [
    Family("digits-mlp", "digits", "mlp", "covertml", 8, epochs=30),
    Family("cifar10-resnet20", "cifar10", "resnet20", "covertml", 3, epochs=3, recipe=CIFAR_CPU),
    Family("cifar10-resnet20-sgd", "cifar10", "resnet20", "covertml", 2, epochs=3),
    Family("lfw-face-cnn", "lfw-gender", "face-cnn", "covertml", 2, epochs=1),
    Family("20news-logreg", "20news", "logreg", "covertml", 2, epochs=10),
    Family("20news-linear-svm", "20news", "linear-svm", "covertml", 2, epochs=10),
    Family("imdb-logreg", "imdb", "logreg", "covertml", 2, epochs=6),
    Family("imdb-linear-svm", "imdb", "linear-svm", "covertml", 2, epochs=6),
    Family("random-mlp", "digits", "mlp", "untrained", 1),
    Family("random-resnet20", "cifar10", "resnet20", "untrained", 1),
    Family("random-face-cnn", "lfw-gender", "face-cnn", "untrained", 1),
    Family("random-logreg", "20news", "logreg", "untrained", 1),
    Family("plain-mlp-adam", "digits", "plain-mlp", "plain", 2, epochs=20, batch_size=32),
    Family(
        "plain-mlp-sgd-shift",
        "digits",
        "plain-mlp",
        "plain",
        2,
        epochs=20,
        optimizer="sgd",
        lr=0.05,
        augment="shift",
        batch_size=32,
    ),
    Family("plain-cnn-adam-shift", "digits", "plain-cnn", "plain", 2, epochs=20, augment="shift"),
    Family("plain-cnn-adam", "cifar10", "plain-cnn", "plain", 2, epochs=3),
    Family(
        "plain-cnn-sgd-flip-crop",
        "cifar10",
        "plain-cnn",
        "plain",
        2,
        epochs=3,
        optimizer="sgd",
        lr=0.05,
        augment="flip-crop",
    ),
]
QUICK_FAMILIES = {
    "digits-mlp": 2,
    "cifar10-resnet20": 1,
    "lfw-face-cnn": 1,
    "20news-logreg": 1,
    "imdb-linear-svm": 1,
    "random-mlp": 1,
    "random-logreg": 1,
    "plain-mlp-sgd-shift": 1,
    "plain-cnn-sgd-flip-crop": 1,
}


@dataclass(eq=False)
class Trained:
    """A trained (or untrained) model and what it was."""

    family: str
    dataset: str
    seed: int
    trainer: str
    model: nn.Module
    info: ModelInfo | None
    accuracy: float
    seconds: float


@dataclass(eq=False)
class Planted:
    """An attack attached to a fresh model: trainer hooks and the attacker's decoder."""

    hooks: dict[str, Any]
    mape: Callable[[nn.Module], float]
    items: int


Plant = Callable[[nn.Module], Planted]


# ---------------------------------------------------------------- plain PyTorch training


def plain_net(arch: str, ds: Dataset) -> nn.Module:
    """A plain ``nn.Sequential`` net for ``ds`` (inputs in [0, 1], N x C x H x W)."""
    c, h, w = ds.input_shape
    k = ds.num_classes
    if arch == "plain-mlp":
        return nn.Sequential(
            nn.Flatten(),
            nn.Linear(c * h * w, 128),
            nn.ReLU(),
            nn.Linear(128, 64),
            nn.ReLU(),
            nn.Linear(64, k),
        )
    return nn.Sequential(
        nn.Conv2d(c, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * (h // 4) * (w // 4), 64),
        nn.ReLU(),
        nn.Linear(64, k),
    )


def augment(x: torch.Tensor, how: str, gen: torch.Generator) -> torch.Tensor:
    """Random shifts (``shift``: 1 px) or horizontal flips and 4-px crops (``flip-crop``)."""
    if how == "none":
        return x
    if how == "flip-crop":
        flip = torch.rand(len(x), generator=gen) < 0.5
        x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
    pad = 1 if how == "shift" else 4
    _, _, h, w = x.shape
    padded = nnf.pad(x, (pad, pad, pad, pad))
    dy, dx = torch.randint(0, 2 * pad + 1, (2, len(x)), generator=gen).tolist()
    return torch.stack(
        [padded[i, :, a : a + h, b : b + w] for i, (a, b) in enumerate(zip(dy, dx, strict=True))]
    )


def plain_fit(model: nn.Module, ds: Dataset, fam: Family, seed: int, terms: Sequence[Any]) -> None:
    """A plain training loop: cross-entropy plus ``terms``, no weight decay."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    x = torch.from_numpy(images_to_float(np.asarray(ds.train.x)))
    y = torch.from_numpy(np.asarray(ds.train.y))
    opt: torch.optim.Optimizer
    if fam.optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=fam.lr, momentum=0.9)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=fam.lr)
    model.train()
    for _ in range(fam.epochs):
        for idx in torch.randperm(len(y), generator=gen).split(fam.batch_size):
            loss = nnf.cross_entropy(model(augment(x[idx], fam.augment, gen)), y[idx])
            for term in terms:
                loss = loss + term(model)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    model.eval()


def train(
    fam: Family, ds: Dataset, seed: int, plant: Plant | None = None
) -> tuple[Trained, Planted | None]:
    """Builds and trains one model of ``fam`` (with the attack ``plant`` attaches, if any)."""
    seed_everything(seed)
    start = time.perf_counter()
    info = None
    if fam.arch.startswith("plain-"):
        model = plain_net(fam.arch, ds)
    else:
        model = create_model_for(ds, fam.arch)
        info = ModelInfo(model_spec(model), classes=ds.classes)
    planted = plant(model) if plant is not None else None
    hooks = planted.hooks if planted is not None else {}
    if fam.trainer == "covertml":
        cfg = recipe(fam.dataset, seed=seed, epochs=fam.epochs, **dict(fam.recipe))
        Trainer(cfg, **hooks).fit(model, ds.train)
    elif fam.trainer == "plain":
        plain_fit(model, ds, fam, seed, hooks.get("loss_terms", ()))
    model.eval()
    acc = accuracy_on(model, ds.test)
    seconds = time.perf_counter() - start
    return Trained(fam.name, fam.dataset, seed, fam.trainer, model, info, acc, seconds), planted


# ---------------------------------------------------------------- attacks written here


@dataclass(frozen=True)
class Variant:
    """A white-box attack written here: how the secret is laid out and where it goes.

    Attributes:
        kind: ``correlation`` (correlated value encoding) or ``sign`` (sign encoding).
        layout: ``grey601``, ``grey709`` (luma; the channel itself for one-channel data),
            ``red`` (one channel), ``hwc`` or ``chw`` (RGB interleaved or planar).
        scale: Correlation only: ``0-255``, ``unit`` ([0, 1]), ``std-channel`` (per colour
            channel) or ``std-pixel`` (per pixel position) standardization.
        order: ``first`` training items in dataset order, or a keyed ``random`` selection.
        offset: ``start`` of the parameter stream, or ``inside`` the largest tensor.
        polarity: Correlation: +1 trains the correlation up, -1 down. Sign: the sign that
            a 1-bit gets.
        bits: Sign only: ``msb``- or ``lsb``-first within each byte.
    """

    kind: str
    layout: str = "grey601"
    scale: str = "0-255"
    order: str = "first"
    offset: str = "start"
    polarity: int = 1
    bits: str = "msb"

    @property
    def name(self) -> str:
        sign = "+" if self.polarity > 0 else "-"
        if self.kind == "correlation":
            how = f"{self.scale}, r{sign}"
        else:
            how = f"{self.bits.upper()}-first, 1={sign}1"
        return f"{self.kind} {self.layout} {how}, {self.order}, {self.offset}"


DIGITS_VARIANTS = [
    Variant("correlation"),
    Variant("correlation", scale="unit"),
    Variant("correlation", scale="std-pixel"),
    Variant("correlation", order="random"),
    Variant("correlation", offset="inside"),
    Variant("correlation", polarity=-1),
    Variant("correlation", order="random", offset="inside", polarity=-1),
    Variant("sign"),
    Variant("sign", bits="lsb"),
    Variant("sign", polarity=-1),
    Variant("sign", bits="lsb", polarity=-1),
    Variant("sign", order="random", offset="inside"),
]
CIFAR_VARIANTS = [
    Variant("correlation"),
    Variant("correlation", layout="grey709"),
    Variant("correlation", layout="red"),
    Variant("correlation", layout="hwc"),
    Variant("correlation", layout="chw"),
    Variant("correlation", layout="hwc", scale="std-channel"),
    Variant("sign", layout="hwc"),
]
QUICK_VARIANTS = {
    "digits": [
        Variant("correlation"),
        Variant("correlation", order="random", offset="inside", polarity=-1),
        Variant("sign"),
        Variant("sign", bits="lsb", polarity=-1),
    ],
    "cifar10": [Variant("correlation", layout="hwc")],
}
LAMBDAS = {
    "correlation": (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0),
    "sign": (0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0),
}
CIFAR_LAMBDAS = {kind: values[2:] for kind, values in LAMBDAS.items()}  # fewer trainings


def layout_rows(images: np.ndarray, layout: str) -> np.ndarray:
    """``uint8`` N x H x W x C images as N x P ``float64`` rows in ``layout``, 0-255."""
    x = images.astype(np.float64)
    n = len(x)
    if layout in LUMA:
        grey = x[..., 0] if x.shape[-1] == 1 else x @ np.array(LUMA[layout])
        return grey.reshape(n, -1)
    if layout == "red":
        return x[..., 0].reshape(n, -1)
    if layout == "hwc":
        return x.reshape(n, -1)
    if layout == "chw":
        return x.transpose(0, 3, 1, 2).reshape(n, -1)
    raise ValueError(f"unknown layout {layout!r}")


def channel_of(layout: str, images: np.ndarray) -> np.ndarray:
    """The colour channel of each position of a ``layout`` row (0 for one-channel rows)."""
    _, h, w, c = images.shape
    if layout == "hwc":
        return np.tile(np.arange(c), h * w)
    if layout == "chw":
        return np.repeat(np.arange(c), h * w)
    return np.zeros(h * w, dtype=np.int64)


def scaled(rows: np.ndarray, v: Variant, ds: Dataset) -> np.ndarray:
    """``rows`` on the variant's scale; standardizations use the whole training set."""
    if v.scale == "0-255":
        return rows
    if v.scale == "unit":
        return rows / 255.0
    images = np.asarray(ds.train.x)
    stats = layout_rows(images, v.layout)
    if v.scale == "std-pixel":
        return (rows - stats.mean(0)) / np.maximum(stats.std(0), 1e-6)
    out = rows.copy()
    channel = channel_of(v.layout, images)
    for k in np.unique(channel):
        cols = channel == k
        out[:, cols] = (rows[:, cols] - stats[:, cols].mean()) / max(stats[:, cols].std(), 1e-6)
    return out


def flat_params(model: nn.Module) -> torch.Tensor:
    """Every parameter, flattened and concatenated in ``parameters()`` order."""
    return torch.cat([p.reshape(-1) for p in model.parameters()])


def start_of(model: nn.Module, v: Variant) -> int:
    """Where the secret starts: 0, or a third into the largest tensor plus an odd 7."""
    if v.offset == "start":
        return 0
    sizes = [p.numel() for p in model.parameters()]
    i = int(np.argmax(sizes))
    return sum(sizes[:i]) + sizes[i] // 3 + 7


class CorrelationTerm:
    """``-lam * polarity * pearson(theta[start : start + L], secret)``."""

    name = "plain-correlation"

    def __init__(self, secret: np.ndarray, start: int, lam: float, polarity: int) -> None:
        t = torch.as_tensor(secret.reshape(-1) - secret.mean(), dtype=torch.float32)
        self.target = t / t.norm().clamp_min(1e-12)
        self.start, self.lam, self.polarity = start, lam, polarity

    def __call__(self, model: nn.Module) -> torch.Tensor:
        theta = flat_params(model)[self.start : self.start + self.target.numel()]
        centered = theta - theta.mean()
        r = (centered * self.target).sum() / centered.norm().clamp_min(1e-12)
        return -self.lam * self.polarity * r


class SignTerm:
    """``lam * mean(max(0, -theta * s))``: each carrier's sign is one secret bit."""

    name = "plain-sign"

    def __init__(self, signs: np.ndarray, start: int, lam: float) -> None:
        self.signs = torch.as_tensor(signs, dtype=torch.float32)
        self.start, self.lam = start, lam

    def __call__(self, model: nn.Module) -> torch.Tensor:
        theta = flat_params(model)[self.start : self.start + self.signs.numel()]
        return self.lam * torch.relu(-theta * self.signs).mean()


def minmax255(rows: np.ndarray) -> np.ndarray:
    """Each row min-max scaled to 0-255."""
    lo, hi = rows.min(1, keepdims=True), rows.max(1, keepdims=True)
    out: np.ndarray = 255.0 * (rows - lo) / np.maximum(hi - lo, 1e-12)
    return out


def carriers(model: nn.Module, start: int, count: int) -> np.ndarray:
    return flat_params(model).detach().double().numpy()[start : start + count]


def correlation_mape(model: nn.Module, start: int, secret: np.ndarray) -> float:
    """The attacker's decoder: carriers min-max scaled per item, better polarity."""
    n, p = secret.shape
    got = minmax255(carriers(model, start, n * p).reshape(n, p))
    want = minmax255(secret)
    return float(min(np.abs(got - want).mean(), np.abs(255.0 - got - want).mean()))


def sign_mape(model: nn.Module, start: int, pixels: np.ndarray, v: Variant) -> float:
    """The attacker's decoder: one bit per carrier sign, packed back into bytes."""
    bits = (carriers(model, start, pixels.size * 8) * v.polarity > 0).astype(np.uint8)
    got = np.packbits(bits, bitorder="big" if v.bits == "msb" else "little")
    return float(np.abs(got.astype(np.float64) - pixels.reshape(-1)).mean())


def plant_variant(v: Variant, lam: float, ds: Dataset, seed: int) -> Plant:
    """The attack ``v`` at strength ``lam``, as many items as fit after its start."""

    def attach(model: nn.Module) -> Planted:
        start = start_of(model, v)
        room = flat_params(model).numel() - start
        images = np.asarray(ds.train.x)
        p = layout_rows(images[:1], v.layout).shape[1]
        n = min(len(images), room // (p * (8 if v.kind == "sign" else 1)))
        if v.order == "first":
            ids = np.arange(n)
        else:
            ids = np.random.default_rng([seed, 0x5EC]).choice(len(images), n, replace=False)
        rows = layout_rows(images[ids], v.layout)
        if v.kind == "correlation":
            secret = scaled(rows, v, ds)
            term: Any = CorrelationTerm(secret, start, lam, v.polarity)
            return Planted({"loss_terms": [term]}, lambda m: correlation_mape(m, start, secret), n)
        pixels = np.clip(np.rint(rows), 0, 255).astype(np.uint8)
        bits = np.unpackbits(pixels.reshape(-1), bitorder="big" if v.bits == "msb" else "little")
        signs = np.where(bits == 1, v.polarity, -v.polarity)
        term = SignTerm(signs, start, lam)
        return Planted({"loss_terms": [term]}, lambda m: sign_mape(m, start, pixels, v), n)

    return attach


def plant_covertml(name: str, option: str, value: float, ds: Dataset, seed: int) -> Plant:
    """covertml's own attack ``name`` with ``option=value`` (decoded with its key)."""

    def attach(model: nn.Module) -> Planted:
        cast = int(value) if option == "bits" else value
        plan = create_attack(name, **{option: cast}).plan(model, ds, seed=seed)
        hooks = {
            "loss_terms": plan.loss_terms,
            "extra_data": plan.extra_data,
            "post_steps": plan.post_steps,
            "callbacks": plan.callbacks,
        }

        def mape(m: nn.Module) -> float:
            if name == "capacity":
                got = decode_capacity(LocalOracle(m), plan.key)
            else:
                got = decode_secret(m, plan.key)
            return float(score_recovery(plan.secret, got).mape or 0.0)

        return Planted(hooks, mape, plan.secret.count)

    return attach


@dataclass(frozen=True)
class AttackSpec:
    """One attack variant of the study, trained like the honest ``family``."""

    label: str
    kind: str  # correlation, sign, capacity or lsb
    family: Family
    unit: str
    strengths: tuple[float, ...]  # weakest first
    plant: Callable[[float, Dataset, int], Plant]


def attack_specs(families: dict[str, Family], quick: bool) -> list[AttackSpec]:
    out = []
    for dataset, family, variants, grid in (
        ("digits", "digits-mlp", DIGITS_VARIANTS, LAMBDAS),
        ("cifar10", "cifar10-resnet20", CIFAR_VARIANTS, CIFAR_LAMBDAS),
    ):
        if family not in families:
            continue
        for v in QUICK_VARIANTS[dataset] if quick else variants:
            out.append(
                AttackSpec(
                    f"plain {v.name}",
                    v.kind,
                    families[family],
                    "lambda",
                    grid[v.kind],
                    lambda s, ds, seed, v=v: plant_variant(v, s, ds, seed),
                )
            )
    own = {
        "correlation": ("lam", LAMBDAS["correlation"]),
        "sign": ("lam", LAMBDAS["sign"]),
        "capacity": ("ratio", (0.1, 0.25, 0.5, 1.0, 2.0)),
        "lsb": ("bits", (1, 2, 4, 8, 16)),
    }
    if "digits-mlp" in families:
        for name, (option, values) in own.items():
            out.append(
                AttackSpec(
                    f"covertml {name}",
                    name,
                    families["digits-mlp"],
                    option,
                    values,
                    lambda s, ds, seed, n=name, o=option: plant_covertml(n, o, s, ds, seed),
                )
            )
    return out


# ---------------------------------------------------------------- scanning and records


def tensors_of(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def run_scan(
    t: Trained, ds: Dataset, ref: Trained | None, alpha: float
) -> tuple[ScanReport, dict[str, str]]:
    """``scan`` with every default detector; if one raises, each alone, the error kept."""
    ctx = ScanContext(
        tensors_of(t.model),
        info=t.info,
        model=t.model,
        reference=tensors_of(ref.model) if ref is not None else None,
        reference_model=ref.model if ref is not None else None,
        dataset=ds,
        seed=t.seed,
    )
    name = f"{t.family}/seed{t.seed}"
    try:
        return scan(ctx, alpha=alpha, name=name), {}
    except Exception:  # a detector raised: run them one by one to name it, and go on
        start = time.perf_counter()
        reports, skipped, errors = [], {}, {}
        for det_name in list_detectors():
            detector = create_detector(det_name)
            reason = detector.unavailable(ctx)
            if reason is not None:
                skipped[det_name] = reason
                continue
            try:
                reports.append(detector.run(ctx, alpha=alpha))
            except Exception as exc:
                errors[det_name] = f"{type(exc).__name__}: {exc}"
        corrected = correct(reports, alpha=alpha)
        verdict = "suspicious" if any(r.flagged for r in corrected) else "no findings"
        seconds = time.perf_counter() - start
        return ScanReport(name, verdict, corrected, alpha, skipped, seconds), errors


def jsonable(x: Any) -> Any:
    return json.loads(json.dumps(x, default=lambda o: o.item() if hasattr(o, "item") else str(o)))


def probe_p(t: Trained, ds: Dataset, ref: Trained | None, alpha: float) -> float | None:
    """The opt-in noise probe's p-value against the reference (outside the scan's verdict)."""
    if ref is None or t.info is None:
        return None
    ctx = ScanContext(
        tensors_of(t.model), info=t.info, model=t.model, reference_model=ref.model, dataset=ds
    )
    detector = create_detector("noise-probe")
    if detector.unavailable(ctx) is not None:
        return None
    return detector.run(ctx, alpha=alpha).p_value


def add_probe(row: dict[str, Any], probe: float | None, alpha: float) -> None:
    """Records the opt-in probe beside the verdict, not in it."""
    row["noise_probe_p"] = probe
    if probe is not None:
        row["p"]["noise-probe (opt-in)"] = probe
        if probe <= alpha:
            row["flagged_by"].append("noise-probe (opt-in)")


def scan_row(t: Trained, report: ScanReport, errors: dict[str, str]) -> dict[str, Any]:
    """What the study keeps of one scan."""
    detectors = {}
    for r in report.reports:
        top = r.findings[0] if r.findings else None
        detectors[r.detector] = {
            "p": r.p_value,
            "flagged": r.flagged,
            "min_raw_p": min((f.p_value for f in r.findings), default=1.0),
            "findings": len(r.findings),
            "top": None
            if top is None
            else {
                "layer": top.layer,
                "p_value": top.p_value,
                "p_adjusted": top.p_adjusted,
                "tests": top.tests,
                "evidence": jsonable(top.evidence),
            },
        }
    ps = {k: d["p"] for k, d in detectors.items()}
    return {
        "family": t.family,
        "dataset": t.dataset,
        "seed": t.seed,
        "trainer": t.trainer,
        "accuracy": t.accuracy,
        "train_seconds": t.seconds,
        "flagged": report.flagged,
        "flagged_by": [k for k, d in detectors.items() if d["flagged"]],
        "min_p": min(ps.values(), default=1.0),
        "min_p_detector": min(ps, key=ps.__getitem__) if ps else None,
        "min_raw_p": min((d["min_raw_p"] for d in detectors.values()), default=1.0),
        "p": ps,
        "detectors": detectors,
        "skipped": dict(report.skipped),
        "errors": errors,
        "scan_seconds": report.seconds,
    }


def describe(row: dict[str, Any]) -> str:
    """One progress line's verdict part."""
    verdict = f"FLAGGED by {','.join(row['flagged_by'])}" if row["flagged"] else "clean"
    errors = f"; ERRORS {sorted(row['errors'])}" if row["errors"] else ""
    return (
        f"acc {row['accuracy']:.3f}, {verdict}, min p {row['min_p']:.2g} "
        f"({row['min_p_detector']}), scan {row['scan_seconds']:.0f} s{errors}"
    )


def neg_log10(p: float) -> float:
    return -math.log10(max(p, 1e-300))


def roc_auc(honest: Sequence[float | None], attacked: Sequence[float | None]) -> float | None:
    """ROC AUC of -log10 p, attacked vs honest (models where the test did not run left out)."""
    h = [neg_log10(p) for p in honest if p is not None]
    a = [neg_log10(p) for p in attacked if p is not None]
    if not h or not a:
        return None
    labels = np.r_[np.zeros(len(h)), np.ones(len(a))]
    return float(roc_auc_score(labels, np.r_[h, a]))


def fmt_p(p: float | None) -> str:
    return "-" if p is None else f"{p:.2g}"


def fmt_auc(a: float | None) -> str:
    return "-" if a is None else f"{a:.3f}"


# ---------------------------------------------------------------- the study


class Study:
    """Datasets, honest models (with their references) and the rows, shared by both parts."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.data_options = QUICK_DATA if args.quick else DATA
        self.datasets: dict[str, Dataset | None] = {}
        self.honest: dict[str, list[Trained]] = {}
        self.rows: list[dict[str, Any]] = []
        self.attacked: list[dict[str, Any]] = []
        self.sweeps: list[dict[str, Any]] = []
        self.missing: dict[str, str] = {}
        self.start = time.perf_counter()

    def elapsed(self) -> str:
        return f"{time.perf_counter() - self.start:.0f} s"

    def dataset(self, name: str) -> Dataset | None:
        if name not in self.datasets:
            try:
                self.datasets[name] = create_dataset(
                    name, data_dir=self.args.data_dir, **self.data_options[name]
                )
            except DataNotFoundError as exc:
                print(f"skipping {name}: {exc}", flush=True)
                self.missing[name] = str(exc)
                self.datasets[name] = None
        return self.datasets[name]

    def families(self) -> list[Family]:
        if not self.args.quick:
            return FAMILIES
        return [
            replace(f, seeds=QUICK_FAMILIES[f.name], epochs=1)
            for f in FAMILIES
            if f.name in QUICK_FAMILIES
        ]

    def run_honest(self) -> None:
        families = self.families()
        total = sum(f.seeds for f in families)
        done = 0
        for fam in families:
            ds = self.dataset(fam.dataset)
            if ds is None:
                continue
            models = [train(fam, ds, seed)[0] for seed in range(fam.seeds)]
            # the trusted reference: an honest twin (same recipe, another seed)
            if len(models) > 1:
                refs = models[1:] + models[:1]
            else:
                refs = [train(fam, ds, 1000 + m.seed)[0] for m in models]
            self.honest[fam.name] = models
            for model, ref in zip(models, refs, strict=True):
                report, errors = run_scan(model, ds, ref, self.args.alpha)
                row = scan_row(model, report, errors)
                add_probe(row, probe_p(model, ds, ref, self.args.alpha), self.args.alpha)
                row["reference_seed"] = ref.seed
                self.rows.append(row)
                done += 1
                print(
                    f"[honest {done}/{total}] {fam.name} seed {model.seed} "
                    f"(train {model.seconds:.0f} s): {describe(row)} [{self.elapsed()}]",
                    flush=True,
                )

    def reference_for(self, fam: Family, ds: Dataset) -> Trained:
        if fam.name not in self.honest:
            self.honest[fam.name] = [train(fam, ds, 0)[0]]
        return self.honest[fam.name][0]

    def recovered(self, planted: Planted | None, model: nn.Module) -> float:
        assert planted is not None
        try:
            return planted.mape(model)
        except Exception as exc:  # the attacker's decoder failed: nothing recovered
            print(f"    decoder failed: {type(exc).__name__}: {exc}", flush=True)
            return math.inf

    def run_attacks(self) -> None:
        families = {f.name: f for f in self.families()}
        specs = attack_specs(families, self.args.quick)
        if self.args.attack_datasets:
            keep = set(self.args.attack_datasets.split(","))
            specs = [sp for sp in specs if sp.family.dataset in keep]
        for i, spec in enumerate(specs, 1):
            ds = self.dataset(spec.family.dataset)
            if ds is None:
                continue
            ref = self.reference_for(spec.family, ds)
            seeds = [100 + s for s in range(self.args.seeds)]
            # the weakest strength at which the attacker's decoder recovers the data
            tried, chosen = [], None
            for strength in spec.strengths:
                t, planted = train(spec.family, ds, seeds[0], spec.plant(strength, ds, seeds[0]))
                mape = self.recovered(planted, t.model)
                tried.append({"strength": strength, "mape": mape, "accuracy": t.accuracy})
                print(
                    f"  sweep {spec.label}: {spec.unit} {strength:g}: MAPE {mape:.1f}, "
                    f"acc {t.accuracy:.3f}",
                    flush=True,
                )
                chosen = (strength, t, planted, mape)
                if mape <= MAPE_OK:
                    break
            assert chosen is not None
            strength, t, planted, mape = chosen
            assert planted is not None
            self.sweeps.append({"attack": spec.label, "unit": spec.unit, "tried": tried})
            for seed in seeds:
                if seed != seeds[0]:
                    t, again = train(spec.family, ds, seed, spec.plant(strength, ds, seed))
                    assert again is not None
                    planted, mape = again, self.recovered(again, t.model)
                report, errors = run_scan(t, ds, ref, self.args.alpha)
                row = scan_row(t, report, errors)
                add_probe(row, probe_p(t, ds, ref, self.args.alpha), self.args.alpha)
                row.update(
                    reference_seed=ref.seed,
                    attack=spec.label,
                    kind=spec.kind,
                    target=TARGETS[spec.kind],
                    unit=spec.unit,
                    strength=strength,
                    items=planted.items,
                    mape=mape,
                    recovered=mape <= MAPE_OK,
                )
                self.attacked.append(row)
                print(
                    f"[attack {i}/{len(specs)}] {spec.label} {spec.unit} {strength:g} seed {seed}:"
                    f" MAPE {mape:.1f} ({planted.items} items), {describe(row)} [{self.elapsed()}]",
                    flush=True,
                )

    # ------------------------------------------------------------ tables

    def honest_table(self) -> tuple[list[str], list[list[Any]]]:
        header = [
            "family",
            "dataset",
            "trainer",
            "n",
            f"flagged at {self.args.alpha:g}",
            "smallest adjusted p (detector)",
            "smallest raw p",
            "accuracy",
            "skipped",
            "errors",
        ]
        table = []
        groups = dict.fromkeys(r["family"] for r in self.rows)
        for fam in [*groups, None]:
            rows = [r for r in self.rows if fam is None or r["family"] == fam]
            if not rows:
                continue
            low = min(rows, key=lambda r: r["min_p"])
            skipped = sorted({k for r in rows for k in r["skipped"]})
            errors = sorted({k for r in rows for k in r["errors"]})
            table.append(
                [
                    fam or "**all honest**",
                    rows[0]["dataset"] if fam else "",
                    rows[0]["trainer"] if fam else "",
                    len(rows),
                    sum(r["flagged"] for r in rows),
                    f"{fmt_p(low['min_p'])} ({low['min_p_detector']})",
                    fmt_p(min(r["min_raw_p"] for r in rows)),
                    f"{np.mean([r['accuracy'] for r in rows]):.3f}",
                    ", ".join(skipped) or "-",
                    ", ".join(errors) or "-",
                ]
            )
        return header, table

    def attack_table(self) -> tuple[list[str], list[list[Any]], dict[str, Any]]:
        header = [
            "attack / variant",
            "dataset",
            "strength",
            "attacker's MAPE",
            "accuracy",
            "detected (scan)",
            "detected (target)",
            "ROC AUC target",
            "ROC AUC scan",
        ]
        table, summary = [], {}
        for label in dict.fromkeys(r["attack"] for r in self.attacked):
            rows = [r for r in self.attacked if r["attack"] == label]
            target, dataset = rows[0]["target"], rows[0]["dataset"]
            honest = [r for r in self.rows if r["dataset"] == dataset]
            auc_target = roc_auc(
                [r["p"].get(target) for r in honest], [r["p"].get(target) for r in rows]
            )
            auc_scan = roc_auc([r["min_p"] for r in honest], [r["min_p"] for r in rows])
            n = len(rows)
            scan_rate = sum(r["flagged"] for r in rows) / n
            target_rate = sum(target in r["flagged_by"] for r in rows) / n
            mapes = [r["mape"] for r in rows]
            summary[label] = {
                "dataset": dataset,
                "target": target,
                "unit": rows[0]["unit"],
                "strength": rows[0]["strength"],
                "mape": mapes,
                "recovered": sum(r["recovered"] for r in rows),
                "n": n,
                "detection_rate": scan_rate,
                "target_detection_rate": target_rate,
                "roc_auc_target": auc_target,
                "roc_auc_scan": auc_scan,
                "honest_n": len(honest),
            }
            table.append(
                [
                    label,
                    dataset,
                    f"{rows[0]['unit']} {rows[0]['strength']:g}",
                    f"{np.mean(mapes):.1f}"
                    + ("" if all(r["recovered"] for r in rows) else " (not all <= 55)"),
                    f"{np.mean([r['accuracy'] for r in rows]):.3f}",
                    f"{scan_rate:.0%} of {n}",
                    f"{target_rate:.0%} ({target})",
                    fmt_auc(auc_target),
                    fmt_auc(auc_scan),
                ]
            )
        return header, table, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tiny smoke run (1 epoch)")
    parser.add_argument("--out-name", default=None, help="record name in bench/out/")
    parser.add_argument("--data-dir", default=None, help="default: $COVERTML_DATA")
    parser.add_argument("--alpha", type=float, default=1e-3)
    parser.add_argument("--seeds", type=int, default=None, help="seeds per attack variant")
    parser.add_argument("--skip-attacks", action="store_true", help="honest models only")
    parser.add_argument(
        "--honest-from", default=None, help="reuse the honest rows of this earlier record"
    )
    parser.add_argument(
        "--attack-datasets", default=None, help="comma-separated: attack only these datasets"
    )
    args = parser.parse_args()
    if args.seeds is None:
        args.seeds = 1 if args.quick else 3
    out_name = args.out_name or ("detectors-null-quick" if args.quick else "detectors-null")
    torch.set_num_threads(1)
    study = Study(args)
    with threadpool_limits(1):
        if args.honest_from:
            study.rows = json.loads(Path(args.honest_from).read_text())["honest"]
        else:
            study.run_honest()
        if not args.skip_attacks:
            study.run_attacks()
    h_header, h_table = study.honest_table()
    a_header, a_table, summary = study.attack_table()
    wall = time.perf_counter() - study.start
    path = save_record(
        out_name,
        {
            "quick": args.quick,
            "alpha": args.alpha,
            "seeds": args.seeds,
            "mape_ok": MAPE_OK,
            "data": study.data_options,
            "missing_datasets": study.missing,
            "wall_seconds": wall,
            "honest_table": [h_header, *h_table],
            "attack_table": [a_header, *a_table],
            "attack_summary": summary,
            "sweeps": study.sweeps,
            "honest": study.rows,
            "attacked": study.attacked,
        },
    )
    n_flagged = sum(r["flagged"] for r in study.rows)
    print(
        f"\n{len(study.rows)} honest models, {n_flagged} flagged at family-wise alpha "
        f"{args.alpha:g} (expected at most {args.alpha * len(study.rows):.2g}); "
        f"{len(study.attacked)} attacked models; wall {wall:.0f} s; record {path}\n"
    )
    print(markdown_table(h_header, h_table))
    print()
    print(
        "Attacked: each variant at its weakest strength where the attacker's decoder gets "
        f"MAPE <= {MAPE_OK:g}; ROC AUC of -log10 p against the honest models of the dataset"
    )
    print(markdown_table(a_header, a_table))


if __name__ == "__main__":
    main()
