"""Black-box probe for capacity abuse: how does the model label noise it has never seen?

Capacity abuse trains the model to give keyed noise inputs the secret's labels, which are
spread evenly over the classes; the model carries that habit over to any noise. An
honestly trained model labels noise by the same smooth features it uses for real inputs,
so two honest models of the task mostly agree on noise (about 65% of uniform-noise inputs
on digits), while an abused model agrees with an honest one about as often as chance.

The probe asks the model -- a local file or the prediction API, labels only -- for the
labels of its own noise inputs. With a trusted reference model for the task (any
architecture) the score is the share of inputs where they disagree. Without one, the
score is how often a label changes when 5% of a noise input's pixels are redrawn: abused
models are less stable there, but the margin is small, so a reference is strongly advised.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from torch import nn

from covertml.attacks.capacity import dataset_text_pool
from covertml.attacks.oracle import LabelOracle, LocalOracle
from covertml.attacks.synthetic import IMAGE_GENERATORS, synthetic_documents
from covertml.audit.base import Detector, DetectorReport, Finding, ScanContext, register_detector
from covertml.data.base import images_to_float
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
    """Copy of ``uint8`` images with ``share`` of their values redrawn uniformly."""
    out = images.copy()
    mask = rng.random(images.shape) < share
    out[mask] = rng.integers(0, 256, size=int(mask.sum()), dtype=np.uint8)
    return out


@register_detector
@dataclass(frozen=True, kw_only=True)
class NoiseProbe(Detector):
    """Black-box probe: labels of noise inputs against a reference, or their stability.

    Attributes:
        queries: Noise inputs asked (twice that without a reference).
        threshold: Disagreement with the reference above which the model is flagged.
        stability_threshold: Without a reference: label-change rate flagged.
        redraw_share: Without a reference: share of pixels redrawn.
    """

    name: ClassVar[str] = "noise-probe"
    kind: ClassVar[str] = "black-box"

    queries: int = 1000
    threshold: float = 0.6
    stability_threshold: float = 0.22
    redraw_share: float = 0.05

    @staticmethod
    def _oracle(ctx: ScanContext) -> LabelOracle | None:
        if ctx.oracle is not None:
            return ctx.oracle
        return LocalOracle(ctx.model) if ctx.model is not None else None

    def unavailable(self, ctx: ScanContext) -> str | None:
        """Needs an oracle and the input shape; text models also a reference and the data."""
        if self._oracle(ctx) is None or ctx.info is None:
            return "needs a model covertml can rebuild, or --endpoint"
        text = len(ctx.info.spec.input_shape) == 1
        if text and (ctx.dataset is None or ctx.reference_model is None):
            return "text models need --dataset and a --reference model"
        return None

    def _text_inputs(self, ctx: ScanContext, seed: int) -> Any:
        assert ctx.dataset is not None
        pool = dataset_text_pool(ctx.dataset, pool_size=20000, doc_words=5, seed=seed)
        return synthetic_documents(pool, self.queries, seed)[1]

    def run(self, ctx: ScanContext) -> DetectorReport:
        """Asks the model about ``queries`` noise inputs and scores the answers."""
        oracle = self._oracle(ctx)
        assert oracle is not None and ctx.info is not None
        seed = ctx.seed ^ PROBE_SEED_TAG
        shape = ctx.info.spec.input_shape
        classes = ctx.info.spec.num_classes
        rng = np.random.default_rng([seed, 1])
        if len(shape) == 3:
            c, h, w = shape
            images = IMAGE_GENERATORS["uniform"](rng, self.queries, (h, w, c))
            inputs: Any = images_to_float(images)
        else:
            images, inputs = None, self._text_inputs(ctx, seed)
        labels = oracle(inputs)
        evidence: dict[str, float | int | str] = {
            "queries": int(labels.size),
            "label_entropy": label_entropy(labels, classes),
        }
        ref: nn.Module | None = ctx.reference_model
        if ref is not None:
            agree = float((predict_labels(ref, inputs) == labels).mean())
            score, threshold = 1.0 - agree, self.threshold
            evidence.update(against="reference", agreement=agree, chance=1.0 / classes)
            note = (
                "share of uniform-noise inputs labelled differently from the reference model; "
                "honest models of a task mostly agree on noise, capacity abuse scrambles it"
            )
        else:
            assert images is not None
            moved = oracle(images_to_float(redraw(images, self.redraw_share, rng)))
            evidence["queries"] = int(2 * labels.size)
            score, threshold = float((moved != labels).mean()), self.stability_threshold
            evidence.update(against="stability", redrawn_share=self.redraw_share)
            note = (
                f"share of noise labels that change when {100 * self.redraw_share:g}% of the "
                "pixels are redrawn; weak without a reference model (pass --reference)"
            )
        finding = Finding(self.name, None, score, threshold, score > threshold, evidence)
        return DetectorReport(self.name, score, threshold, score > threshold, (finding,), note)
