"""``python -m rl4text``: the ``rl4text`` command, also what ``accelerate launch -m rl4text train ...`` runs."""

import sys

from rl4text.cli import main

if (
    __name__ == "__main__"
):  # not when a spawned worker re-imports the main module (it is ``__mp_main__`` there)
    sys.exit(main())
