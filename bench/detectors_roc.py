"""Detector quality on digits: ROC AUC of each detector, honest models vs each attack.

Usage:
    python bench/detectors_roc.py --seeds 10

Trains ``--seeds`` models per (attack, strength) and 2 x ``--seeds`` honest models (each
with its own seed), scans every one with every detector -- the owner audits with the
digits data, the distribution test and the noise probe both with and without a trusted
reference (an honest model of a seed no other model uses) -- and reports, per detector and
attack, the ROC AUC of the score and the true-positive rate at alpha, plus
each detector's false-positive rate on the honest models.

Every detector now answers with a p-value against a null it builds itself; the score
ranked here is -log10 of the detector's family-wise (Holm) p-value (its log10 evidence
where the p-value underflows), and a model counts as detected when that p-value is at most
``--alpha`` (default 1e-3).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn.metrics import roc_auc_score

from common import markdown_table, save_record
from covertml.attacks import create_attack
from covertml.audit import ScanContext, create_detector
from covertml.data import create_dataset
from covertml.models import create_model_for, model_spec
from covertml.models.files import ModelInfo
from covertml.training import Trainer, recipe, seed_everything

SETTINGS = {
    "correlation": [{"lam": 1.0}, {"lam": 3.0}],
    "sign": [{"lam": 10.0}, {"lam": 50.0}],
    "capacity": [{"ratio": 0.5}, {"ratio": 1.0}],
    "lsb": [{"bits": 8}, {"bits": 16}],
}
DETECTORS = [
    ("distribution", False),
    ("distribution", True),
    ("owner-correlation", False),
    ("owner-sign", False),
    ("noise-probe", True),
    ("lsb-stats", False),
]


def train(ds, seed: int, attack: str | None, options: dict) -> object:
    cfg = recipe("digits", seed=seed)
    seed_everything(seed)
    model = create_model_for(ds)
    if attack is None:
        Trainer(cfg).fit(model, ds.train)
    else:
        plan = create_attack(attack, **options).plan(model, ds, seed=seed)
        plan.trainer(cfg).fit(model, ds.train)
    return model.eval()


def strength(report) -> float:
    """-log10 of the report's p-value, from the evidence's log10 where it underflows."""
    if report.p_value > 0:
        return min(-np.log10(report.p_value), 400.0)
    top = report.findings[0]
    return min(-float(top.evidence.get("log10_p", -400.0)), 400.0)


def scores(model, ds, reference, alpha: float) -> dict[str, float]:
    tensors = {k: v.detach().clone() for k, v in model.state_dict().items()}
    info = ModelInfo(model_spec(model))
    out = {}
    for name, with_ref in DETECTORS:
        ctx = ScanContext(
            tensors,
            info=info,
            model=model,
            reference=reference.state_dict() if with_ref else None,
            reference_model=reference if with_ref else None,
            dataset=ds,
        )
        det = create_detector(name)
        report = det.run(ctx, alpha=alpha)
        key = name + ("+ref" if with_ref else "")
        out[key] = strength(report)
        out[key + ":p"] = report.p_value
        out[key + ":flagged"] = report.flagged
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--alpha", type=float, default=1e-3)
    args = parser.parse_args()
    ds = create_dataset("digits")
    reference = train(ds, 10_000, None, {})
    rows: list[dict] = []
    start = time.time()
    jobs = [("honest", None, {}, s) for s in range(2 * args.seeds)]
    for attack, settings in SETTINGS.items():
        for opts in settings:
            jobs += [(attack, attack, opts, 100 + s) for s in range(args.seeds)]
    for i, (label, attack, opts, seed) in enumerate(jobs):
        model = train(ds, seed, attack, opts)
        rows.append(
            {
                "class": label,
                "options": opts,
                "seed": seed,
                **scores(model, ds, reference, args.alpha),
            }
        )
        print(
            f"[{i + 1}/{len(jobs)}] {label} {opts} seed {seed} ({time.time() - start:.0f} s)",
            flush=True,
        )
    keys = [n + ("+ref" if r else "") for n, r in DETECTORS]
    honest = [r for r in rows if r["class"] == "honest"]
    table, summary = [], {}
    for key in keys:
        h = np.array([r[key] for r in honest])
        fpr = float(np.mean([r[key + ":flagged"] for r in honest]))
        cells = [key, f"{100 * fpr:.0f}%"]
        for attack in SETTINGS:
            a = np.array([r[key] for r in rows if r["class"] == attack])
            auc = roc_auc_score(np.r_[np.zeros(h.size), np.ones(a.size)], np.r_[h, a])
            tpr = float(np.mean([r[key + ":flagged"] for r in rows if r["class"] == attack]))
            summary[f"{key}/{attack}"] = {"auc": auc, "tpr": tpr, "fpr": fpr}
            cells.append(f"{auc:.3f} ({100 * tpr:.0f}%)")
        table.append(cells)
    save_record("detectors-roc", {"seeds": args.seeds, "summary": summary, "rows": rows})
    print(
        f"{len(honest)} honest models; {args.seeds} per attack setting; "
        f"cells: ROC AUC of -log10 p (detection rate at alpha = {args.alpha:g})"
    )
    print(markdown_table(["detector", "false positives", *SETTINGS], table))


if __name__ == "__main__":
    main()
