"""``covertml sanitize`` and ``covertml sanitizers``: clean a model file before release."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from covertml.cli.common import DataDirOpt, JsonOpt, console, parse_kv, print_json
from covertml.defenses import SANITIZERS, create_sanitizer, sanitize_file, sanitizer_options
from covertml.devices import resolve_device


def _method_help() -> str:
    return "Sanitizer: " + ", ".join(SANITIZERS.names()) + " (see `covertml sanitizers`)."


def sanitize(
    src: Annotated[
        Path,
        typer.Argument(
            metavar="IN", help="Model file, shard index or checkpoint directory (left as is)."
        ),
    ],
    dst: Annotated[
        Path,
        typer.Argument(
            metavar="OUT",
            help="New file (or directory, for sharded checkpoints) in the input's layout.",
        ),
    ],
    method: Annotated[str, typer.Option("--method", "-m", help=_method_help())],
    bits: Annotated[
        int | None,
        typer.Option(
            help="[lsb-randomize, lsb-zero] low mantissa bits (default per format: float32 "
            "16, float16 5, bfloat16 2; at most 23 / 10 / 7)."
        ),
    ] = None,
    per: Annotated[str | None, typer.Option(help="[int8] tensor or channel.")] = None,
    percent: Annotated[float | None, typer.Option(help="[prune] % of weights zeroed.")] = None,
    sigma: Annotated[
        float | None, typer.Option(help="[noise] std, relative to each tensor's std.")
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="[finetune] epochs.")] = None,
    lr: Annotated[float | None, typer.Option(help="[finetune] learning rate.")] = None,
    scope: Annotated[
        str | None, typer.Option(help="all floating tensors, or only weights (2+ dims).")
    ] = None,
    opt: Annotated[
        list[str] | None, typer.Option(help="Any sanitizer option KEY=VALUE (repeatable).")
    ] = None,
    dataset: Annotated[
        str | None, typer.Option("--dataset", "-d", help="[finetune] the owner's data.")
    ] = None,
    data_dir: DataDirOpt = None,
    train_limit: Annotated[int | None, typer.Option(help="[finetune] train on a subset.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of random bits, noise and training.")] = 0,
    device: Annotated[
        str,
        typer.Option(
            "--device",
            help="[finetune] where it trains: auto (CUDA when present), cpu, cuda, cuda:N or "
            "mps. Bit-level methods run on the CPU, exactly, whatever this says.",
        ),
    ] = "auto",
    overwrite: Annotated[bool, typer.Option(help="Replace OUT if it exists.")] = False,
    allow_pickle: Annotated[
        bool,
        typer.Option(help="Also read .bin/.pt/.pth pickles (torch.load, weights_only=True)."),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Write a sanitized copy of a checkpoint (never over the input; written atomically).

    Streams tensor by tensor and shard by shard; each tensor keeps its dtype, name and
    place, and the metadata records what was done. Sharded in, sharded out.
    """
    shortcuts = {
        "bits": bits,
        "per": per,
        "percent": percent,
        "sigma": sigma,
        "epochs": epochs,
        "lr": lr,
        "scope": scope,
    }
    options = {k: v for k, v in shortcuts.items() if v is not None}
    options.update(parse_kv(opt, option="--opt"))
    resolve_device(device)  # an absent device fails before anything is read
    if method == "finetune":
        options.setdefault("device", device)
    sanitizer = create_sanitizer(method, **options)
    ds = None
    if dataset is not None:
        from covertml.data import create_dataset

        ds = create_dataset(dataset, data_dir=data_dir, train_limit=train_limit, seed=seed)
    result = sanitize_file(
        src, dst, sanitizer, seed=seed, dataset=ds, overwrite=overwrite, allow_pickle=allow_pickle
    )
    if as_json:
        print_json(result.to_dict())
        return
    share = result.values_changed / max(result.values, 1)
    console.print(
        f"wrote [bold]{result.output}[/] ({method}, {len(result.files)} files): "
        f"{result.values_changed:,} of {result.values:,} "
        f"values changed ({100 * share:.1f}%) in {result.tensors_changed} tensors, "
        f"mean |change| {result.mean_abs_change:.3g}"
        + (f"; low bits per format: {result.bits}" if result.bits else ""),
        highlight=False,
    )
    for name, why in result.skipped.items():
        console.print(f"[dim]skipped {name}: {why}[/]", highlight=False)


def sanitizers(as_json: JsonOpt = False) -> None:
    """List the sanitizers and their options."""
    rows = [(e.name, sanitizer_options(e.name), e.help.replace("``", "")) for e in SANITIZERS]
    if as_json:
        print_json([{"name": n, "options": o, "help": h} for n, o, h in rows])
        return
    table = Table(title="covertml sanitizers")
    for col in ("name", "options", "description"):
        table.add_column(col)
    for name, opts, text in rows:
        table.add_row(name, ", ".join(opts), text)
    console.print(table)


def register(app: typer.Typer) -> None:
    """Adds the commands to ``app``."""
    app.command("sanitize")(sanitize)
    app.command("sanitizers")(sanitizers)
