"""The training recipe, top to bottom: sample -> rollout -> reward -> advantages -> update -> log -> eval -> save.

Models, optimiser and data are built in one place (:func:`build`), which is where a distributed wrapper
(Accelerate's ``prepare``) would go.
"""

from __future__ import annotations

import json
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml

from rl4text.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint, set_rng_state
from rl4text.config import Config, ConfigError, check_device, save_config
from rl4text.core import make_kl_controller, masked_mean
from rl4text.core.shaping import kl_penalized_rewards
from rl4text.evaluate import evaluate
from rl4text.metrics import build_metrics
from rl4text.models import load_model, load_tokenizer, save_pretrained_model
from rl4text.policies.actor_critic import ActorCritic, frozen_copy
from rl4text.progress import Progress
from rl4text.registry import ALGORITHMS, TASKS
from rl4text.rewards import ComposedReward, RewardScaler, build_reward
from rl4text.rollout import Rollout, collect_rollout
from rl4text.text import uses_chat_template
from rl4text.tracking import make_trackers

TIME_PREFIX = "time/"  # wall-clock keys: excluded when comparing runs for determinism


class RunDirError(RuntimeError):
    pass


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    check_device(name, "train.device", available=True)  # a ConfigError naming the key, not a CUDA traceback
    return torch.device(name)


class PromptSampler:
    """Draws batches of training samples: shuffled epochs from a seeded generator, state saved in checkpoints."""

    def __init__(self, samples: list[dict], batch_size: int, seed: int):
        self.samples, self.batch_size = samples, batch_size
        self.rng = np.random.default_rng(seed)
        self.order: list[int] = []

    def next(self) -> list[dict]:
        batch = []
        while len(batch) < self.batch_size:
            if not self.order:
                self.order = self.rng.permutation(len(self.samples)).tolist()
            batch.append(self.samples[self.order.pop()])
        return batch

    def state_dict(self) -> dict:
        return {"rng": self.rng.bit_generator.state, "order": list(self.order)}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.order = list(state["order"])


def parameter_groups(policy: ActorCritic, lr: float, value_lr: float | None) -> list[dict]:
    """Optimiser groups: the LM at ``lr``; the value head and any separate critic at ``value_lr`` (default ``lr``)."""
    critic = list(policy.value_head.parameters())
    if policy.critic_model is not None:
        critic += list(policy.critic_model.parameters())
    critic_ids = {id(p) for p in critic}
    actor = [p for p in policy.parameters() if p.requires_grad and id(p) not in critic_ids]
    critic = [p for p in critic if p.requires_grad]
    return [{"params": actor, "lr": lr}, {"params": critic, "lr": value_lr if value_lr is not None else lr}]


@dataclass
class Components:
    """Everything a run is made of (built once, from the config)."""

    tokenizer: object
    policy: ActorCritic
    reference: torch.nn.Module | None
    optimizer: torch.optim.Optimizer
    algorithm: object
    task: object
    reward_fn: ComposedReward
    reward_scaler: RewardScaler
    use_chat_template: bool


def build(cfg: Config) -> Components:
    """Build tokenizer, policy (+ value head), reference, optimiser, algorithm, task and reward from ``cfg``."""
    device = pick_device(cfg.train.device)
    seed_everything(cfg.train.seed)
    tokenizer = load_tokenizer(cfg.model)
    model, seq2seq = load_model(cfg.model, tokenizer)
    policy = ActorCritic(model, seq2seq, cfg.model.critic).to(device)
    algo_cfg = cfg.algorithm.params
    needs_reference = algo_cfg.kl_coef > 0 or algo_cfg.kl_target is not None
    reference = frozen_copy(model).to(device) if needs_reference else None
    optimizer = torch.optim.AdamW(
        parameter_groups(policy, cfg.train.learning_rate, cfg.train.value_learning_rate),
        lr=cfg.train.learning_rate,
        weight_decay=cfg.train.weight_decay,
    )
    algorithm = ALGORITHMS.get(cfg.algorithm.name)(algo_cfg, policy, optimizer)
    algorithm.temperature = cfg.rollout.temperature
    task = TASKS.build(cfg.task.name, **cfg.task.args)
    use_chat = uses_chat_template(cfg.model.use_chat_template, tokenizer, seq2seq)
    scaler = RewardScaler(cfg.reward.normalize, cfg.reward.normalize_center, cfg.reward.clip)
    return Components(
        tokenizer,
        policy,
        reference,
        optimizer,
        algorithm,
        task,
        build_reward(cfg.reward),
        scaler,
        use_chat,
    )


def reward_fields(rollout: Rollout, eos_id: int) -> dict:
    """The extra per-sample fields every reward component receives (the env passes the same)."""
    lengths = rollout.lengths.long().tolist()
    ids = [row[:n] for row, n in zip(rollout.response_ids.tolist(), lengths)]
    return {
        "ended_with_eos": rollout.ended_with_eos(eos_id).tolist(),
        "response_token_ids": ids,
        "meta": [s.get("meta", {}) for s in rollout.samples],
    }


def pad_token_rewards(token: list[list[float]], mask: torch.Tensor) -> torch.Tensor:
    """Per-token rewards ``[B][T_i]`` as a ``[B, T]`` tensor aligned with the response tokens."""
    out = torch.zeros_like(mask, dtype=torch.float32)
    for i, row in enumerate(token):
        out[i, : len(row)] = torch.tensor(row, dtype=torch.float32)
    return out


# ---------------------------------------------------------------------------------------------- run folder


class RunLog:
    """Append-only JSON-lines logs in the run folder, mirrored to the configured trackers (W&B, TensorBoard)."""

    def __init__(self, out: Path, trackers: list | None = None):
        self.metrics_path, self.samples_path = out / "metrics.jsonl", out / "samples.jsonl"
        self.trackers = trackers or []

    def metrics(self, row: dict) -> None:
        with self.metrics_path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        for tracker in self.trackers:
            tracker.log(row, row["iteration"])

    def samples(self, rows: list[dict]) -> None:
        with self.samples_path.open("a") as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")
        if rows:
            for tracker in self.trackers:
                tracker.log_samples(rows, rows[0]["iteration"])

    def finish(self, final: dict | None, out: Path) -> None:
        """Close the trackers; ``final`` is None when the run failed."""
        for tracker in self.trackers:
            tracker.finish(final, out)

    def truncate_after(self, iteration: int) -> None:
        """On resume: drop rows logged after the checkpoint, keeping the originals as ``*.before-resume``."""
        for path in (self.metrics_path, self.samples_path):
            if not path.is_file():
                continue
            rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
            keep = [r for r in rows if r.get("iteration", 0) <= iteration]
            if len(keep) != len(rows):
                shutil.copyfile(path, path.with_suffix(path.suffix + ".before-resume"))
                path.write_text("".join(json.dumps(r) + "\n" for r in keep))


def prepare_run_dir(cfg: Config, out: Path, resume: bool, overwrite: bool) -> None:
    """Create the run folder; never clobber a previous run unless asked."""
    saved = out / "config.yaml"
    if resume:
        if not saved.is_file():
            raise RunDirError(f"--resume: {out} holds no run (no config.yaml); start it without --resume")
        old = yaml.safe_load(saved.read_text())
        new = cfg.to_dict()
        old["train"].pop("iterations", None)
        diff = [k for k in new if k != "train" and new[k] != old.get(k)]
        diff += [
            f"train.{k}" for k, v in new["train"].items() if k != "iterations" and old["train"].get(k) != v
        ]
        if diff:
            raise RunDirError(
                f"--resume: the config differs from the one saved in {saved} at {', '.join(diff)}; "
                "only train.iterations may change when resuming"
            )
    elif out.exists() and any(out.iterdir()):
        if not overwrite:
            raise RunDirError(
                f"{out} already holds a run; pass --resume to continue it, --overwrite to replace it, "
                "or choose another --output-dir"
            )
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, saved)


# ---------------------------------------------------------------------------------------------- the loop


def train(cfg: Config, output_dir: str | Path, resume: bool = False, overwrite: bool = False) -> dict:
    """Run training; returns the final evaluation scores (also written to ``eval.json``)."""
    out = Path(output_dir)
    prepare_run_dir(cfg, out, resume, overwrite)
    log = RunLog(out, make_trackers(cfg, out, resume))
    final = None
    try:
        final = _train(cfg, out, resume, log)
        return final
    finally:
        log.finish(final, out)


def _train(cfg: Config, out: Path, resume: bool, log: RunLog) -> dict:
    c = build(cfg)
    algo_cfg = cfg.algorithm.params
    kl_ctl = make_kl_controller(algo_cfg.kl_coef, algo_cfg.kl_target, algo_cfg.kl_horizon)
    train_samples = c.task.split(cfg.task.train_split)
    eval_samples = c.task.split(cfg.task.eval_split)[: cfg.eval.max_samples]
    metrics = build_metrics(cfg.eval.metrics or c.task.metrics)  # once: model-based metrics load encoders
    k = c.algorithm.samples_per_prompt
    if cfg.rollout.batch_size % k:
        raise ConfigError(
            f"rollout.batch_size={cfg.rollout.batch_size} must be a multiple of the {cfg.algorithm.name} "
            f"algorithm's samples per prompt ({k})"
        )
    sampler = PromptSampler(train_samples, cfg.rollout.batch_size // k, cfg.train.seed)

    start = 0
    ckpt = latest_checkpoint(out / "checkpoints") if resume else None
    if ckpt is not None:
        state = load_checkpoint(ckpt, c.policy, c.optimizer)
        start = state["iteration"]
        sampler.load_state_dict(state["sampler"])
        kl_ctl.load_state_dict(state["kl_controller"])
        c.reward_scaler.load_state_dict(state["reward_scaler"])
        c.algorithm.load_state_dict(state["algorithm"])
        set_rng_state(state["rng"])
        log.truncate_after(start)
        print(f"resumed from {ckpt} at iteration {start}")

    def run_eval(iteration: int) -> dict:
        scores, rows = evaluate(
            c.policy.model,
            c.policy.seq2seq,
            c.tokenizer,
            eval_samples,
            c.reward_fn,
            metrics,
            batch_size=cfg.eval.batch_size,
            max_new_tokens=cfg.eval.max_new_tokens or cfg.rollout.max_new_tokens,
            max_prompt_length=cfg.rollout.max_prompt_length,
            use_chat_template=c.use_chat_template,
            do_sample=cfg.eval.do_sample,
            temperature=cfg.eval.temperature,
            num_beams=cfg.eval.num_beams,
        )
        log.samples([{"iteration": iteration, **r} for r in rows[: cfg.eval.num_logged_samples]])
        return scores

    def checkpoint(iteration: int) -> None:
        loop_state = {
            "sampler": sampler.state_dict(),
            "reward_scaler": c.reward_scaler.state_dict(),
            "kl_controller": kl_ctl.state_dict(),
            "algorithm": c.algorithm.state_dict(),
        }
        save_checkpoint(
            out / "checkpoints", iteration, c.policy, c.optimizer, loop_state, keep=cfg.train.keep_checkpoints
        )

    if start == 0 and cfg.eval.at_start:
        log.metrics({"iteration": 0, **{f"eval/{k}": v for k, v in run_eval(0).items()}})

    progress = Progress(cfg.train.iterations, start, cfg.tracking.progress, cfg.tracking.print_every)
    for it in range(start + 1, cfg.train.iterations + 1):
        progress.phase("rollout", it)
        t0 = time.perf_counter()
        # 1. sample prompts, 2. roll out (generate + score policy, values, reference)
        samples = [s for s in sampler.next() for _ in range(c.algorithm.samples_per_prompt)]
        rollout = collect_rollout(
            c.policy,
            c.reference,
            c.tokenizer,
            samples,
            cfg.rollout.max_new_tokens,
            cfg.rollout.max_prompt_length,
            cfg.rollout.temperature,
            c.use_chat_template,
            with_values=c.algorithm.uses_critic,
            action_masker=c.algorithm.action_masker,
        )
        t1 = time.perf_counter()
        # 3. reward: task reward of each finished text (scaled for training), KL penalty on every token
        rewards = c.reward_fn.evaluate(
            [s["prompt"] for s in samples],
            rollout.completions,
            [s["references"] for s in samples],
            **reward_fields(rollout, c.tokenizer.eos_token_id),
        )
        device = rollout.logprobs.device
        score_t = torch.tensor(rewards.total, dtype=torch.float32, device=device)
        seq_t = torch.tensor(c.reward_scaler(rewards.sequence), dtype=torch.float32, device=device)
        token_rewards, kl = kl_penalized_rewards(
            seq_t,
            rollout.logprobs,
            rollout.ref_logprobs,
            rollout.response_mask,
            kl_ctl.value,
            algo_cfg.kl_estimator,
            token_scores=None
            if rewards.token is None
            else pad_token_rewards(rewards.token, rollout.response_mask),
        )
        t2 = time.perf_counter()
        # 4. advantages, 5. update
        progress.phase("update", it)
        batch = c.algorithm.prepare(rollout, token_rewards)
        stats = c.algorithm.update(batch)
        t3 = time.perf_counter()
        kl_seq = float(kl.sum(-1).mean())
        row = {
            "iteration": it,
            "rollout/reward_mean": float(score_t.mean()),
            "rollout/reward_std": float(score_t.std()) if len(samples) > 1 else 0.0,
            **{f"reward/{k}": sum(v) / len(v) for k, v in rewards.parts.items()},
            "rollout/response_length": float(rollout.lengths.mean()),
            "rollout/eos_rate": float(rollout.ended_with_eos(c.tokenizer.eos_token_id).float().mean()),
            "rollout/entropy_proxy": float(-masked_mean(rollout.logprobs, rollout.response_mask)),
            "rollout/reward_train_mean": float(seq_t.mean()),
            "kl/mean": kl_seq,
            "kl/coef": kl_ctl.value,
            "kl/per_token": float(masked_mean(kl, rollout.response_mask)),
            **stats,
        }
        kl_ctl.update(kl_seq, len(samples))
        # 6. evaluate
        if cfg.eval.every and it % cfg.eval.every == 0 and it != cfg.train.iterations:
            progress.phase("eval", it)
            row.update({f"eval/{k}": v for k, v in run_eval(it).items()})
        row.update({"time/rollout_s": t1 - t0, "time/reward_s": t2 - t1, "time/update_s": t3 - t2})
        row["time/iteration_s"] = time.perf_counter() - t0
        log.metrics(row)
        progress.iteration_done(it, row)
        # 7. save
        if cfg.train.save_every and it % cfg.train.save_every == 0 and it != cfg.train.iterations:
            checkpoint(it)

    progress.phase("eval", cfg.train.iterations)
    final = run_eval(cfg.train.iterations)
    progress.close()
    log.metrics(
        {"iteration": cfg.train.iterations, "final": True, **{f"eval/{k}": v for k, v in final.items()}}
    )
    (out / "eval.json").write_text(json.dumps({"iteration": cfg.train.iterations, **final}, indent=2) + "\n")
    if start < cfg.train.iterations or ckpt is None:
        checkpoint(cfg.train.iterations)
    if cfg.train.save_final_model:
        save_final_model(c, out / "model")
    return final


def save_final_model(c: Components, folder: Path) -> None:
    """The trained policy as a Hugging Face folder (+ tokenizer and ``value_head.safetensors``)."""
    from safetensors.torch import save_file

    save_pretrained_model(c.policy.model, folder)
    c.tokenizer.save_pretrained(folder)
    save_file(
        {k: v.contiguous() for k, v in c.policy.value_head.state_dict().items()},
        folder / "value_head.safetensors",
    )


def check_config_runs(cfg: Config, source: str = "<config>") -> None:
    """Cheap checks that need the registries (names exist) before any model is loaded; errors name the key."""
    from rl4text.registry import METRICS, REWARDS, RegistryError

    if cfg.model.random_init is not None and cfg.model.tokenizer is None:
        raise ConfigError(
            f"{source}: RL on a model.random_init model needs model.tokenizer (sft.tokenizer_training only applies "
            "to `rl4text sft`); to start RL from an SFT run, set model.name_or_path to its model/ folder"
        )
    names = [("task.name", TASKS, cfg.task.name)]
    names += [(f"reward.components[{i}].name", REWARDS, c.name) for i, c in enumerate(cfg.reward.components)]
    names += [(f"eval.metrics[{i}]", METRICS, m) for i, m in enumerate(cfg.eval.metrics)]
    for key, registry, name in names:
        try:
            registry.get(name)
        except RegistryError as exc:
            raise ConfigError(f"{source}: {key}: {exc}") from exc
    check_component_args(cfg, source)


def check_component_args(cfg: Config, source: str) -> None:
    """``task.args`` and each reward component's ``args`` fit their factories (before any model is loaded)."""
    from rl4text.registry import REWARDS, RegistryError
    from rl4text.rewards import is_reward_callable

    checks = [("task.args", TASKS, cfg.task.name, cfg.task.args)]
    for i, comp in enumerate(cfg.reward.components):
        if not is_reward_callable(REWARDS.get(comp.name)):
            checks.append((f"reward.components[{i}].args", REWARDS, comp.name, comp.args))
    for key, registry, name, args in checks:
        try:
            registry.check_args(name, args, where=f"{source}: {key}")
        except RegistryError as exc:
            raise ConfigError(str(exc)) from None
