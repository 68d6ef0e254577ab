"""Subprocess entry for engine tests (plain script or under ``torchrun``).

    python run_toy.py kill OUT KILL_AT       # train the toy config, SIGKILL itself at step KILL_AT
    python run_toy.py cli ARGS...            # `contrast3d pretrain toy ARGS...` with the toy method registered
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import engine_toy as T  # noqa: E402


def kill(out: str, kill_at: int) -> int:
    from contrast3d.engine.run import train
    from contrast3d.engine.trainer import PeriodicCallback

    def maybe_kill(ctx):
        if ctx.step == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    train(T.toy_config(loader__num_workers=2), T.SPEC, out, callbacks=[PeriodicCallback(1, maybe_kill, "kill")])
    return 0


def cli(argv: list[str]) -> int:
    from contrast3d.commands import pretrain as command
    from contrast3d.errors import DataError
    from contrast3d.methods import METHODS

    METHODS["toy"] = T.SPEC
    parser = argparse.ArgumentParser(prog="contrast3d")
    command.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["pretrain", "toy", *argv])
    try:
        return args.func(args)
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    mode, *rest = sys.argv[1:]
    raise SystemExit(kill(rest[0], int(rest[1])) if mode == "kill" else cli(rest))
