"""Reward models learned from human judgments (``rl4text rm train | score | calibrate``).

- :mod:`rl4text.rm.data`: judgments as groups (generic JSON lines for pairs / rankings / ratings, loaders of
  SummEval, WMT22 DA and HH-RLHF) and the leak-free split by group.
- :mod:`rl4text.rm.losses`: Bradley–Terry, Plackett–Luce, regression.
- :mod:`rl4text.rm.stats`: pairwise accuracy, Kendall's tau-b, Spearman's rho.
- :mod:`rl4text.rm.model`: the model (HF backbone + one-logit head) and its folder.
- :mod:`rl4text.rm.train`: the training recipe; :mod:`rl4text.rm.evaluate`: agreement vs lexical metrics.
- :mod:`rl4text.rm.reward`: the ``learned_rm`` reward, a trained folder as an RL reward (registered lazily).

Heavy imports happen in the submodules, so importing this package is cheap.
"""
