"""The ``covertml`` typer app: every command, with choices from the registries."""

from __future__ import annotations

from covertml.cli import (
    attack_cmds,
    demo_cmd,
    guard_cmd,
    inspect_cmds,
    reproduce_cmd,
    sanitize_cmds,
    scan_cmds,
    serve_cmds,
    train_cmds,
)
from covertml.cli.root import make_app

app = make_app()
for commands in (
    inspect_cmds,
    train_cmds,
    attack_cmds,
    serve_cmds,
    sanitize_cmds,
    scan_cmds,
    demo_cmd,
    reproduce_cmd,
    guard_cmd,
):
    commands.register(app)
