"""The report's figures (matplotlib, no display needed), each written as a PNG.

- accuracy vs the LSB bits b, and vs the capacity-abuse ratio m/n (with the fraction of
  synthetic labels learned and the MAPE of what came back);
- the weight histograms of honest vs attacked models (the paper's Figure 6);
- the countermeasures matrix as heat maps (accuracy kept, secret kept).
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from covertml.paths import atomic_write
from covertml.report.tables import Record, acc, att, group, mean, ok, rec, sanitizer, setting

#: Colour per kind of training code, used in every figure.
COLOURS = {
    "honest": "#4c72b0",
    "lsb": "#8172b2",
    "correlation": "#dd8452",
    "sign": "#c44e52",
    "capacity": "#55a868",
}


def save_figure(fig: Figure, path: str | os.PathLike[str]) -> Path:
    """Writes ``fig`` as a PNG, atomically."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    with atomic_write(path) as handle:
        handle.write(buf.getvalue())
    return Path(path)


def _option(r: Record, name: str) -> float | None:
    v = r["cell"]["attack_options"].get(name)
    return float(v) if isinstance(v, (int, float)) else None


def released(records: Sequence[Record], ds: str, attack: str) -> list[Record]:
    """The finished, unsanitized records of ``attack`` on dataset ``ds``."""
    return [
        r
        for r in ok(records)
        if (r["cell"]["dataset"], r["cell"]["attack"], r["cell"]["sanitizer"])
        == (ds, attack, "none")
    ]


def _honest_acc(records: Sequence[Record], ds: str) -> float | None:
    honest = released(records, ds, "honest")
    return mean(honest, acc)


def accuracy_vs_bits(records: Sequence[Record], ds: str, path: Path) -> Path | None:
    """Test accuracy of the LSB models against b, the honest accuracy as a line."""
    mine = released(records, ds, "lsb")
    points = sorted(
        (b, mean(rs, acc))
        for (b,), rs in group(mine, lambda r: (_option(r, "bits") or 16.0,)).items()
    )
    if len(points) < 2:
        return None
    fig = Figure(figsize=(5, 3.4))
    ax = fig.subplots()
    ax.plot(
        [p[0] for p in points],
        [100 * (p[1] or 0) for p in points],
        "o-",
        color=COLOURS["lsb"],
        label="LSB model",
    )
    base = _honest_acc(records, ds)
    if base is not None:
        ax.axhline(100 * base, color=COLOURS["honest"], ls="--", label="honest model")
    ax.set_xlabel("low bits b overwritten per float32 parameter")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"{ds}: accuracy vs b (LSB encoding)")
    ax.legend(loc="lower left")
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def accuracy_vs_ratio(records: Sequence[Record], ds: str, path: Path) -> Path | None:
    """Test accuracy and synthetic labels learned against m/n (capacity abuse)."""
    mine = released(records, ds, "capacity")
    groups = group(mine, lambda r: (setting(r),))
    points = sorted(
        (
            mean(rs, att("m_over_n")) or 0.0,
            mean(rs, acc),
            mean(rs, att("synthetic_accuracy")),
            mean(rs, rec("mape")),
        )
        for rs in groups.values()
    )
    if len(points) < 2:
        return None
    fig = Figure(figsize=(5, 3.4))
    ax = fig.subplots()
    xs = [p[0] for p in points]
    ax.plot(
        xs,
        [100 * (p[1] or 0) for p in points],
        "o-",
        color=COLOURS["capacity"],
        label="test accuracy",
    )
    if any(p[2] is not None for p in points):
        ax.plot(
            xs,
            [100 * p[2] if p[2] is not None else math.nan for p in points],
            "s:",
            color="#937860",
            label="synthetic labels learned",
        )
    base = _honest_acc(records, ds)
    if base is not None:
        ax.axhline(100 * base, color=COLOURS["honest"], ls="--", label="honest test accuracy")
    ax.set_xlabel("m/n (synthetic inputs per training input)")
    ax.set_ylabel("%")
    ax.set_title(f"{ds}: accuracy vs m/n (capacity abuse)")
    ax.legend(loc="lower left", fontsize=8)
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def weight_histograms(weights: dict[str, np.ndarray], ds: str, path: Path) -> Path | None:
    """Overlaid histograms of the weights (tensors of 2+ dimensions) of each model."""
    if len(weights) < 2 or "honest" not in weights:
        return None
    honest = weights["honest"]
    lim = float(np.percentile(np.abs(honest), 99.5)) * 1.5 or 1.0
    bins = np.linspace(-lim, lim, 121)
    fig = Figure(figsize=(6, 3.6))
    ax = fig.subplots()
    for name, w in weights.items():
        kind = name.split(" ")[0]
        ax.hist(
            np.clip(w, -lim, lim),
            bins=bins.tolist(),
            density=True,
            histtype="step",
            lw=1.5,
            color=COLOURS.get(kind, "#333333"),
            label=name,
        )
    ax.set_yscale("log")
    ax.set_xlabel("parameter value")
    ax.set_ylabel("density (log)")
    ax.set_title(f"{ds}: weights of honest vs attacked models (cf. paper Fig. 6)")
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def _secret_kept(rs: Sequence[Record]) -> float:
    """1 = the secret comes back exactly, 0 = gone or no better than noise."""
    if not any((r.get("recovery") or {}).get("recovered") for r in rs):
        return 0.0
    mape = mean(rs, rec("mape"))
    if mape is not None:
        return max(0.0, 1.0 - mape / 85.0)  # 85: MAPE of a uniform guess on uniform pixels
    recall = mean(rs, rec("word_recall"))
    return float(recall) if recall is not None else 0.0


def robustness_heatmap(records: Sequence[Record], ds: str, path: Path) -> Path | None:
    """Two heat maps over (model, sanitizer): accuracy kept and secret kept."""
    mine = [r for r in ok(records) if r["cell"]["dataset"] == ds]
    sans = list(dict.fromkeys(sanitizer(r) for r in mine))
    models = group(mine, lambda r: (r["cell"]["attack"], setting(r)))
    if len(sans) < 2 or len(models) < 2:
        return None
    names = [f"{a} {s}" if s != "-" else a for a, s in models]
    accs = np.full((len(models), len(sans)), np.nan)
    kept = np.full((len(models), len(sans)), np.nan)
    for i, ((attack, _), rs) in enumerate(models.items()):
        for j, san in enumerate(sans):
            cell = [r for r in rs if sanitizer(r) == san]
            if cell:
                accs[i, j] = 100 * (mean(cell, acc) or 0.0)
                if attack != "honest":
                    kept[i, j] = _secret_kept(cell)
    width = 3.0 + 0.9 * len(sans)
    fig = Figure(figsize=(2 * width, 1.6 + 0.4 * len(models)), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    low = float(np.nanmin(accs)) if np.isfinite(accs).any() else 0.0
    panels: list[tuple[Any, np.ndarray, str, str, str, float, float]] = [
        (axes[0], accs, "test accuracy (%)", "viridis", "{:.1f}", max(0.0, low - 5), 100.0),
        (axes[1], kept, "secret kept (1 = exact, 0 = gone)", "Reds", "{:.2f}", 0.0, 1.0),
    ]
    for ax, data, title, cmap, form, vmin, vmax in panels:
        im = ax.imshow(data, cmap=cmap, aspect="auto", vmin=vmin, vmax=vmax)
        ax.set_xticks(range(len(sans)), sans, rotation=60, ha="right", fontsize=7)
        ax.set_yticks(range(len(names)), names, fontsize=7)
        ax.set_title(title, fontsize=9)
        for i, j in zip(*np.nonzero(np.isfinite(data)), strict=True):
            shade = (data[i, j] - vmin) / (vmax - vmin or 1)
            dark = shade < 0.6 if cmap == "viridis" else shade > 0.6
            colour = "white" if dark else "black"
            label = form.format(data[i, j])
            ax.text(j, i, label, ha="center", va="center", fontsize=6, color=colour)
        fig.colorbar(im, ax=ax, fraction=0.04)
    fig.suptitle(f"{ds}: countermeasures (rows: training code; columns: sanitizer)", fontsize=10)
    return save_figure(fig, path)
