"""``rl4text dpo``: direct preference optimisation (Rafailov et al. 2023) from the preference data the reward model
reads. Maths in :mod:`rl4text.core.dpo`; the config in :mod:`.config`; pairs and their encoding in :mod:`.data`;
the loop in :mod:`.train`; the subcommand in :mod:`.cli`."""
