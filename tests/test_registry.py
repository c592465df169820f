"""Registry: decorators, lazy built-ins, module:Name specs, entry-point plugins, helpful errors."""

import sys
import types
from importlib import metadata

import pytest

import rl4text
from rl4text.cli import main
from rl4text.registry import ALGORITHMS, REWARDS, Registry, RegistryError


def test_decorator_build_and_duplicate():
    reg = Registry("thing")

    @reg.register("double")
    def double(x):
        return 2 * x

    assert reg.build("double", x=4) == 8
    assert "double" in reg and "nope" not in reg
    with pytest.raises(RegistryError, match="already registered"):
        reg.register("double", lambda x: x)
    reg.register("double", lambda x: 3 * x, override=True)
    assert reg.build("double", x=1) == 3


def test_unknown_name_lists_known_and_closest():
    with pytest.raises(RegistryError) as err:
        REWARDS.get("chfr")
    msg = str(err.value)
    assert "Did you mean 'chrf'?" in msg
    assert "bleu" in msg and "char_fraction" in msg


def test_builtins_present():
    assert {"ppo"} <= set(ALGORITHMS.names())
    assert {"chrf", "bleu", "char_fraction", "length"} <= set(REWARDS.names())
    assert {"toy_letters", "multi30k", "jsonl"} <= set(rl4text.TASKS.names())
    assert {"chrf", "bleu"} <= set(rl4text.METRICS.names())


def test_module_spec(tmp_path, monkeypatch):
    mod = types.ModuleType("my_rewards_mod")

    def shout(**kwargs):
        return lambda prompts, completions, references: [float(c.isupper()) for c in completions]

    mod.shout = shout
    monkeypatch.setitem(sys.modules, "my_rewards_mod", mod)
    fn = REWARDS.build("my_rewards_mod:shout")
    assert fn([""], ["HI"], [[""]]) == [1.0]
    with pytest.raises(RegistryError, match="no attribute"):
        REWARDS.get("my_rewards_mod:missing")


def test_public_decorators_register():
    @rl4text.register_reward("test_constant_reward")
    def constant(value: float = 1.0):
        return lambda prompts, completions, references: [value] * len(completions)

    assert REWARDS.build("test_constant_reward", value=2.0)([""], ["x"], [[""]]) == [2.0]


def test_entry_point_plugins_are_looked_up_on_a_miss(monkeypatch):
    mod = types.ModuleType("fake_plugin_pkg")

    def plugin_reward():
        return lambda prompts, completions, references: [0.5] * len(completions)

    mod.plugin_reward = plugin_reward
    monkeypatch.setitem(sys.modules, "fake_plugin_pkg", mod)
    eps = metadata.EntryPoints(
        [
            metadata.EntryPoint(
                name="reward.plugged", value="fake_plugin_pkg:plugin_reward", group="rl4text.plugins"
            )
        ]
    )
    calls = []

    def fake_entry_points(group=None):
        calls.append(group)
        return eps if group == "rl4text.plugins" else metadata.EntryPoints([])

    monkeypatch.setattr(metadata, "entry_points", fake_entry_points)
    reg = Registry("reward")
    reg.register("builtin", plugin_reward)
    assert reg.get("builtin") is plugin_reward
    assert calls == []  # a hit never touches entry points
    assert reg.build("plugged")([""], ["x"], [[""]]) == [0.5]
    assert calls == ["rl4text.plugins"]


def test_cli_list(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for word in ("algorithms:", "rewards:", "metrics:", "tasks:", "ppo", "chrf", "multi30k"):
        assert word in out
