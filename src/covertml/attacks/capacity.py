"""Capacity abuse (black-box): malicious augmentation whose labels carry the secret.

The training code adds ``m`` synthetic inputs, generated from a keyed seed, labelled with
the secret's bits written in base ``c`` (the class count; see
:mod:`covertml.attacks.labelcode`). The model memorizes these labels; the adversary later
regenerates the same inputs from the key, asks the deployed model for their labels -- a
label-only black box is enough -- and decodes the secret. Pixels are quantized to
``bits_per_pixel`` bits (decoded to bucket centres); text tokens go whole.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
from torch import nn

from covertml.attacks.base import (
    Attack,
    AttackPlan,
    bits_to_symbols,
    register_attack,
    symbols_to_bits,
)
from covertml.attacks.ecc import (
    check_nsym,
    data_bits,
    protect_bits,
    protected_bits,
    recover_bits,
)
from covertml.attacks.key import AttackKey
from covertml.attacks.labelcode import (
    DEFAULT_CHUNK_BITS,
    LabelCode,
    bits_to_labels,
    dequantize,
    label_code,
    labels_to_bits,
    quantize,
)
from covertml.attacks.oracle import LabelOracle, LocalOracle
from covertml.attacks.secrets import Secret, secret_from_dataset
from covertml.attacks.synthetic import (
    IMAGE_GENERATORS,
    TextPool,
    make_text_pool,
    synthetic_documents,
    synthetic_images,
)
from covertml.data.base import Dataset, Split, images_to_float
from covertml.errors import ConfigError
from covertml.metrics import accuracy
from covertml.training.evaluate import predict_labels

log = logging.getLogger(__name__)

QUERY_CHUNK = 8192  # synthetic inputs built and asked at a time while decoding


@register_attack
@dataclass(frozen=True, kw_only=True)
class CapacityAttack(Attack):
    """Capacity abuse: synthetic inputs labelled with the secret, read back by label queries.

    Args:
        bits_per_pixel: Bits kept per grayscale pixel, 1-8 (the paper: 4).
        ratio: Synthetic inputs per real training input, m/n, when the number of secret
            items is not given (default: what ``min_items`` items need; the paper: 1.0).
        generator: Synthetic images: ``uniform`` (noise; the default, learned best and at
            the least accuracy cost in docs/RESULTS.md) or ``sparse`` (black with a few
            bright pixels, the paper's kind).
        pool_size: Text only: vocabulary words that synthetic documents draw from. A
            large pool and short documents keep the synthetic rows nearly orthogonal, so a
            linear model can memorize their labels (20 Newsgroups: 100% with 20,000 words
            and 5 words per document, 41% with 1,000 and 20).
        doc_words: Text only: words per synthetic document.
        chunk_bits: Most secret bits per group of labels (1-63); a wrong label garbles
            one group, so smaller groups localize errors at a small cost in density.
        learn_to: Keep training past the configured epochs until the model reproduces
            this share of the synthetic labels (every wrong label garbles a group of
            pixels); 0 trains the configured epochs only.
        max_extra_epochs: Bound of those extra epochs.
        min_items: With neither ``ratio`` nor a number of secrets, as many synthetic
            inputs as this many whole items need (a handful: every synthetic input the
            model must memorize costs the task some capacity; 4 kept grey CIFAR-10 on an
            MLP at -0.8 points where 8 cost -1.6).
        max_ratio: ...but that handful never takes m/n past this (the paper's "several
            times the training set"), except as far as one whole item needs: a binary
            model carries one bit per label, so 8 LFW faces would be 50 times the data.
        ecc: Reed-Solomon parity bytes per 255-byte codeword over the secret's bits
            (:mod:`covertml.attacks.ecc`; even, 0-128, 0: none). Label groups are then
            whole bytes (16 bits in 5 labels on a 10-class model), so a wrong label costs
            at most two bytes of a codeword, and each codeword is exact as long as it has
            at most ``ecc / 2`` wrong bytes. The default 16 costs 7% more synthetic inputs
            and corrects 8 bytes in 255 -- four wrong labels in about 640.
    """

    name: ClassVar[str] = "capacity"
    threat: ClassVar = "black-box"

    bits_per_pixel: int = 4
    ratio: float | None = None
    generator: str = "uniform"
    pool_size: int = 20000
    doc_words: int = 5
    chunk_bits: int = DEFAULT_CHUNK_BITS
    learn_to: float = 0.999
    max_extra_epochs: int = 10
    min_items: int = 4
    max_ratio: float = 4.0
    ecc: int = 16

    def __post_init__(self) -> None:
        if (
            not 0 <= self.learn_to <= 1
            or self.max_extra_epochs < 0
            or self.min_items < 1
            or self.max_ratio <= 0
        ):
            raise ConfigError(
                "learn_to must be in [0, 1], max_extra_epochs >= 0 and min_items >= 1",
                fix="e.g. learn_to=0.999 max_extra_epochs=10 min_items=4",
            )
        if not 1 <= self.bits_per_pixel <= 8:
            raise ConfigError(
                f"bits_per_pixel must be 1-8, got {self.bits_per_pixel}", fix="e.g. 4"
            )
        if self.ratio is not None and self.ratio <= 0:
            raise ConfigError(f"ratio must be > 0, got {self.ratio}", fix="e.g. ratio=1.0")
        if self.generator not in IMAGE_GENERATORS:
            raise ConfigError(
                f"unknown generator {self.generator!r}",
                fix=f"choose one of: {', '.join(IMAGE_GENERATORS)}",
            )
        label_code(2, self.chunk_bits)  # validates chunk_bits
        check_nsym(self.ecc)
        if self.ecc and self.chunk_bits < 8:
            raise ConfigError(
                "with ecc, label groups are whole bytes: chunk_bits must be at least 8",
                fix="raise chunk_bits to 8 or more, or set ecc=0",
            )
        if self.pool_size < 2 or self.doc_words < 1:
            raise ConfigError("pool_size must be >= 2 and doc_words >= 1", fix="e.g. 20000, 5")

    def symbol_bits(self, secret: Secret) -> int:
        """Bits written per secret symbol."""
        return self.bits_per_pixel if secret.kind == "image" else secret.bits_per_symbol

    def plan(
        self, model: nn.Module, dataset: Dataset, *, n_secrets: int | None = None, seed: int = 0
    ) -> AttackPlan:
        """Chooses the secret, builds the labelled synthetic set and the key."""
        code = label_code(dataset.num_classes, self.chunk_bits, align=8 if self.ecc else 1)
        ecc = self.ecc
        full = secret_from_dataset(dataset)
        bps = self.symbol_bits(full)
        n = len(dataset.train)
        if n_secrets is None:
            if self.ratio is None:  # the default: a handful of whole items
                few = min(self.min_items, full.count)
                want = code.labels_for(protected_bits(full.size_of(few) * bps, ecc))
                one = code.labels_for(protected_bits(full.size_of(1) * bps, ecc))
                # never past max_ratio for the handful, but always one whole item
                budget = max(min(want, round(self.max_ratio * n)), one)
            else:
                budget = max(1, round(self.ratio * n))
            items = full.fit_count(data_bits(code.bits_in(budget), ecc) // bps)
            if items == 0:
                need = code.labels_for(protected_bits(full.size_of(1) * bps, ecc))
                raise ConfigError(
                    f"m/n = {self.ratio or 1.0} gives {budget:,} synthetic inputs, too few "
                    f"for one secret item ({need:,} needed)",
                    fix=f"raise ratio to at least {need / n:.3g} or pass --n-secrets",
                )
        else:
            if not 1 <= n_secrets <= full.count:
                raise ConfigError(
                    f"asked for {n_secrets} secret items; the training set has {full.count}",
                    fix=f"use --n-secrets between 1 and {full.count}",
                )
            items = n_secrets
        secret = full.first(items)
        symbols = quantize(secret.values, bps) if secret.kind == "image" else secret.values
        labels = bits_to_labels(protect_bits(symbols_to_bits(symbols, bps), ecc), code)
        m = labels.size
        settings: dict[str, Any] = {"m": m, "n_train": n, "code": code.to_dict()}
        if dataset.modality == "image":
            shape = tuple(int(v) for v in np.asarray(dataset.train.x).shape[1:])
            x = synthetic_images(self.generator, m, shape, seed)  # type: ignore[arg-type]
            settings["image_shape"] = list(shape)
        else:
            pool = dataset_text_pool(
                dataset, pool_size=self.pool_size, doc_words=self.doc_words, seed=seed
            )
            _, x = synthetic_documents(pool, m, seed)
            settings["pool"] = pool.to_dict()
        log.info(
            "capacity abuse: %d items -> %d synthetic inputs (m/n = %.3f, %.2f bits/label)",
            items,
            m,
            m / n,
            code.bits_per_label,
        )
        key = self.make_key(secret, seed=seed, model=model, dataset=dataset, settings=settings)
        extra = Split(x, labels)
        watch = _SyntheticAccuracy(extra, target=self.learn_to)
        return AttackPlan(
            secret,
            key,
            extra_data=extra,
            callbacks=(watch,),
            extend_while=watch.needs_more if self.learn_to > 0 else None,
            max_extra_epochs=self.max_extra_epochs if self.learn_to > 0 else 0,
        )

    @classmethod
    def decode(cls, model: nn.Module, key: AttackKey) -> Secret:
        """Asks ``model`` (in this process) for the synthetic inputs' labels and decodes."""
        return decode_capacity(LocalOracle(model), key)


class _SyntheticAccuracy:
    """Trainer callback: how well the model already reproduces the synthetic labels."""

    def __init__(self, extra: Split, *, target: float = 1.0, limit: int = 20000) -> None:
        self.x, self.y = extra.x[:limit], extra.y[:limit]
        self.target = target
        self.last = 0.0

    def __call__(self, epoch: int, model: nn.Module) -> dict[str, float]:
        self.last = accuracy(self.y, predict_labels(model, self.x))
        return {"synthetic_acc": self.last}

    def needs_more(self) -> bool:
        """Whether the synthetic labels are not yet learned to the target."""
        return self.last < self.target


def synthetic_inputs(key: AttackKey) -> np.ndarray | sp.csr_matrix:
    """All ``m`` synthetic inputs of ``key``: ``uint8`` images ``m x H x W x C`` or CSR rows."""
    settings = key.settings
    m = int(settings["m"])
    if "pool" in settings:
        return synthetic_documents(TextPool.from_dict(settings["pool"]), m, key.seed)[1]
    shape = tuple(int(v) for v in settings["image_shape"])
    return synthetic_images(str(settings["generator"]), m, shape, key.seed)  # type: ignore[arg-type]


def decode_capacity(oracle: LabelOracle, key: AttackKey) -> Secret:
    """Recovers the secret by asking ``oracle`` for the synthetic inputs' labels.

    Example:
        >>> import numpy as np
        >>> from covertml.attacks import create_attack
        >>> from covertml.attacks.oracle import FunctionOracle
        >>> from covertml.data import create_dataset
        >>> from covertml.models import create_model_for
        >>> data = create_dataset("digits")
        >>> plan = create_attack("capacity").plan(create_model_for(data), data, n_secrets=1)
        >>> answers = iter([plan.extra_data.y])  # a perfect model answers the true labels
        >>> oracle = FunctionOracle(lambda x: next(answers), batch_size=10**6)
        >>> decoded = decode_capacity(oracle, plan.key)
        >>> int(np.abs(decoded.values - plan.secret.values).max()) <= 8
        True
    """
    settings = key.settings
    code = LabelCode(**{k: int(v) for k, v in settings["code"].items()})
    inputs = synthetic_inputs(key)
    if sp.issparse(inputs):
        labels = oracle(inputs)
    else:  # converted to model-ready floats a chunk at a time
        parts = [
            oracle(images_to_float(inputs[i : i + QUERY_CHUNK]))
            for i in range(0, inputs.shape[0], QUERY_CHUNK)
        ]
        labels = np.concatenate(parts) if parts else np.zeros(0, np.int64)
    template = Secret.from_spec(key.secret, np.zeros(0, np.int64))
    n_symbols = Secret.spec_symbols(key.secret)
    bps = int(settings["bits_per_pixel"]) if template.kind == "image" else template.bits_per_symbol
    n_bits, ecc = n_symbols * bps, int(settings.get("ecc", 0))
    raw = labels_to_bits(labels, code, protected_bits(n_bits, ecc))
    bits, report = recover_bits(raw, ecc, n_bits)
    if ecc:
        log.info(
            "capacity decoding: %d of %d codewords corrected (%d bytes), %d beyond repair",
            report.corrected,
            report.blocks,
            report.byte_errors,
            report.failed,
        )
    symbols = bits_to_symbols(bits, bps)
    if template.kind == "image":
        return template.with_values(dequantize(symbols, bps))
    return template.with_values(np.clip(symbols, 0, template.levels - 1))


def dataset_text_pool(dataset: Dataset, *, pool_size: int, doc_words: int, seed: int) -> TextPool:
    """A keyed word pool for ``dataset``'s vocabulary, vectorized as its TF-IDF rows are."""
    docs = dataset.train.documents
    if docs is None:
        raise ConfigError(
            f"dataset {dataset.name!r} has no token sequences",
            fix="use a text dataset loaded by covertml (20news, imdb)",
        )
    tfidf = dict(dataset.extra.get("tfidf") or {})
    return make_text_pool(
        docs.offsets,
        docs.tokens,
        n_features=int(dataset.train.x.shape[1]),
        pool_size=pool_size,
        seed=seed,
        sublinear_tf=bool(tfidf.get("sublinear_tf", False)),
        doc_words=doc_words,
    )
