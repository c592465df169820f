"""``rl4text label``: people compare a policy's outputs; the judgments feed reward models (and DPO).

A project is a folder holding one SQLite database (``label.sqlite``, WAL mode): the items (a prompt and its
candidates, each remembering which system wrote it), every judgment as it arrives (with its history), skips
and the times items were served. Modules:

- :mod:`rl4text.label.project`: ``label new`` (items from ``predictions.jsonl`` / ``samples.jsonl``, gold items)
- :mod:`rl4text.label.store`: the database: next item for an annotator, judgments, skip, undo
- :mod:`rl4text.label.app`: ``label serve``, the Starlette web app and its JSON API
- :mod:`rl4text.label.agreement`: Cohen's κ, Krippendorff's α, Wilson intervals (pure functions)
- :mod:`rl4text.label.stats`: ``label stats`` (quality control and win rates, Markdown + JSON)
- :mod:`rl4text.label.export`: ``label export`` (the ``pairs`` / ``rankings`` JSON lines of ``rl4text rm train``)
"""
