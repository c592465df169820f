"""``accelerate launch ... -m tests.dist_kill_driver RANK ITERATION CLI-ARGS...``: ``rl4text`` whose process
``RANK`` kills itself (SIGKILL) right after iteration ``ITERATION``; the launcher then stops the others."""

from __future__ import annotations

import os
import signal
import sys


def main(argv: list[str]) -> int:
    rank, at, cli_args = int(argv[0]), int(argv[1]), argv[2:]
    import rl4text.train as train

    step = train.iteration

    def dying_iteration(loop, it):
        row = step(loop, it)
        if it == at and loop.c.dist.rank == rank:
            os.kill(os.getpid(), signal.SIGKILL)
        return row

    train.iteration = dying_iteration
    from rl4text.cli import main as cli_main

    return cli_main(cli_args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
