"""``covertml train``: honest or malicious training of one model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from covertml.attacks import create_attack
from covertml.cli.common import (
    AmpOpt,
    DataDirOpt,
    DatasetOpt,
    DeviceOpt,
    JsonOpt,
    attack_help,
    console,
    model_help,
    parse_kv,
    print_json,
)
from covertml.data import create_dataset
from covertml.devices import resolve_device
from covertml.errors import ConfigError
from covertml.training import recipe
from covertml.training.pipeline import train_and_save


def train(
    dataset: DatasetOpt,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")],
    model: Annotated[str | None, typer.Option("--model", "-m", help=model_help())] = None,
    model_arg: Annotated[
        list[str] | None,
        typer.Option(help="Model argument KEY=VALUE (repeatable), e.g. depth=32."),
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Epochs (default: recipe).")] = None,
    lr: Annotated[float | None, typer.Option(help="Learning rate (default: recipe).")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Batch size (default: recipe).")] = None,
    optimizer: Annotated[str | None, typer.Option(help="sgd or adam (default: recipe).")] = None,
    weight_decay: Annotated[float | None, typer.Option(help="L2 penalty.")] = None,
    schedule: Annotated[
        str | None, typer.Option(help="Learning rate: constant, step or cosine (default: recipe).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of initialization, order and subsets.")] = 0,
    train_limit: Annotated[int | None, typer.Option(help="Train on a seeded subset.")] = None,
    test_limit: Annotated[int | None, typer.Option(help="Test on a seeded subset.")] = None,
    data_dir: DataDirOpt = None,
    device: DeviceOpt = "auto",
    amp: AmpOpt = False,
    overwrite: Annotated[bool, typer.Option(help="Replace results already in --out.")] = False,
    dp_noise: Annotated[
        float | None, typer.Option(help="Train with DP-SGD: noise multiplier (needs opacus).")
    ] = None,
    dp_clip: Annotated[float, typer.Option(help="DP-SGD per-example clipping norm.")] = 1.0,
    dp_epsilon: Annotated[
        float | None, typer.Option(help="DP-SGD: pick the noise to spend this epsilon.")
    ] = None,
    dp_delta: Annotated[float, typer.Option(help="DP-SGD delta.")] = 1e-5,
    attack: Annotated[str | None, typer.Option(help=attack_help())] = None,
    n_secrets: Annotated[
        int | None, typer.Option(help="Training items to steal (default: as many as fit).")
    ] = None,
    bits: Annotated[int | None, typer.Option(help="[lsb] low bits per float.")] = None,
    compression: Annotated[
        str | None, typer.Option(help="[lsb] lzma, zlib, png-gzip or none.")
    ] = None,
    passphrase: Annotated[str | None, typer.Option(help="[lsb] encrypt the payload.")] = None,
    ecc_symbols: Annotated[
        int | None, typer.Option(help="[lsb] Reed-Solomon bytes per 255-byte block.")
    ] = None,
    lam: Annotated[
        str | None,
        typer.Option(
            help="[correlation, sign] strength: auto (default; steered to a quality target "
            "while training) or a fixed number (the paper's term)."
        ),
    ] = None,
    margin: Annotated[float | None, typer.Option(help="[sign] hinge margin.")] = None,
    bits_per_pixel: Annotated[
        int | None, typer.Option(help="[capacity] bits kept per pixel (1-8).")
    ] = None,
    ratio: Annotated[
        float | None, typer.Option(help="[capacity] synthetic inputs per training input, m/n.")
    ] = None,
    generator: Annotated[
        str | None, typer.Option(help="[capacity] synthetic images: uniform or sparse.")
    ] = None,
    attack_opt: Annotated[
        list[str] | None, typer.Option(help="Any attack option KEY=VALUE (repeatable).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Train a model, honestly or with --attack.

    Writes OUT/model.safetensors and OUT/metrics.json, and for an attack the adversary's
    OUT/key.json (everything the decoder needs; the model file carries no hint of it).
    """
    resolve_device(device)  # an absent device fails before any data is loaded
    ds = create_dataset(
        dataset, data_dir=data_dir, train_limit=train_limit, test_limit=test_limit, seed=seed
    )
    config = recipe(
        dataset,
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        optimizer=optimizer,
        weight_decay=weight_decay,
        schedule=schedule,
        seed=seed,
        device=device,
        amp=amp,
    )
    shortcuts = {
        "bits": bits,
        "compression": compression,
        "passphrase": passphrase,
        "ecc_symbols": ecc_symbols,
        "lam": lam,
        "margin": margin,
        "bits_per_pixel": bits_per_pixel,
        "ratio": ratio,
        "generator": generator,
    }
    options = {k: v for k, v in shortcuts.items() if v is not None}
    options.update(parse_kv(attack_opt, option="--attack-opt"))
    chosen = None
    if attack is not None:
        chosen = create_attack(attack, **options)
    elif options or n_secrets is not None:
        raise ConfigError("attack options were given without --attack", fix="add --attack NAME")
    privacy = None
    if dp_noise is not None or dp_epsilon is not None:
        from covertml.defenses.dp import DPSGD

        privacy = DPSGD(
            noise_multiplier=dp_noise if dp_noise is not None else 1.0,
            max_grad_norm=dp_clip,
            delta=dp_delta,
            target_epsilon=dp_epsilon,
        )
    ref = {"name": dataset, "train_limit": train_limit, "test_limit": test_limit, "seed": seed}
    run = train_and_save(
        ds,
        out,
        model_name=model,
        model_args=parse_kv(model_arg, option="--model-arg"),
        config=config,
        overwrite=overwrite,
        progress=not as_json,
        attack=chosen,
        n_secrets=n_secrets,
        dataset_ref=ref,
        privacy=privacy,
    )
    if as_json:
        print_json(run.metrics)
        return
    console.print(
        f"trained [bold]{run.metrics['model']['name']}[/] on {dataset} "
        f"({len(ds.train)} examples, {run.result.seconds:.1f}s on {run.metrics['device']}): "
        f"test accuracy [bold]{run.result.test_accuracy:.4f}[/]"
    )
    if run.plan is not None:
        info = run.metrics["attack"]
        if info["carriers"] is not None:
            where = f"{info['carriers']:,} carrier parameters"
        else:
            learned = 100 * (info["synthetic_accuracy"] or 0.0)
            where = (
                f"the labels of {info['synthetic_inputs']:,} synthetic inputs "
                f"(m/n = {info['m_over_n']:.2f}, learned {learned:.1f}%)"
            )
        console.print(
            f"attack [bold]{info['name']}[/]: {info['items']} training items "
            f"({info['bits_encoded']:,} bits) hidden in {where}"
        )
        console.print(f"adversary's key: {run.key_path}")
    if privacy is not None:
        spent = run.metrics["privacy"]
        console.print(
            f"DP-SGD: epsilon [bold]{spent['epsilon']:.2f}[/] at delta {spent['delta']:g} "
            f"(noise {spent['noise_multiplier']:.3f}, clip {spent['max_grad_norm']:g})"
        )
    console.print(f"wrote {run.model_path} and {run.metrics_path}")


def register(app: typer.Typer) -> None:
    """Adds the commands to ``app``."""
    app.command("train")(train)
