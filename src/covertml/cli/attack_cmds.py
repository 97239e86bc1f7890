"""The adversary's commands: ``extract``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from covertml.attacks import AttackKey, LocalOracle
from covertml.attacks.extract import extract as run_extract
from covertml.attacks.extract import extract_with_oracle
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
    endpoint: Annotated[
        str | None,
        typer.Option(help="[capacity] Query this prediction API (URL) instead of a file."),
    ] = None,
    batch_size: Annotated[int, typer.Option(help="[capacity] Inputs per query batch.")] = 4096,
    allow_pickle: Annotated[bool, typer.Option(help="Also read pickle files.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Recover the hidden training data from a model file (or API) and the adversary's key.

    White-box attacks read the model file; capacity abuse asks a model file or, with
    --endpoint, a running `covertml serve` API for labels only. Writes OUT/images.npz (array
    "images", uint8 N x H x W) and a PNG grid, or OUT/documents.jsonl for text; with
    --dataset also OUT/metrics.json with the scores.
    """
    if (model_path is None) == (endpoint is None):
        raise ConfigError(
            "give either a model file or --endpoint URL",
            fix="covertml extract MODEL --key KEY --out OUT (or --endpoint URL instead of MODEL)",
        )
    attack_key = AttackKey.load(key)
    if attack_key.attack == "capacity" and endpoint is not None:
        from covertml.serve.client import HTTPOracle  # httpx: only for remote queries

        with HTTPOracle(endpoint, batch_size=batch_size) as http:
            result = extract_with_oracle(
                http, attack_key, out, dataset=dataset, data_dir=data_dir, endpoint=endpoint
            )
    elif endpoint is not None:
        raise ConfigError(
            f"attack {attack_key.attack!r} is white-box: it needs the model file, not an API",
            fix="pass the model file instead of --endpoint",
        )
    else:
        assert model_path is not None
        model = load_model(model_path, allow_pickle=allow_pickle).model
        if attack_key.attack == "capacity":
            result = extract_with_oracle(
                LocalOracle(model), attack_key, out, dataset=dataset, data_dir=data_dir
            )
        else:
            result = run_extract(model, attack_key, out, dataset=dataset, data_dir=data_dir)
    if as_json:
        print_json(result.to_dict())
        return
    console.print(
        f"recovered {result.items} {result.secret_kind} items with attack "
        f"[bold]{attack_key.attack}[/] into {out}/ ({', '.join(result.files)})"
    )
    if "queries" in result.details:
        via = result.details["endpoint"] or "the local model"
        console.print(f"asked {via} for {result.details['queries']:,} labels")
    if result.scores is not None:
        s = result.scores
        if s.mape is not None:
            ssim = "n/a" if s.ssim is None else f"{s.ssim:.3f}"
            if "quantization_floor_mape" in result.details:
                d = result.details
                console.print(
                    f"MAPE {s.mape:.2f} (0-255; floor at {attack_key.settings['bits_per_pixel']}"
                    f" bits/pixel {d['quantization_floor_mape']:.2f}), SSIM {ssim}, "
                    f"right buckets {100 * d['exact_buckets']:.2f}%"
                )
            else:
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
