"""``covertml guard -- python train.py ...``: run a script in a watched child process."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from covertml.errors import ConfigError
from covertml.paths import atomic_write_text
from covertml.supervise.child import SETUP_ERROR
from covertml.supervise.defaults import DEFAULT_BUDGET, GUARD_ALPHA

if TYPE_CHECKING:
    from covertml.supervise.report import GuardReport

# This module imports nothing heavy at the top: the child starts first, and torch, the
# owner's data and the audits load here while it runs.

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


def _prepare(
    out: dict[str, Any],
    *,
    dataset: str,
    data_dir: str | None,
    dataset_options: dict[str, Any],
    sanitize: str | None,
    seed: int,
) -> None:
    """What the parent does while the script runs: checks, the owner's data, the threshold.

    At the lowest priority (where the system allows it): the script has the cores first.
    """
    try:
        with contextlib.suppress(AttributeError, OSError):  # Linux: niceness is per thread
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        import torch

        from covertml.data import check_dataset, create_dataset
        from covertml.supervise.matcher import InputMatcher

        check_dataset(dataset, **dataset_options)
        if sanitize is not None:
            from covertml.defenses import create_sanitizer

            create_sanitizer(sanitize)  # an unknown name stops the script at once
        out["threads"] = torch.get_num_threads()
        torch.set_num_threads(1)  # restored after the script, for the audits
        ds = create_dataset(dataset, data_dir=data_dir, **dataset_options)
        out["dataset"], out["stats"] = ds, InputMatcher(ds, seed=seed).stats
        import covertml.supervise.report  # noqa: F401  (loaded now, used after the script)
    except BaseException as exc:  # raised in the caller's thread
        out["error"] = exc


def run_guarded(
    command: Sequence[str],
    *,
    dataset: str,
    out: str | os.PathLike[str],
    data_dir: str | None = None,
    dataset_options: dict[str, Any] | None = None,
    alpha: float = GUARD_ALPHA,
    sanitize: str | None = None,
    budget: float = DEFAULT_BUDGET,
    seed: int = 0,
    cwd: str | os.PathLike[str] | None = None,
    device: str = "cpu",
) -> GuardReport:
    """Runs ``command`` (``python SCRIPT ARGS`` or ``python -m MODULE ARGS``) guarded.

    The script runs unchanged in a child process with the watchers installed first; then
    this process tests what they saw, scans the model files the script wrote (the paths it
    gave to ``torch.save``/safetensors, and model files new under ``cwd``) and writes
    ``guard.json`` in ``out``. ``device`` is where the exit scans' probe queries run (the
    script itself picks its own device).
    """
    if not 0 < alpha < 1:
        raise ConfigError(f"alpha must be in (0, 1), got {alpha}", fix="use e.g. --alpha 1e-3")
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
    child = subprocess.Popen(argv, cwd=cwd, env=env)
    prepared: dict[str, Any] = {}
    worker = threading.Thread(
        target=_prepare,
        args=(prepared,),
        kwargs={
            "dataset": dataset,
            "data_dir": data_dir,
            "dataset_options": dataset_options or {},
            "sanitize": sanitize,
            "seed": seed,
        },
        daemon=True,
    )
    try:
        worker.start()
        worker.join()
        if "error" in prepared:
            raise prepared["error"]
    except BaseException:
        child.kill()
        child.wait()
        raise
    ds, stats, threads = prepared["dataset"], prepared["stats"], prepared["threads"]
    code = child.wait()
    log.info("guard: the script ran %.1f s", time.time() - since)
    if (work / SETUP_ERROR).is_file():
        raise ConfigError((work / SETUP_ERROR).read_text(), fix="check the dataset options")
    if not (work / "observed.json").is_file():
        raise ConfigError(
            f"the guarded script left no observations (exit code {code})",
            fix="the guard itself failed in the child; rerun with -v to see why",
        )
    done = time.time()
    import torch

    from covertml.supervise.report import build_report, model_files
    from covertml.supervise.store import load_observations

    torch.set_num_threads(threads)
    seen = load_observations(work)
    if stats is not None:
        seen.judge(stats.threshold)
    root = Path(cwd or os.getcwd()).resolve()
    files = [p for p in model_files(seen.saved, [root], since) if folder not in p.parents]
    report = build_report(
        seen,
        matcher=stats,
        dataset=ds,
        alpha=alpha,
        files=files,
        sanitize=sanitize,
        script_exit=code,
        command=command,
        seed=seed,
        device=device,
    )
    atomic_write_text(folder / "guard.json", json.dumps(report.to_dict(), indent=1, default=str))
    log.info("guard: tests, audits and scans took %.1f s after the script", time.time() - done)
    return report
