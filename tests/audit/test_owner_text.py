"""The text owner audit against text attacks written here (plain PyTorch linear models)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from sklearn.feature_extraction.text import TfidfTransformer
from torch import nn

from covertml.audit import ScanContext, create_detector
from covertml.data.base import Dataset, Documents, Split

VOCAB, CLASSES = 3000, 4


def _corpus(n: int, rng: np.random.Generator) -> tuple[list[np.ndarray], np.ndarray]:
    """Documents whose words come from one of ``CLASSES`` Zipf-like topic distributions."""
    ranks = np.arange(1, VOCAB + 1, dtype=np.float64)
    topics = [rng.permutation(1.0 / ranks**1.1) for _ in range(CLASSES)]
    labels = rng.integers(0, CLASSES, n)
    docs = []
    for y in labels:
        p = 0.5 * topics[y] / topics[y].sum() + 0.5 / ranks / (1 / ranks).sum()
        docs.append(rng.choice(VOCAB, rng.integers(70, 200), p=p / p.sum()))
    return docs, labels


def _make_corpus() -> Dataset:
    rng = np.random.default_rng(0)
    docs, labels = _corpus(1400, rng)
    counts = sp.csr_matrix(
        (
            np.ones(sum(d.size for d in docs)),
            (np.repeat(np.arange(len(docs)), [d.size for d in docs]), np.concatenate(docs)),
        ),
        shape=(len(docs), VOCAB),
    )
    tfidf = TfidfTransformer().fit(counts[:1000]).transform(counts).astype(np.float32).tocsr()
    split = {
        "train": Split(tfidf[:1000], labels[:1000], Documents.from_lists(docs[:1000])),
        "test": Split(tfidf[1000:], labels[1000:], Documents.from_lists(docs[1000:])),
    }
    vocab = tuple(f"w{i}" for i in range(VOCAB))
    classes = tuple(str(c) for c in range(CLASSES))
    return Dataset("topics", "text", classes, split["train"], split["test"], vocab)


@pytest.fixture(scope="module")
def corpus() -> Dataset:
    return _make_corpus()


def _pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a, b = a - a.mean(), b - b.mean()
    return (a * b).sum() / (a.norm() * b.norm() + 1e-12)


def _train(ds: Dataset, penalty=None, *, epochs: int = 15, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Linear(VOCAB, CLASSES)
    x = torch.tensor(ds.train.x.toarray())
    y = torch.tensor(ds.train.y)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(epochs):
        for i in range(0, len(x), 100):
            loss = nn.functional.cross_entropy(model(x[i : i + 100]), y[i : i + 100])
            if penalty is not None:
                loss = loss + penalty(model)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


def _audit(model: nn.Module, ds: Dataset):
    tensors = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return create_detector("owner-correlation").run(ScanContext(tensors, model=model, dataset=ds))


def test_token_index_sequences_are_flagged(corpus) -> None:
    """Correlated value encoding of the first documents' token ids, decodable by rounding."""
    docs = corpus.train.documents
    secret = torch.tensor(np.concatenate([docs[i] for i in range(40)]), dtype=torch.float32)
    n = secret.numel()
    model = _train(corpus, lambda m: -50.0 * _pearson(m.weight.reshape(-1)[:n], secret))
    w = model.weight.detach().reshape(-1)[:n].numpy()
    # the attacker's decoder: an affine map fitted on a pilot it planted (here: the first
    # 100 carriers, whose symbols it knows), then rounding
    a, b = np.polyfit(w[:100], secret.numpy()[:100], 1)
    decoded = np.round(a * w + b)
    exact = float(np.mean(np.abs(decoded - secret.numpy()) <= 2))
    assert exact > 0.5  # the secret is really in there
    report = _audit(model, corpus)
    assert report.flagged, report.findings[0].evidence
    assert report.findings[0].evidence["representation"].startswith("token ids")


def test_bag_of_words_rows_are_flagged(corpus) -> None:
    """Each class row of the weights correlated with one training document's TF-IDF row."""
    picked = [0, 1, 2, 3]  # the first documents, in order (see the text audit on why)
    target = torch.tensor(corpus.train.x[picked].toarray())
    model = _train(
        corpus,
        lambda m: -0.5 * sum(_pearson(m.weight[i], target[i]) for i in range(CLASSES)),
    )
    report = _audit(model, corpus)
    assert report.flagged, report.findings[0].evidence
    top = report.findings[0]
    assert top.evidence["representation"].startswith("bag of words")
    assert top.evidence["run_starts_at_piece"] == 0  # row 0 holds document 0, and so on


def test_honest_linear_text_model_is_not_flagged(corpus) -> None:
    report = _audit(_train(corpus, seed=1), corpus)
    assert not report.flagged, [(f.layer, f.p_value) for f in report.findings[:3]]
