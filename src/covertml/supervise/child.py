"""The guarded child: ``python -m covertml.supervise.child CONFIG SCRIPT ARGS...``.

Loads the owner's data, installs the watchers, then runs ``SCRIPT`` (or ``-m MODULE``) as
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
    from covertml.supervise.matcher import InputMatcher
    from covertml.supervise.store import save_observations
    from covertml.supervise.watch import Watcher

    ds = create_dataset(
        config["dataset"], data_dir=config.get("data_dir"), **config.get("dataset_options", {})
    )
    matcher = InputMatcher(ds, seed=config.get("seed", 0)) if config.get("match", True) else None
    watcher = Watcher(matcher, budget=config.get("budget", 0.15))
    out = Path(config["out"])

    def finish() -> None:
        seen = watcher.uninstall()
        save_observations(seen, out)
        if matcher is not None:
            (out / "matcher.json").write_text(json.dumps(matcher.stats.to_dict()))

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
