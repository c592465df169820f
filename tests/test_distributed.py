"""Data-parallel training on CPU (gloo): the same first update as one process, a 2-process run, kill and resume.

The launch tests start ``accelerate launch --config_file configs/accelerate/ddp.yaml -m rl4text train`` (two
processes, one thread each); the equivalence test spawns two gloo processes itself.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rl4text.runtime import read_jsonl

ROOT = Path(__file__).resolve().parent.parent
ACCELERATE = Path(sys.executable).with_name("accelerate")
B, P, T, V = 8, 5, 6, 40
LENGTHS = [6, 2, 5, 3, 4, 4, 6, 2]  # each half holds 16 response tokens: per-process token means weigh alike


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env() -> dict:
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }


# ------------------------------------------------------------------------------------ the same first update


def fixed_rollout():
    """A fixed batch of ``B`` episodes (left-padded prompts, varied response lengths) and its token rewards; the
    second half's rewards are shifted, so per-process whitening would differ from global whitening."""
    g = torch.Generator().manual_seed(1)
    prompt_ids = torch.randint(3, V, (B, P), generator=g)
    prompt_mask = torch.ones(B, P, dtype=torch.long)
    prompt_mask[::3, :2] = 0
    response_ids = torch.randint(3, V, (B, T), generator=g)
    response_mask = (torch.arange(T)[None] < torch.tensor(LENGTHS)[:, None]).float()
    rewards = torch.randn(B, T, generator=g) * response_mask
    rewards[B // 2 :] += 2.0 * response_mask[B // 2 :]
    kl = torch.rand(B, T, generator=g) * response_mask
    return prompt_ids, prompt_mask, response_ids * response_mask.long(), response_mask, rewards, kl


def first_update(dist, rank: int, world: int, device: str = "cpu") -> dict:
    """One PPO update (whitened GAE advantages, clipped gradients, SGD) on this process's share of the fixed
    rollout through ``Dist.prepare``, and one adaptive-KL step on the reduced KL."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from rl4text.algorithms.ppo import PPO, PPOConfig
    from rl4text.core import make_kl_controller
    from rl4text.policies.actor_critic import ActorCritic
    from rl4text.rollout import Rollout

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=V,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=32,
    )
    policy = ActorCritic(LlamaForCausalLM(config), seq2seq=False)
    torch.nn.init.normal_(policy.value_head.weight, std=0.5)  # a critic with opinions: GAE uses the values
    policy.to(device)
    initial = [p.detach().clone() for p in policy.parameters()]
    prompt_ids, prompt_mask, response_ids, response_mask, rewards, kl = (
        t.to(device) for t in fixed_rollout()
    )
    with torch.no_grad():
        old = policy.score(prompt_ids, prompt_mask, response_ids, response_mask.long())
    share = slice(rank * B // world, (rank + 1) * B // world)
    rollout = Rollout(
        samples=[{}] * (B // world),
        prompt_ids=prompt_ids[share],
        prompt_mask=prompt_mask[share],
        response_ids=response_ids[share],
        response_mask=response_mask[share],
        completions=[""] * (B // world),
        logprobs=(old.logprobs * response_mask)[share],
        values=(old.values * response_mask)[share],
    )
    cfg = PPOConfig(n_epochs=1, minibatch_size=B // world, max_grad_norm=0.05, kl_target=0.5, kl_horizon=100)
    algo = PPO(cfg, policy, torch.optim.SGD(policy.parameters(), lr=0.5))
    scorer, optimizer = dist.prepare(policy, algo.optimizer)
    algo.attach(scorer=scorer, optimizer=optimizer, ops=dist)
    batch = algo.prepare(rollout, rewards[share])
    stats = algo.update(batch)
    ctl = make_kl_controller(0.1, cfg.kl_target, cfg.kl_horizon)
    row = dist.reduce_mean(
        {"kl/mean": float(kl[share].sum(-1).mean()), "policy/grad_norm": stats["policy/grad_norm"]}
    )
    ctl.update(row["kl/mean"], (B // world) * world)
    return {
        "params": {k: v.detach().cpu().clone() for k, v in dist.unwrap(scorer).named_parameters()},
        "advantages": batch.advantages.cpu(),
        "kl_coef": ctl.value,
        "grad_norm": row["policy/grad_norm"],
        "moved": max(float((p.detach() - q).abs().max()) for p, q in zip(policy.parameters(), initial)),
    }


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
    )
    torch.set_num_threads(1)
    from accelerate import Accelerator

    from rl4text.runtime.distributed import Dist

    dist = Dist(Accelerator(cpu=True))
    assert dist.world_size == world and dist.kind == "ddp"
    result = first_update(dist, rank, world)
    from safetensors.torch import save_file

    tensors = {f"p/{k}": v.contiguous() for k, v in result["params"].items()}
    tensors["advantages"] = result["advantages"].contiguous()
    save_file(tensors, f"{out}/rank{rank}.safetensors")
    Path(f"{out}/rank{rank}.json").write_text(
        json.dumps({"kl_coef": result["kl_coef"], "grad_norm": result["grad_norm"]})
    )


def test_two_processes_take_the_same_first_update_as_one(tmp_path):
    """2 processes x B/2 == 1 process x B: parameters, the global-whitened advantages, the gradient norm (of the
    all-reduced gradients, clipped) and the adaptive KL coefficient (from the reduced KL and the global batch)."""
    from safetensors.torch import load_file

    from rl4text.core import compute_gae, masked_whiten
    from rl4text.runtime.distributed import Dist

    one = first_update(Dist(), 0, 1)
    torch.multiprocessing.spawn(_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    ranks = [load_file(tmp_path / f"rank{r}.safetensors") for r in range(2)]
    meta = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    for name, p in one["params"].items():
        for r in range(2):
            torch.testing.assert_close(ranks[r][f"p/{name}"], p, atol=2e-6, rtol=1e-5)
    assert one["moved"] > 1e-3  # the update moved the weights far beyond the tolerance
    advantages = torch.cat([ranks[0]["advantages"], ranks[1]["advantages"]])
    torch.testing.assert_close(advantages, one["advantages"], atol=1e-5, rtol=1e-5)
    for r in range(2):
        assert meta[r]["kl_coef"] == pytest.approx(one["kl_coef"], rel=1e-9)
        assert meta[r]["grad_norm"] == pytest.approx(one["grad_norm"], rel=1e-4)
    assert one["grad_norm"] > 0.05  # clipping was active (max_grad_norm=0.05)
    # the plausible wrong version: each process whitening with its own statistics
    _, _, _, mask, rewards, _ = fixed_rollout()
    raw, _ = compute_gae(rewards[:4], torch.zeros(4, T), mask[:4], 1.0, 0.95)
    assert not torch.allclose(masked_whiten(raw, mask[:4]), ranks[0]["advantages"], atol=1e-3)
    # the adaptive controller saw the global KL: 0.1 * (1 + clip(KL/target - 1, -0.2, 0.2) * n / horizon)
    kl = fixed_rollout()[5].sum(-1).mean().item()
    assert one["kl_coef"] == pytest.approx(0.1 * (1 + max(-0.2, min(0.2, kl / 0.5 - 1)) * B / 100))


@pytest.mark.skipif(
    os.environ.get("RL4TEXT_TEST_DEVICE") != "cuda" or not torch.cuda.is_available(),
    reason="a CUDA check (benchmarks/gpu_check.sh sets RL4TEXT_TEST_DEVICE=cuda)",
)
def test_cuda_update_matches_cpu():
    """The same first update (fixed rollout, whitening, clipping, KL step) on CUDA as on the CPU."""
    from rl4text.runtime.distributed import Dist

    cpu, cuda = first_update(Dist(), 0, 1), first_update(Dist(), 0, 1, device="cuda")
    for name, p in cpu["params"].items():
        torch.testing.assert_close(cuda["params"][name], p, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(cuda["advantages"], cpu["advantages"], atol=1e-5, rtol=1e-4)
    assert cuda["kl_coef"] == pytest.approx(cpu["kl_coef"], rel=1e-6)


# ------------------------------------------------------------------------------------------- launched runs

RUN = [
    "configs/smoke.yaml",
    "rollout.batch_size=16",
    "train.iterations=10",
    "train.save_every=2",
    "eval.every=0",
    "eval.max_samples=16",
    "tracking.wandb.enabled=false",
    "tracking.progress=none",
]


def launch(out: Path, *extra: str, module: list[str] | None = None, timeout: int = 240):
    cmd = [
        str(ACCELERATE),
        "launch",
        "--config_file",
        "configs/accelerate/ddp.yaml",
        "--num_processes",
        "2",
        "--main_process_port",
        str(free_port()),
        "-m",
        *(module or ["rl4text", "train"]),
        *RUN,
        "--output-dir",
        str(out),
        *extra,
    ]
    return subprocess.run(cmd, cwd=ROOT, env=env(), capture_output=True, text=True, timeout=timeout)


def rows_without_time(folder: Path) -> list[dict]:
    return [
        {k: v for k, v in r.items() if not k.startswith("time/")}
        for r in read_jsonl(folder / "metrics.jsonl")
    ]


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp") / "run"
    done = launch(out)
    assert done.returncode == 0, done.stderr[-3000:]
    return out, done


def test_two_process_smoke_run(two_process_run):
    out, done = two_process_run
    rows = read_jsonl(out / "metrics.jsonl")
    iterations = [r["iteration"] for r in rows if "rollout/reward_mean" in r]
    assert iterations == list(range(1, 11))  # each iteration logged once, by the main process only
    assert all(
        r["dist/world_size"] == 2 and r["dist/global_batch"] == 32 for r in rows if "rollout/reward_mean" in r
    )
    rewards = [r["rollout/reward_mean"] for r in rows if "rollout/reward_mean" in r]
    assert sum(rewards[-2:]) / 2 > sum(rewards[:2]) / 2 + 0.05, rewards
    assert sorted(p.name for p in (out / "checkpoints").glob("iter_*")) == ["iter_000008", "iter_000010"]
    assert (out / "model" / "config.json").is_file() and json.loads((out / "eval.json").read_text())[
        "iteration"
    ] == 10
    assert len([r for r in rows if r.get("final")]) == 1
    assert done.stdout.count("run folder:") == 2  # both processes finish (only one writes)


def test_kill_one_process_then_resume_matches_uninterrupted(two_process_run, tmp_path):
    from rl4text.config import load_config
    from rl4text.runtime import RunDirError
    from rl4text.train import train

    reference, _ = two_process_run
    out = tmp_path / "run"
    killed = launch(out, module=["tests.dist_kill_driver", "1", "5", "train"])
    assert killed.returncode != 0
    assert (out / "checkpoints" / "iter_000004").is_dir() and not (out / "model").exists()
    # another process count: refused, naming both counts, before anything is cut
    before = (out / "metrics.jsonl").read_text()
    cfg = load_config(ROOT / RUN[0], RUN[1:])
    with pytest.raises(RunDirError, match=r"2 process\(es\) and this resume runs 1"):
        train(cfg, out, resume=True)
    assert (out / "metrics.jsonl").read_text() == before
    resumed = launch(out, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert rows_without_time(out) == rows_without_time(reference)
    assert json.loads((out / "eval.json").read_text()) == json.loads((reference / "eval.json").read_text())


def test_trpo_refuses_several_processes_clearly(tmp_path):
    done = launch(tmp_path / "run", "algorithm.name=trpo", timeout=120)
    assert done.returncode != 0  # each process exits 2; the launcher reports 1
    assert "runs in a single process only" in done.stderr and "2 processes were launched" in done.stderr


@pytest.mark.parametrize(
    "name, kind",
    [
        ("ddp", "MULTI_GPU"),
        ("fsdp", "FSDP"),
        ("deepspeed_zero2", "DEEPSPEED"),
        ("deepspeed_zero3", "DEEPSPEED"),
    ],
)
def test_shipped_accelerate_configs_load(name, kind):
    """Each shipped launch config is one Accelerate reads, of the kind its name says (FSDP and DeepSpeed only
    start on GPUs: Accelerate 1.15 refuses FSDP without an accelerator device; DeepSpeed needs CUDA)."""
    from accelerate.commands.config.config_args import load_config_from_file

    cfg = load_config_from_file(str(ROOT / "configs" / "accelerate" / f"{name}.yaml"))
    assert cfg.distributed_type.name == kind and cfg.num_processes == 2
    if name == "fsdp":
        assert cfg.fsdp_config["fsdp_sharding_strategy"] == "FULL_SHARD"
    if name.startswith("deepspeed"):
        assert cfg.deepspeed_config["zero_stage"] == int(name[-1])
