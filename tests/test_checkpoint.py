"""Checkpoints: safetensors + JSON only (loading never unpickles), exact round trips, and broken files skipped."""

from __future__ import annotations

import json
import pickle
import random
import warnings

import numpy as np
import pytest
import torch

from rl4text import checkpoint as ckpt_mod
from rl4text.checkpoint import (
    CheckpointError,
    decode,
    encode,
    latest_checkpoint,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from rl4text.core import make_kl_controller
from rl4text.rewards import RewardScaler
from rl4text.train import PromptSampler


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(7, 4)
        self.head = torch.nn.Linear(4, 7, bias=False)
        self.head.weight = self.emb.weight  # tied, as in LMs


def trained(seed=0):
    torch.manual_seed(seed)
    net = Net()
    opt = torch.optim.AdamW(
        [{"params": [net.emb.weight], "lr": 1e-3}, {"params": [], "lr": 2e-3}], betas=(0.8, 0.9)
    )
    for _ in range(3):
        opt.zero_grad()
        net.head(net.emb(torch.tensor([1, 2, 3]))).square().mean().backward()
        opt.step()
    return net, opt


def loop_state():
    sampler = PromptSampler([{"prompt": str(i)} for i in range(10)], 3, seed=5)
    sampler.next()
    scaler = RewardScaler(normalize=True)
    scaler([0.1, 0.7, -0.25])
    kl = make_kl_controller(0.1, 6.0, 100)
    kl.update(3.0, 8)
    mask = {"model.w": torch.randn(3, 2), "model.b": torch.arange(3)}
    return (
        sampler,
        scaler,
        kl,
        {
            "sampler": sampler.state_dict(),
            "reward_scaler": scaler.state_dict(),
            "kl_controller": kl.state_dict(),
            "algorithm": {"updates": 4, "mask_model": mask},
        },
    )


def test_encode_decode_is_exact():
    tensors: dict = {}
    obj = {
        "ints": {0: "a", 7: (1, 2)},
        "big": 2**127 + 12345,  # PCG64 states are 128-bit integers
        "float": 0.1 + 0.2,
        "inf": float("inf"),
        "nested": [(None, True), {"__sneaky": 1}],
        "arr": np.arange(6, dtype=np.uint32).reshape(2, 3),
        "t": torch.tensor(3.5),
        "t8": torch.tensor([1, 255], dtype=torch.uint8),
    }
    text = json.dumps(encode(obj, tensors))
    back = decode(json.loads(text), tensors)
    assert back["ints"] == {0: "a", 7: (1, 2)} and isinstance(back["ints"][7], tuple)
    assert back["big"] == 2**127 + 12345 and back["float"] == 0.1 + 0.2 and back["inf"] == float("inf")
    assert back["nested"] == [(None, True), {"__sneaky": 1}]
    assert back["arr"].dtype == np.uint32 and back["arr"].tolist() == [[0, 1, 2], [3, 4, 5]]
    assert back["t"] is tensors["t"] and set(tensors) == {"t", "t8"}
    clash: dict = {}
    back = decode(encode({"a.b": torch.ones(1), "a": {"b": torch.zeros(1)}}, clash), clash)
    assert back["a.b"].item() == 1.0 and back["a"]["b"].item() == 0.0 and len(clash) == 2
    with pytest.raises(TypeError, match=r"cannot store set at 'x'"):
        encode({"x": {1, 2}}, {})


def test_round_trip_of_weights_optimizer_rng_and_loop_state(tmp_path):
    net, opt = trained()
    sampler, scaler, kl, state = loop_state()
    random.random(), np.random.rand(), torch.rand(1)  # move every generator off its seed
    path = save_checkpoint(tmp_path / "ck", 3, net, opt, state)
    assert sorted(p.name for p in path.iterdir()) == [
        "manifest.json",
        "optimizer.json",
        "optimizer.safetensors",
        "policy.safetensors",
        "state.json",
        "state.safetensors",
    ]
    expected = (random.random(), np.random.rand(), torch.rand(3), np.random.randn())
    net2, opt2 = trained(seed=1)
    loaded = load_checkpoint(path, net2, opt2)
    for a, b in zip(net.state_dict().values(), net2.state_dict().values()):
        assert torch.equal(a, b)
    assert net2.head.weight is net2.emb.weight  # still tied
    sd, sd2 = opt.state_dict(), opt2.state_dict()
    assert sd["param_groups"] == sd2["param_groups"]
    for k, v in sd["state"][0].items():
        assert torch.equal(v, sd2["state"][0][k]), k
    assert loaded["iteration"] == 3 and loaded["algorithm"]["updates"] == 4
    assert torch.equal(
        loaded["algorithm"]["mask_model"]["model.w"], state["algorithm"]["mask_model"]["model.w"]
    )
    # loop components continue exactly where the saved ones would
    s2 = PromptSampler([{"prompt": str(i)} for i in range(10)], 3, seed=99)
    s2.load_state_dict(loaded["sampler"])
    assert s2.next() == sampler.next() and s2.next() == sampler.next()
    sc2 = RewardScaler(normalize=True)
    sc2.load_state_dict(loaded["reward_scaler"])
    assert sc2([0.3, 0.4]) == scaler([0.3, 0.4])
    kl2 = make_kl_controller(0.1, 6.0, 100)
    kl2.load_state_dict(loaded["kl_controller"])
    assert kl2.value == kl.value
    # RNG states: the same draws as right after saving
    set_rng_state(loaded["rng"])
    again = (random.random(), np.random.rand(), torch.rand(3), np.random.randn())
    assert again[0] == expected[0] and again[1] == expected[1] and again[3] == expected[3]
    assert torch.equal(again[2], expected[2])


def test_loading_never_unpickles(tmp_path, monkeypatch):
    net, opt = trained()
    path = save_checkpoint(tmp_path / "ck", 1, net, opt, loop_state()[3])

    def forbidden(*args, **kwargs):
        raise AssertionError("a checkpoint load unpickled something")

    for module, name in [(torch, "load"), (pickle, "load"), (pickle, "loads"), (pickle, "Unpickler")]:
        monkeypatch.setattr(module, name, forbidden)
    net2, opt2 = trained(seed=1)
    assert latest_checkpoint(tmp_path / "ck") == path
    assert load_checkpoint(path, net2, opt2)["iteration"] == 1
    # and nothing in the package calls them
    from pathlib import Path

    root = Path(ckpt_mod.__file__).parent
    offenders = [
        str(p.relative_to(root))
        for p in root.rglob("*.py")
        if any(
            s in p.read_text() for s in ("torch.load(", "import pickle", "pickle.load", "weights_only=False")
        )
    ]
    assert offenders == []


def test_keep_and_pointer(tmp_path):
    net, opt = trained()
    for it in (1, 2, 3):
        save_checkpoint(tmp_path, it, net, opt, {}, keep=2)
    assert sorted(p.name for p in tmp_path.glob("iter_*")) == ["iter_000002", "iter_000003"]
    assert (tmp_path / "latest").read_text() == "iter_000003\n"
    assert not list(tmp_path.glob(".*tmp*"))
    with pytest.raises(ValueError, match="keep must be >= 1"):
        save_checkpoint(tmp_path, 4, net, opt, {}, keep=0)


@pytest.mark.parametrize(
    ("damage", "named"),
    [
        ("truncate_policy", "policy.safetensors"),
        ("truncate_state", "state.json"),
        ("flip_optimizer", "optimizer.safetensors"),
        ("no_manifest", "manifest.json"),
        ("empty_pointer", "latest"),
        ("old_pickle_format", "older rl4text"),
    ],
)
def test_broken_newest_checkpoint_falls_back_with_a_warning(tmp_path, damage, named):
    net, opt = trained()
    save_checkpoint(tmp_path, 1, net, opt, {"note": "first"})
    newest = save_checkpoint(tmp_path, 2, net, opt, {"note": "second"})
    if damage.startswith("truncate"):
        file = newest / ("policy.safetensors" if damage == "truncate_policy" else "state.json")
        file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])
    elif damage == "flip_optimizer":
        file = newest / "optimizer.safetensors"
        data = bytearray(file.read_bytes())
        data[-1] ^= 0xFF
        file.write_bytes(bytes(data))
    elif damage == "no_manifest":
        (newest / "manifest.json").unlink()
    elif damage == "empty_pointer":
        (tmp_path / "latest").write_text("")
    else:
        (newest / "state.pt").write_bytes(b"pickle")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        found = latest_checkpoint(tmp_path)
    messages = " ".join(str(w.message) for w in caught)
    assert named in messages, messages
    if damage == "empty_pointer":  # the pointer alone is broken: the newest checkpoint is still fine
        assert found == newest
        return
    assert found == tmp_path / "iter_000001"
    assert load_checkpoint(found, *trained(seed=1))["note"] == "first"
    with pytest.raises(CheckpointError, match=named):
        load_checkpoint(newest, *trained(seed=1))


def test_no_intact_checkpoint_gives_none(tmp_path):
    assert latest_checkpoint(tmp_path / "absent") is None
    net, opt = trained()
    only = save_checkpoint(tmp_path, 1, net, opt, {})
    (only / "policy.safetensors").write_bytes(b"")
    with pytest.warns(UserWarning, match="policy.safetensors"):
        assert latest_checkpoint(tmp_path) is None


def test_rng_state_of_a_fresh_process_is_restored_exactly():
    state = rng_state()
    draws = (random.getrandbits(64), np.random.randint(0, 2**31), torch.randint(0, 2**31, (1,)).item())
    tensors: dict = {}
    restored = decode(json.loads(json.dumps(encode(state, tensors))), tensors)
    set_rng_state(restored)
    assert (
        random.getrandbits(64),
        np.random.randint(0, 2**31),
        torch.randint(0, 2**31, (1,)).item(),
    ) == draws
