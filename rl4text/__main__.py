"""``python -m rl4text``: the ``rl4text`` command, also what ``accelerate launch -m rl4text train ...`` runs."""

import sys

from rl4text.cli import main

sys.exit(main())
