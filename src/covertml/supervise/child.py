"""The guarded child: ``python -m covertml.supervise.child CONFIG SCRIPT ARGS...``.

Loads the owner's data, indexes it for the input checks (the parent sets their threshold
meanwhile), installs the watchers, then runs ``SCRIPT`` (or ``-m MODULE``) as
``__main__`` with ``sys.argv`` as the script expects, unchanged. Whatever happens to the
script -- it returns, calls ``sys.exit`` or raises -- the observations are written to the
config's ``out`` folder and the child exits with the script's own exit code.
"""

from __future__ import annotations

import json
import logging
import os
import runpy
import sys
import traceback
from pathlib import Path
from typing import NoReturn

log = logging.getLogger("covertml.guard")
SETUP_ERROR = "setup-error.txt"  # why the child could not start the script


def _exit_code(exc: SystemExit) -> int:
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    print(exc.code, file=sys.stderr)
    return 1


def main(argv: list[str]) -> int:
    """Runs the guarded script; returns its exit code."""
    config = json.loads(Path(argv[0]).read_text())
    target = argv[1:]
    from covertml.data import create_dataset
    from covertml.errors import CovertMLError
    from covertml.supervise.defaults import DEFAULT_BUDGET
    from covertml.supervise.matcher import InputMatcher
    from covertml.supervise.store import save_observations
    from covertml.supervise.watch import Watcher

    out = Path(config["out"])
    try:
        ds = create_dataset(
            config["dataset"], data_dir=config.get("data_dir"), **config.get("dataset_options", {})
        )
        # the threshold is the parent's business: it calibrates while the script runs here
        matcher = (
            InputMatcher(ds, seed=config.get("seed", 0), calibrate=False)
            if config.get("match", True)
            else None
        )
    except CovertMLError as exc:  # the parent reports it (it loads the same data)
        (out / SETUP_ERROR).write_text(str(exc))
        return 2
    watcher = Watcher(matcher, budget=config.get("budget", DEFAULT_BUDGET))

    def finish() -> None:
        save_observations(watcher.uninstall(), out)

    real_exit, me = os._exit, os.getpid()

    def guarded_exit(status: int) -> NoReturn:  # os._exit skips finally: save first
        if os.getpid() == me:  # not in forked workers (multiprocessing exits them this way)
            finish()
        real_exit(status)

    os._exit = guarded_exit
    code = 0
    watcher.install()
    try:
        if target[0] == "-m":
            sys.argv = target[1:]
            runpy.run_module(target[1], run_name="__main__", alter_sys=True)
        else:
            sys.argv = list(target)
            sys.path.insert(0, os.path.dirname(os.path.abspath(target[0])))
            runpy.run_path(target[0], run_name="__main__")
    except SystemExit as exc:
        code = _exit_code(exc)
    except BaseException:  # the script's own failure, reported as such
        traceback.print_exc()
        code = 1
    finally:
        os._exit = real_exit
        finish()
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
