"""``covertml guard -- python train.py ...``: run a script in a watched child process."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from covertml.audit.base import DEFAULT_ALPHA
from covertml.data import create_dataset
from covertml.errors import ConfigError
from covertml.paths import atomic_write_text
from covertml.supervise.matcher import MatchStats
from covertml.supervise.report import GuardReport, build_report, model_files
from covertml.supervise.store import load_observations

log = logging.getLogger(__name__)


def child_command(
    command: Sequence[str], config: Path, *, cwd: str | os.PathLike[str] | None = None
) -> list[str]:
    """The command that runs ``command``'s Python script under the watchers.

    Example:
        >>> child_command(["python", "-m", "their.train", "--lr", "0.1"], Path("c.json"))[1:]
        ['-m', 'covertml.supervise.child', 'c.json', '-m', 'their.train', '--lr', '0.1']
    """
    parts, flags = list(command), list[str]()
    if parts and Path(parts[0]).name.startswith("python"):
        parts = parts[1:]
        while parts and parts[0].startswith("-") and parts[0] != "-m":
            take = 2 if parts[0] in ("-X", "-W") else 1  # interpreter options: kept
            flags, parts = flags + parts[:take], parts[take:]
    if not parts or not (parts[0].endswith(".py") or (parts[0] == "-m" and len(parts) > 1)):
        raise ConfigError(
            f"the guard runs Python training scripts; got {' '.join(command) or 'nothing'!r}",
            fix="give the script after --, e.g. covertml guard -d digits -- python train.py",
        )
    if parts[0] != "-m" and not (Path(cwd or ".") / parts[0]).is_file():
        raise ConfigError(f"no script {parts[0]!r}", fix="check the path of the training script")
    return [sys.executable, *flags, "-m", "covertml.supervise.child", str(config), *parts]


def run_guarded(
    command: Sequence[str],
    *,
    dataset: str,
    out: str | os.PathLike[str],
    data_dir: str | None = None,
    dataset_options: dict[str, Any] | None = None,
    alpha: float = DEFAULT_ALPHA,
    sanitize: str | None = None,
    budget: float = 0.15,
    seed: int = 0,
    cwd: str | os.PathLike[str] | None = None,
) -> GuardReport:
    """Runs ``command`` (``python SCRIPT ARGS`` or ``python -m MODULE ARGS``) guarded.

    The script runs unchanged in a child process with the watchers installed first; then
    this process tests what they saw, scans the model files the script wrote (the paths it
    gave to ``torch.save``/safetensors, and model files new under ``cwd``) and writes
    ``guard.json`` in ``out``.
    """
    if not 0 < alpha < 1:
        raise ConfigError(f"alpha must be in (0, 1), got {alpha}", fix="use e.g. --alpha 1e-3")
    if sanitize is not None:
        from covertml.defenses import create_sanitizer

        create_sanitizer(sanitize)  # an unknown name fails before the script runs
    ds = create_dataset(dataset, data_dir=data_dir, **(dataset_options or {}))
    folder = Path(out).resolve()
    work = folder / "observed"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    config = folder / "guard-config.json"
    atomic_write_text(
        config,
        json.dumps(
            {
                "dataset": dataset,
                "data_dir": data_dir,
                "dataset_options": dataset_options or {},
                "out": str(work),
                "budget": budget,
                "seed": seed,
            }
        ),
    )
    argv = child_command(command, config, cwd=cwd)
    since = time.time()
    env = {**os.environ, "COVERTML_GUARD": str(config)}
    log.info("guard: running %s", " ".join(command))
    code = subprocess.run(argv, cwd=cwd, env=env, check=False).returncode
    if not (work / "observed.json").is_file():
        raise ConfigError(
            f"the guarded script left no observations (exit code {code})",
            fix="the guard itself failed in the child; rerun with -v to see why",
        )
    seen = load_observations(work)
    root = Path(cwd or os.getcwd()).resolve()
    files = [p for p in model_files(seen.saved, [root], since) if folder not in p.parents]
    stats = (
        json.loads((work / "matcher.json").read_text())
        if (work / "matcher.json").exists()
        else None
    )
    report = build_report(
        seen,
        matcher=MatchStats(**stats) if stats else None,
        dataset=ds,
        alpha=alpha,
        files=files,
        sanitize=sanitize,
        script_exit=code,
        command=command,
        seed=seed,
    )
    atomic_write_text(folder / "guard.json", json.dumps(report.to_dict(), indent=1, default=str))
    return report
