"""Gymnasium environments. ``import rl4text`` registers ``rl4text/TextGen-v0``."""

from rl4text.envs.text_gen import TextGenEnv

__all__ = ["TextGenEnv"]
