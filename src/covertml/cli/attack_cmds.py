"""The adversary's commands: ``extract``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from covertml.attacks import AttackKey
from covertml.attacks.extract import extract as run_extract
from covertml.cli.common import DataDirOpt, JsonOpt, console, print_json
from covertml.errors import ConfigError
from covertml.models import load_model


def extract(
    model_path: Annotated[
        Path | None, typer.Argument(metavar="MODEL", help="The released .safetensors model.")
    ] = None,
    key: Annotated[Path, typer.Option("--key", "-k", help="The key.json from training.")] = Path(
        "key.json"
    ),
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("extracted"),
    dataset: Annotated[
        str | None, typer.Option("--dataset", "-d", help="Score against this dataset's data.")
    ] = None,
    data_dir: DataDirOpt = None,
    allow_pickle: Annotated[bool, typer.Option(help="Also read pickle files.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Recover the hidden training data from a model file and the adversary's key.

    Writes OUT/images.npz (array "images", uint8 N x H x W) and a PNG grid, or
    OUT/documents.jsonl for text; with --dataset also OUT/metrics.json with the scores.
    """
    if model_path is None:
        raise ConfigError("no model given", fix="covertml extract MODEL --key KEY --out OUT")
    attack_key = AttackKey.load(key)
    model = load_model(model_path, allow_pickle=allow_pickle).model
    result = run_extract(model, attack_key, out, dataset=dataset, data_dir=data_dir)
    if as_json:
        print_json(result.to_dict())
        return
    console.print(
        f"recovered {result.items} {result.secret_kind} items with attack "
        f"[bold]{attack_key.attack}[/] into {out}/ ({', '.join(result.files)})"
    )
    if result.scores is not None:
        s = result.scores
        if s.mape is not None:
            ssim = "n/a" if s.ssim is None else f"{s.ssim:.3f}"
            console.print(
                f"MAPE {s.mape:.2f} (0-255), SSIM {ssim}, exact pixels "
                f"{100 * s.exact_symbols:.1f}%, bit error rate {s.bit_error_rate:.4f}"
            )
        else:
            console.print(
                f"word precision {s.word_precision:.3f}, recall {s.word_recall:.3f}, "
                f"exact tokens {100 * s.exact_symbols:.1f}%"
            )


def register(app: typer.Typer) -> None:
    """Adds the commands to ``app``."""
    app.command("extract")(extract)
