"""The command layer's glue that is more than argument parsing (``rl4text eval``); ``rl4text.cli`` wires it."""
