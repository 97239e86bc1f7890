"""Black-box probe for capacity abuse: are the model's labels on noise rougher than honest?

Capacity abuse trains the model to give keyed noise inputs the secret's labels, which are
spread evenly over the classes and have nothing to do with the inputs' features; the model
carries that habit over to any noise, so its labels on noise become *rough*: a small
change of a noise input changes its label more often than it does for an honest model,
which labels noise by the same smooth features it uses for real inputs.

The probe asks the model -- a local file or the prediction API, labels only -- for the
labels of ``queries`` uniform-noise inputs and of a copy of each with ``redraw_share`` of
its pixels redrawn (text models: synthetic documents of the dataset's words, one word of
each redrawn), and asks a trusted reference model for the task (any architecture) the
same. Null: the model is no less stable than the honest reference -- an honestly trained
twin is exchangeable with it. The test is McNemar's exact one-sided test on the pairs: of
the inputs where exactly one of the two models changed its label, under the null at most
half are the model's (binomial, ``p = P(X >= b)``, ``X ~ Bin(b + c, 1/2)``). A
random-init or constant model is very stable and is not flagged; the null is only as good
as the reference: an honest model trained by a rougher recipe than the reference's (other
architecture, fewer epochs) can be flagged. The agreement with the reference on the noise
inputs is reported as evidence.

**Not in the default scan.** The p-value accounts for which noise inputs were drawn, not
for how much honest models of one recipe differ from seed to seed, and one reference cannot
show that: on honest digits models about 2% of honest pairs reach p < 1e-3 at 2,000
queries, and an honest ResNet-20 whose labels changed on 1.8% of noise inputs against its
twin's 0.15% was flagged. With exchangeable honest twins the only exact statement is a rank
(p >= 1 / (references + 1)). So the probe runs only when asked for (``--detector
noise-probe``), as a screening test whose null is "no rougher than this reference".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from scipy import stats

from covertml.attacks.capacity import dataset_text_pool
from covertml.attacks.oracle import LabelOracle, LocalOracle
from covertml.attacks.synthetic import IMAGE_GENERATORS, vectorize
from covertml.audit.base import (
    DEFAULT_ALPHA,
    Detector,
    DetectorReport,
    Finding,
    ScanContext,
    register_detector,
    report_from_findings,
)
from covertml.data.base import images_to_float
from covertml.devices import model_on
from covertml.errors import ConfigError
from covertml.training.evaluate import predict_labels

PROBE_SEED_TAG = 0x9808


def label_entropy(labels: np.ndarray, classes: int) -> float:
    """Entropy of the label histogram over ``log(classes)`` (0 = one class, 1 = uniform).

    Example:
        >>> label_entropy(np.array([0, 1, 0, 1]), 2), label_entropy(np.array([3, 3]), 10)
        (1.0, 0.0)
    """
    if classes < 2 or labels.size == 0:
        return 0.0
    p = np.bincount(labels, minlength=classes) / labels.size
    p = p[p > 0]
    return max(0.0, float(-(p * np.log(p)).sum() / np.log(classes)))  # never -0.0


def redraw(images: np.ndarray, share: float, rng: np.random.Generator) -> np.ndarray:
    """Copy of ``uint8`` images with each value redrawn uniformly with probability ``share``.

    Example:
        >>> a = np.zeros((2, 4, 4, 1), np.uint8)
        >>> bool((redraw(a, 0.0, np.random.default_rng(0)) == a).all())
        True
    """
    out = images.copy()
    mask = rng.random(images.shape) < share
    out[mask] = rng.integers(0, 256, size=int(mask.sum()), dtype=np.uint8)
    return out


def mcnemar_greater(model_only: int, reference_only: int) -> float:
    """Exact one-sided McNemar p-value: the model changes no more often than the reference.

    Example:
        >>> mcnemar_greater(5, 0), mcnemar_greater(0, 0), mcnemar_greater(1, 1)
        (0.03125, 1.0, 0.75)
    """
    total = model_only + reference_only
    return float(stats.binom.sf(model_only - 1, total, 0.5)) if total else 1.0


@register_detector
@dataclass(frozen=True, kw_only=True)
class NoiseProbe(Detector):
    """Black-box probe: are labels on noise less stable than a reference model's?

    Attributes:
        queries: Noise inputs (the model is asked twice that, with the perturbed copies).
        redraw_share: Share of each image's pixels redrawn in its perturbed copy (text
            documents get one of their words redrawn instead).
    """

    name: ClassVar[str] = "noise-probe"
    in_default: ClassVar[bool] = False  # its null ignores seed-to-seed variation: opt in
    kind: ClassVar[str] = "black-box"

    queries: int = 2000
    redraw_share: float = 0.05

    def __post_init__(self) -> None:
        if self.queries < 1 or not 0.0 < self.redraw_share <= 1.0:
            raise ConfigError("noise-probe: need queries >= 1 and 0 < redraw_share <= 1")

    @staticmethod
    def _oracle(ctx: ScanContext) -> LabelOracle | None:
        if ctx.oracle is not None:
            return ctx.oracle
        return LocalOracle(ctx.model, device=ctx.device) if ctx.model is not None else None

    def unavailable(self, ctx: ScanContext) -> str | None:
        """Needs an oracle, the input shape and a reference model; text models the data."""
        if ctx.reference_model is None:
            return "needs a trusted --reference model of the task (its null)"
        if self._oracle(ctx) is None or ctx.info is None:
            return "needs a model covertml can rebuild, or --endpoint"
        if len(ctx.info.spec.input_shape) == 1 and ctx.dataset is None:
            return "text models also need --dataset (the probe's words)"
        return None

    def _inputs(self, ctx: ScanContext, seed: int) -> tuple[Any, Any]:
        """``queries`` noise inputs and their perturbed copies, model-ready."""
        assert ctx.info is not None
        shape = ctx.info.spec.input_shape
        rng = np.random.default_rng([seed, 1])
        if len(shape) == 3:
            c, h, w = shape
            images = IMAGE_GENERATORS["uniform"](rng, self.queries, (h, w, c))
            moved = redraw(images, self.redraw_share, rng)
            return images_to_float(images), images_to_float(moved)
        if ctx.dataset is None:
            raise ConfigError("noise-probe: text models need --dataset")
        pool = dataset_text_pool(ctx.dataset, pool_size=20000, doc_words=5, seed=seed)
        picks = rng.integers(0, pool.words.size, size=(self.queries, pool.doc_words))
        swapped = picks.copy()
        which = rng.integers(0, pool.doc_words, size=self.queries)
        swapped[np.arange(self.queries), which] = rng.integers(0, pool.words.size, self.queries)
        return vectorize(pool, picks), vectorize(pool, swapped)

    def run(self, ctx: ScanContext, *, alpha: float = DEFAULT_ALPHA) -> DetectorReport:
        """Asks the model and the reference about the noise inputs and their copies."""
        reason = self.unavailable(ctx)
        if reason is not None:
            raise ConfigError(f"noise-probe cannot run: {reason}")
        oracle, ref = self._oracle(ctx), ctx.reference_model
        assert oracle is not None and ref is not None and ctx.info is not None
        inputs, moved = self._inputs(ctx, ctx.seed ^ PROBE_SEED_TAG)
        labels, labels_moved = oracle(inputs), oracle(moved)
        ref = model_on(ref, ctx.device)
        ref_labels, ref_moved = predict_labels(ref, inputs), predict_labels(ref, moved)
        changed, ref_changed = labels != labels_moved, ref_labels != ref_moved
        model_only = int((changed & ~ref_changed).sum())
        reference_only = int((ref_changed & ~changed).sum())
        p = mcnemar_greater(model_only, reference_only)
        evidence: dict[str, Any] = {
            "queries": int(labels.size + labels_moved.size),
            "change_rate": float(changed.mean()),
            "reference_change_rate": float(ref_changed.mean()),
            "model_only_changed": model_only,
            "reference_only_changed": reference_only,
            "agreement": float((labels == ref_labels).mean()),
            "chance": 1.0 / ctx.info.spec.num_classes,
            "label_entropy": label_entropy(labels, ctx.info.spec.num_classes),
            "redraw_share": self.redraw_share,
        }
        score = float(changed.mean() - ref_changed.mean())
        null = "no less stable on noise than the reference model (exact McNemar, one-sided)"
        finding = Finding(self.name, None, score, p, null, 1, evidence=evidence)
        note = (
            "label changes on noise inputs when a few pixels are redrawn, against the "
            "reference model on the same inputs; capacity abuse makes labels on noise rough; "
            "the reference must be an honest model of the task trained like the model"
        )
        return report_from_findings(self.name, [finding], alpha=alpha, note=note)
