"""Owner audit on text: do the weights spell the owner's documents?

Two layouts a text attacker uses. **Token-index sequences**: the documents' vocabulary
indices, one per weight, concatenated (correlated value encoding on text); documents have
their own lengths, so a document may start at any offset and every offset is tried, each
document represented by its first ``prefix`` tokens. **Bag-of-words rows**: a weight row (or
column) as long as the vocabulary correlated with one document's TF-IDF or count vector.

Token sequences are judged against the owner's held-out documents, which the model never
trained on and which are exchangeable with the training documents unless the weights encode
the latter (:func:`~covertml.audit.owner.matching.selection_test`, exact). Bag-of-words
rows cannot be: an honest linear model's weights *are* a weighted sum of its training rows
(the representer theorem), so they favour training documents without encoding any. Rows
are therefore tested only for holding the first training documents in dataset order
(:func:`~covertml.audit.owner.matching.order_test_of`), which honest training never does;
a bag-of-words encoding of documents in another order is not detected.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from covertml.audit.base import Finding, ScanContext
from covertml.audit.owner.layouts import unit_rows
from covertml.audit.owner.matching import ItemTest, Matches, sample_ids, selection_test
from covertml.audit.owner.order import ORDER_ITEMS, order_test_of
from covertml.audit.owner.streams import windows
from covertml.data.base import Dataset, Documents
from covertml.models.checkpoint import describe

NULL = (
    "the owner's held-out (test) documents: training and held-out documents are "
    "exchangeable unless the weights encode training documents (hypergeometric, exact)"
)


def prefixes(
    docs: Documents, *, length: int, limit: int, rng: np.random.Generator, first: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Unit rows of the first ``length`` token ids of documents at least that long.

    Returns the rows and the documents' indices.

    Example:
        >>> docs = Documents.from_lists([[1, 2, 3], [4], [3, 2, 1]])
        >>> rows, ids = prefixes(docs, length=3, limit=9, rng=np.random.default_rng(0), first=True)
        >>> ids.tolist(), [round(float(v), 3) for v in rows[0]]
        ([0, 2], [-0.707, 0.0, 0.707])
    """
    eligible = np.flatnonzero(docs.lengths() >= length)
    ids = eligible[sample_ids(eligible.size, limit, rng, first=first)]
    starts = docs.offsets[ids]
    rows = docs.tokens[starts[:, None] + np.arange(length)].astype(np.float32)
    return unit_rows(rows), ids


def token_matches(values: np.ndarray, pooled: np.ndarray, *, chunk: int = 8192) -> Matches:
    """:class:`Matches` of every ``prefix``-long piece of ``values`` (all offsets)."""
    q = pooled.shape[1]
    view = np.lib.stride_tricks.sliding_window_view(values.astype(np.float32), q)
    parts = [
        Matches.of(np.abs(unit_rows(view[i : i + chunk]) @ pooled.T))
        for i in range(0, view.shape[0], chunk)
    ]
    return Matches.merge(parts)


def sparse_corr(pieces: np.ndarray, items: sp.csr_matrix) -> np.ndarray:
    """|Pearson| of dense ``pieces`` (``n x V``) with sparse ``items`` (``N x V``), ``n x N``.

    Example:
        >>> items = sp.csr_matrix(np.array([[0.0, 1.0, 0.0, 2.0]]))
        >>> sparse_corr(np.array([[1.0, 2.0, 1.0, 3.0]]), items).round(6).tolist()
        [[1.0]]
    """
    v = items.shape[1]
    x = items.astype(np.float64)
    mean_x = np.asarray(x.sum(axis=1)).ravel() / v
    norm_x = np.sqrt(np.maximum(np.asarray(x.multiply(x).sum(axis=1)).ravel() - v * mean_x**2, 0))
    p = pieces.astype(np.float64)
    mean_p = p.mean(axis=1)
    norm_p = np.sqrt(np.maximum((p * p).sum(axis=1) - v * mean_p**2, 0))
    dots = np.asarray(x @ p.T).T  # n x N
    cov = dots - v * mean_p[:, None] * mean_x[None, :]
    denom = norm_p[:, None] * norm_x[None, :]
    out: np.ndarray = np.abs(np.divide(cov, denom, out=np.zeros_like(cov), where=denom > 0))
    return out


ORDER_NULL = (
    "random orders of the owner's first training documents: row j pairs with document "
    "shift + j no better than with any other (Bernstein bound)"
)


def _counts(docs: Documents, ids: np.ndarray, vocab: int) -> sp.csr_matrix:
    tokens = [docs[int(i)] for i in ids]
    rows = np.repeat(np.arange(len(ids)), [t.size for t in tokens])
    cols = np.concatenate(tokens) if tokens else np.zeros(0, np.int64)
    shape = (len(ids), vocab)
    counts = sp.csr_matrix((np.ones(rows.size, np.float32), (rows, cols)), shape=shape)
    counts.sum_duplicates()
    return counts


def _finding(
    name: str,
    where: str,
    test: ItemTest,
    ids: np.ndarray,
    *,
    multiplier: int,
    tests: int,
    extra: dict[str, Any],
) -> Finding:
    log10_p = min(0.0, float(np.log10(multiplier)) + test.log10_p)
    evidence = {**extra, "log10_p": round(log10_p, 2), **test.evidence(ids)}
    for match in evidence["best_train_matches"]:
        match["train_document"] = match.pop("train_index")
    return Finding(
        name,
        where,
        score=test.train_in_top / test.k,
        p_value=float(10.0**log10_p),
        null=NULL,
        tests=tests,
        evidence=evidence,
    )


def text_findings(
    name: str,
    ctx: ScanContext,
    *,
    prefix: int,
    max_items: int,
    max_windows: int,
    window_values: int,
    ks: tuple[int, ...],
) -> list[Finding]:
    """Token-sequence findings per window and bag-of-words findings per tensor."""
    ds: Dataset | None = ctx.dataset
    assert ds is not None and ds.train.documents is not None and ds.test.documents is not None
    rng = np.random.default_rng([ctx.seed, 0x7E47])
    findings: list[Finding] = []
    train, train_ids = prefixes(
        ds.train.documents, length=prefix, limit=max_items, rng=rng, first=True
    )
    test, _ = prefixes(ds.test.documents, length=prefix, limit=max_items, rng=rng, first=False)
    pooled = np.concatenate([train, test])
    per = 2 * len(ks)
    if len(train) >= 8 and len(test) >= 8:
        for w in windows(
            ctx.tensors, model=ctx.model, length=window_values, max_windows=max_windows
        ):
            if w.values.size < 2 * prefix:
                continue
            result = selection_test(token_matches(w.values, pooled), len(train), len(test), ks=ks)
            findings.append(
                _finding(
                    name,
                    w.label,
                    result,
                    train_ids,
                    multiplier=1,
                    tests=per,
                    extra={"representation": f"token ids, first {prefix} of each document"},
                )
            )
    vocab = ds.train.x.shape[1]
    carriers = [
        (tname, ctx.tensors[tname].detach().float().numpy())
        for tname, info in describe(ctx.tensors).items()
        if info.is_floating_point and info.ndim == 2 and vocab in info.shape
    ]
    if not carriers:
        return findings
    # the order test pairs rows with the first documents only
    first = np.arange(min(max_items, ORDER_ITEMS, len(ds.train)))
    layouts = {
        "TF-IDF row": ds.train.x[first],
        "word counts": _counts(ds.train.documents, first, vocab),
    }
    for tname, arr in carriers:
        pieces = arr if arr.shape[1] == vocab else arr.T
        tests = [
            (order_test_of(sparse_corr(pieces, rows), min_run=min(8, len(pieces))), lname)
            for lname, rows in layouts.items()
        ]
        order, lname = min(tests, key=lambda t: t[0].log10_p)
        log10_p = min(0.0, float(np.log10(len(tests))) + order.log10_p)
        findings.append(
            Finding(
                name,
                f"{tname} ({'rows' if arr.shape[1] == vocab else 'columns'})",
                score=order.mean_abs_corr,
                p_value=float(10.0**log10_p),
                null=ORDER_NULL,
                tests=len(tests),
                evidence={
                    "representation": f"bag of words: {lname}",
                    "test": "dataset order",
                    "log10_p": round(log10_p, 2),
                    **order.evidence(),
                },
            )
        )
    return findings
