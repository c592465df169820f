"""Run ``rl4text.cli.main`` with one step made to hang, so a test can SIGKILL the process exactly there.

``python -m tests.kill_driver MODE FLAG CLI-ARGS...``; ``FLAG`` is created when the process reaches the hang:

- ``model``: while writing the final ``model/`` (after its ``config.json`` is written);
- ``final-checkpoint``: while saving the checkpoint of the last iteration;
- ``iteration-2``: after iteration 2 is logged (before any checkpoint when ``train.save_every=0``).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path


def hang(flag: str) -> None:
    Path(flag).write_text("here\n")
    time.sleep(600)


def main(argv: list[str]) -> int:
    mode, flag, cli_args = argv[0], argv[1], argv[2:]
    import rl4text.runtime.checkpoints as checkpoints
    import rl4text.train as train

    if mode == "model":
        import rl4text.models as models  # the final model/ folder is written through models.save_pretrained_model

        save = models.save_pretrained_model

        def slow_save(model, folder):
            save(model, folder)  # config.json and weights are in the temporary folder now
            hang(flag)

        models.save_pretrained_model = slow_save
    elif mode == "final-checkpoint":
        save = checkpoints.save_checkpoint
        total = int(next(a for a in cli_args if a.startswith("train.iterations=")).split("=")[1])

        def slow_checkpoint(folder, iteration, *args, **kwargs):
            if iteration == total:
                hang(flag)
            return save(folder, iteration, *args, **kwargs)

        checkpoints.save_checkpoint = slow_checkpoint
    elif mode == "iteration-2":
        step = train.iteration

        def slow_iteration(loop, it):
            row = step(loop, it)
            if it == 2:
                hang(flag)
            return row

        train.iteration = slow_iteration
    from rl4text.cli import main as cli_main

    return cli_main(cli_args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
