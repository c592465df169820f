"""The training recipe, top to bottom: sample -> rollout -> reward -> advantages -> update -> log -> eval -> save.

:func:`train` opens the run folder, builds everything (:func:`build`: models, optimiser and data in one place,
which is where a distributed wrapper such as Accelerate's ``prepare`` would go) and runs :func:`run_loop`.
Each iteration is :func:`rollout_and_reward`, then the algorithm's ``prepare`` (advantages) and ``update``,
then :func:`log_iteration`, evaluation and checkpointing; features that act between iterations plug into the
``callbacks`` hook (:mod:`rl4text.runtime.callbacks`) rather than into the loop.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from rl4text.config import Config, ConfigError, save_config
from rl4text.core import make_kl_controller, masked_mean
from rl4text.core.shaping import kl_penalized_rewards
from rl4text.evaluate import Decoding, evaluate, logged_rows
from rl4text.generation import Generator, check_masker_backend, make_generator
from rl4text.metrics import build_metrics
from rl4text.models import load_model, load_tokenizer
from rl4text.policies.actor_critic import ActorCritic, frozen_copy
from rl4text.registry import ALGORITHMS, TASKS
from rl4text.rewards import ComposedReward, RewardOutput, RewardScaler, build_reward
from rl4text.rollout import Rollout, collect_rollout
from rl4text.runtime import (
    Callback,
    Checkpointer,
    IterationEnd,
    RunDirError,
    RunFolder,
    RunInfo,
    RunLogger,
    atomic_folder,
    check_finite_module,
    check_finite_stats,
    check_finite_values,
    read_jsonl,
    rng_state,
    run_callbacks,
    seed_everything,
    set_rng_state,
    write_text_atomic,
)
from rl4text.runtime.distributed import Dist, NullLogger
from rl4text.text import uses_chat_template

TIME_PREFIX = "time/"  # wall-clock keys: excluded when comparing runs for determinism
RESUMABLE = ("train.iterations",)
"""Config keys a ``--resume`` may change."""

__all__ = ["Components", "PromptSampler", "RunDirError", "build", "check_config_runs", "train"]


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
    cfg_keep_adapter: bool = False
    """``model.lora.keep_adapter``: also write ``model/adapter/``."""
    dist: Dist = field(default_factory=Dist)
    """The run's processes (one by default); ``optimizer`` above is the prepared one."""
    scorer: torch.nn.Module | None = None
    """``policy`` as ``Accelerator.prepare`` wrapped it (DDP/FSDP/DeepSpeed): updates call its ``forward``."""
    generator: Generator | None = None
    """The generation backend of rollouts and evaluation (``rl4text.generation``)."""


def make_dist(cfg: Config) -> Dist:
    """The run's :class:`Dist` (Accelerate under ``accelerate launch``), refusing an algorithm that cannot run on
    this many processes before any model is loaded."""
    algo = ALGORITHMS.get(cfg.algorithm.name)
    dist = Dist.from_environment(cfg.train.device, find_unused_parameters=not algo.uses_critic)
    if dist.distributed and dist.kind not in algo.distributed:
        runs = (
            f"runs on {', '.join(algo.distributed)}" if algo.distributed else "runs in a single process only"
        )
        raise ConfigError(
            f"algorithm {cfg.algorithm.name!r} {runs}, but this run was launched as {dist.world_size} processes "
            f"({dist.kind}); launch it with `rl4text train` (or `accelerate launch --num_processes 1`)"
            + (f" or an accelerate config of kind {algo.distributed[0]}" if algo.distributed else "")
        )
    return dist


def build(cfg: Config, *, dist: Dist | None = None) -> Components:
    """Build tokenizer, policy (+ value head), reference, optimiser, algorithm, task and reward from ``cfg``.

    The one place models, optimiser and data are made; policy and optimiser then go through
    ``Accelerator.prepare`` (:meth:`Dist.prepare`; nothing in one process), and the algorithm updates through
    the wrapper. Every process builds the same models from the same seed, then seeds its own rollouts."""
    dist = dist or make_dist(cfg)
    device = dist.device(cfg.train.device)
    seed_everything(cfg.train.seed)
    tokenizer = load_tokenizer(cfg.model)
    model, seq2seq = load_model(cfg.model, tokenizer)
    algo_cfg = cfg.algorithm.params
    needs_reference = algo_cfg.kl_coef > 0 or algo_cfg.kl_target is not None
    policy, reference = build_policy(cfg, model, seq2seq, device, needs_reference)
    optimizer = torch.optim.AdamW(
        parameter_groups(policy, cfg.train.learning_rate, cfg.train.value_learning_rate),
        lr=cfg.train.learning_rate,
        weight_decay=cfg.train.weight_decay,
    )
    algorithm = ALGORITHMS.get(cfg.algorithm.name)(algo_cfg, policy, optimizer)
    algorithm.micro_batch_size = cfg.train.micro_batch_size
    scorer, optimizer = dist.prepare(policy, optimizer)
    algorithm.attach(scorer=scorer, optimizer=optimizer, ops=dist)
    generator = make_generator("hf", policy.model, seq2seq, tokenizer)
    try:
        check_masker_backend(algorithm.action_masker, generator, cfg.algorithm.name)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    dist.seed_process(cfg.train.seed)
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
        cfg.model.lora is not None and cfg.model.lora.keep_adapter,
        dist,
        scorer,
        generator,
    )


def build_policy(
    cfg: Config, model: torch.nn.Module, seq2seq: bool, device: torch.device, needs_reference: bool
) -> tuple[ActorCritic, torch.nn.Module | None]:
    """The policy (LoRA adapters when ``model.lora`` is set) and the KL reference: with LoRA the base model
    under disabled adapters (no copy), else a frozen copy (in ``model.reference_dtype`` when set)."""
    from rl4text.policies.actor_critic import enable_gradient_checkpointing, warn_if_emulated_bf16
    from rl4text.policies.lora import AdaptersDisabled, add_lora_from_config

    m = cfg.model
    reference = None
    if m.lora is not None:
        model = add_lora_from_config(model, m.lora, seq2seq)
        reference = AdaptersDisabled(model) if needs_reference else None
    elif needs_reference:
        reference = frozen_copy(model)
        if m.reference_dtype is not None:
            reference = reference.to(
                {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(m.reference_dtype, torch.float32)
            )
        reference = reference.to(device)
    policy = ActorCritic(model, seq2seq, m.critic).to(device)
    if m.autocast:
        policy.autocast_dtype = torch.bfloat16
        warn_if_emulated_bf16(device)
    if cfg.train.gradient_checkpointing:
        enable_gradient_checkpointing(policy)
    policy.share_prompts = cfg.rollout.share_prompts
    return policy, reference


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


# ---------------------------------------------------------------------------------------------- run state


@dataclass
class Scored:
    """A rollout with its rewards. ``B`` episodes, ``T`` response tokens."""

    rollout: Rollout
    rewards: RewardOutput
    """The task reward (``total``, per component ``parts``), before scaling and the KL penalty."""
    train_rewards: torch.Tensor
    """``[B]`` the scaled sequence reward the update trains on."""
    token_rewards: torch.Tensor
    """``[B, T]`` per-token rewards: the sequence reward on the last token, token-level rewards, KL penalty."""
    kl: torch.Tensor
    """``[B, T]`` the per-token KL estimate to the reference."""
    rollout_done: float
    """``time.perf_counter()`` when generation ended (for ``time/rollout_s``)."""


@dataclass
class Loop:
    """What the loop carries from iteration to iteration (the parts beyond the models are checkpointed)."""

    cfg: Config
    c: Components
    out: Path
    log: RunLogger
    checkpoints: Checkpointer
    sampler: PromptSampler
    kl_ctl: object
    eval_samples: list[dict]
    metrics: dict
    decoding: Decoding
    start: int = 0

    def loop_state(self) -> dict:
        """The checkpointed state; with several processes also each one's sampler and RNG (every process calls
        this: it gathers)."""
        state = {
            "sampler": self.sampler.state_dict(),
            "reward_scaler": self.c.reward_scaler.state_dict(),
            "kl_controller": self.kl_ctl.state_dict(),
            "algorithm": self.c.algorithm.state_dict(),
        }
        dist = self.c.dist
        if dist.distributed:
            state["world_size"] = dist.world_size
            state["processes"] = dist.gather_objects(
                {"sampler": self.sampler.state_dict(), "rng": rng_state()}
            )
        return state

    def restore(self, path: Path) -> None:
        """Continue from checkpoint ``path``: models, optimiser, RNG and loop state; logs cut back to it."""
        dist = self.c.dist
        state = self.checkpoints.restore(path, self.c.policy, self.c.optimizer)
        saved = int(state.get("world_size", 1))
        if saved != dist.world_size:
            how = (
                "`rl4text train CONFIG --resume ...`"
                if saved == 1
                else f"`accelerate launch --num_processes {saved} -m rl4text train CONFIG --resume ...`"
            )
            raise RunDirError(
                f"{path} was written by a run of {saved} process(es) and this resume runs {dist.world_size}: the "
                f"per-process batch, data shards and random streams belong to the process count. Resume with "
                f"{saved} process(es): {how}"
            )
        self.start = state["iteration"]
        if dist.distributed:
            mine = state["processes"][dist.rank]
            state["sampler"] = mine["sampler"]
            set_rng_state(mine["rng"])
        self.sampler.load_state_dict(state["sampler"])
        self.kl_ctl.load_state_dict(state["kl_controller"])
        self.c.reward_scaler.load_state_dict(state["reward_scaler"])
        self.c.algorithm.load_state_dict(state["algorithm"])
        self.log.truncate_after(self.start)
        print(f"resumed from {path} at iteration {self.start}")

    def save(self, iteration: int, *, final: bool = False) -> None:
        """Every process gathers its state; the main one writes the checkpoint (only the trainable weights; the
        final one without optimiser state when ``train.save_final_optimizer`` is false) and prints its size."""
        self.log.phase("save", iteration)
        state = self.loop_state()
        optimizer = None if final and not self.cfg.train.save_final_optimizer else self.c.optimizer
        with self.c.dist.unsharded(self.c.scorer or self.c.policy):
            if self.c.dist.is_main:
                path = self.checkpoints.save(iteration, self.c.policy, optimizer, state)
                print(f"checkpoint {path.name}: {checkpoint_bytes(path) / 1e6:.1f} MB written")
        self.c.dist.barrier()


def make_loop(cfg: Config, c: Components, out: Path, log: RunLogger, checkpoints: Checkpointer) -> Loop:
    algo_cfg = cfg.algorithm.params
    k = c.algorithm.samples_per_prompt
    train_samples, seed = c.task.split(cfg.task.train_split), cfg.train.seed
    if c.dist.distributed:  # each process draws from its own shard, with its own seed
        train_samples, seed = train_samples[c.dist.rank :: c.dist.world_size], seed + c.dist.rank
    return Loop(
        cfg=cfg,
        c=c,
        out=out,
        log=log,
        checkpoints=checkpoints,
        sampler=PromptSampler(train_samples, cfg.rollout.batch_size // k, seed),
        kl_ctl=make_kl_controller(algo_cfg.kl_coef, algo_cfg.kl_target, algo_cfg.kl_horizon),
        eval_samples=c.task.split(cfg.task.eval_split)[: cfg.eval.max_samples],
        metrics=build_metrics(cfg.eval.metrics or c.task.metrics),  # once: model-based metrics load encoders
        decoding=Decoding.from_config(cfg),
    )


# ---------------------------------------------------------------------------------------------- the loop


def train(
    cfg: Config,
    output_dir: str | Path,
    resume: bool = False,
    overwrite: bool = False,
    *,
    callbacks: Sequence[Callback] = (),
) -> dict:
    """Run training; returns the final evaluation scores (also written to ``eval.json``).

    ``callbacks`` are called after every iteration with an :class:`~rl4text.runtime.IterationEnd`; one that
    returns ``False`` ends the run early (final evaluation, checkpoint and model as usual)."""
    check_config_runs(cfg)
    out = Path(output_dir)
    folder = RunFolder(
        out,
        cfg.to_dict(),
        resume=resume,
        overwrite=overwrite,
        may_change=RESUMABLE,
        write_config=lambda path: save_config(cfg, path),
    )
    folder.check()
    checkpoints = Checkpointer(out / "checkpoints", keep=cfg.train.keep_checkpoints)
    if resume and run_is_finished(cfg, out, checkpoints):
        print(f"{out} is a finished run of {cfg.train.iterations} iterations: nothing to resume")
        return {k: v for k, v in json.loads((out / "eval.json").read_text()).items() if k != "iteration"}
    c = build(cfg)  # before the folder is touched: a setup error leaves an old run as it was
    c.dist.barrier()  # every process has checked the folder before the main one creates it
    with folder if c.dist.is_main else nullcontext():
        log = NullLogger()  # only the main process writes (metrics, samples, W&B, checkpoints, model/)
        if c.dist.is_main:
            log = RunLogger.for_run(
                out,
                RunInfo.from_config(cfg),
                resume=resume,
                total=cfg.train.iterations,
                progress=cfg.tracking.progress,
                print_every=cfg.tracking.print_every,
                on_first_row=folder.started,
            )
        final = None
        try:
            final = run_loop(make_loop(cfg, c, out, log, checkpoints), resume, callbacks)
            return final
        finally:
            log.finish(final)


def run_loop(loop: Loop, resume: bool, callbacks: Sequence[Callback]) -> dict:
    cfg = loop.cfg
    latest = loop.checkpoints.latest() if resume else None
    if latest is not None:
        loop.restore(latest)
    elif resume:  # killed before its first checkpoint: start again, without the rows already logged
        loop.log.truncate_after(-1)
    if loop.log.progress is not None:
        loop.log.progress.resume_at(loop.start)
    if loop.start == 0 and cfg.eval.at_start:
        loop.log.metrics({"iteration": 0, **{f"eval/{k}": v for k, v in run_eval(loop, 0).items()}})
    last = loop.start
    for it in range(loop.start + 1, cfg.train.iterations + 1):
        row = iteration(loop, it)
        last = it
        if not run_callbacks(callbacks, IterationEnd(it, cfg.train.iterations, row, loop)):
            print(f"a callback stopped the run after iteration {it}")
            break
        if cfg.train.save_every and it % cfg.train.save_every == 0 and it != cfg.train.iterations:
            loop.save(it)
    return finish(loop, last, saved=latest is not None and loop.start == last)


def iteration(loop: Loop, it: int) -> dict:
    """One iteration: rollout and reward, advantages, update, log (and eval when it is due); returns the row."""
    cfg, c, log = loop.cfg, loop.c, loop.log
    log.phase("rollout", it)
    t0 = time.perf_counter()
    scored = rollout_and_reward(loop, it)
    t1, t2 = scored.rollout_done, time.perf_counter()
    log.phase("update", it)
    batch = c.algorithm.prepare(scored.rollout, scored.token_rewards)  # 4. advantages
    stats = c.algorithm.update(batch)  # 5. update
    c.generator.update_weights(c.policy.model)
    t3 = time.perf_counter()
    row = reduce_row(loop, iteration_row(loop, it, scored, stats))  # the one cross-process reduction
    check_finite_stats(
        row, [k for k in stats if k.startswith("loss/")] + ["policy/grad_norm"], where=f"iteration {it}"
    )
    with c.dist.unsharded(c.scorer):
        check_finite_module(c.policy, where=f"iteration {it} (after the update)")
    loop.kl_ctl.update(row["kl/mean"], len(scored.rollout.samples) * c.dist.world_size)
    if cfg.eval.every and it % cfg.eval.every == 0 and it != cfg.train.iterations:  # 6. evaluate
        log.phase("eval", it)
        row.update({f"eval/{k}": v for k, v in run_eval(loop, it).items()})
    row.update({"time/rollout_s": t1 - t0, "time/reward_s": t2 - t1, "time/update_s": t3 - t2})
    row["time/iteration_s"] = time.perf_counter() - t0
    log.metrics(row)
    log.step_done(it, row)
    return row


def reduce_row(loop: Loop, row: dict) -> dict:
    """The iteration's metrics as means over processes (one all-reduce), the reward's std over all episodes,
    and the world size and global batch; the row itself in one process."""
    dist = loop.c.dist
    if not dist.distributed:
        return row
    row = dist.reduce_mean(row)
    n = loop.cfg.rollout.batch_size * dist.world_size
    var = max(row.pop("_reward_sq") - row["rollout/reward_mean"] ** 2, 0.0) * n / max(n - 1, 1)
    row["rollout/reward_std"] = var**0.5
    row.update({"dist/world_size": dist.world_size, "dist/global_batch": n})
    return row


def rollout_and_reward(loop: Loop, it: int) -> Scored:
    """1. sample prompts, 2. roll out (generate + score policy, values, reference), 3. reward: the task reward
    of each finished text (scaled for training) and the KL penalty on every token."""
    cfg, c = loop.cfg, loop.c
    samples = [s for s in loop.sampler.next() for _ in range(c.algorithm.samples_per_prompt)]
    with c.dist.unsharded(c.scorer):
        rollout = collect_policy_rollout(loop, samples)
    t1 = time.perf_counter()
    rewards = c.reward_fn.evaluate(
        [s["prompt"] for s in samples],
        rollout.completions,
        [s["references"] for s in samples],
        **reward_fields(rollout, c.tokenizer.eos_token_id),
    )
    c.dist.check_everywhere(
        lambda: check_finite_values(rewards.parts, what="reward component", where=f"iteration {it}"),
        what="reward",
        where=f"iteration {it}",
    )
    population = None
    if c.dist.distributed and c.reward_scaler.normalize:  # the running statistics of every process's rewards
        population = [x for part in c.dist.gather_objects(list(rewards.sequence)) for x in part]
    seq_t = torch.tensor(
        c.reward_scaler(rewards.sequence, population=population),
        dtype=torch.float32,
        device=rollout.logprobs.device,
    )
    token_rewards, kl = kl_penalized_rewards(
        seq_t,
        rollout.logprobs,
        rollout.ref_logprobs,
        rollout.response_mask,
        loop.kl_ctl.value,
        cfg.algorithm.params.kl_estimator,
        token_scores=None
        if rewards.token is None
        else pad_token_rewards(rewards.token, rollout.response_mask),
    )
    return Scored(rollout, rewards, seq_t, token_rewards, kl, t1)


def collect_policy_rollout(loop: Loop, samples: list[dict]) -> Rollout:
    cfg, c = loop.cfg, loop.c
    return collect_rollout(
        c.policy,
        c.reference,
        c.tokenizer,
        samples,
        max_new_tokens=cfg.rollout.max_new_tokens,
        max_prompt_length=cfg.rollout.max_prompt_length,
        temperature=cfg.rollout.temperature,
        use_chat_template=c.use_chat_template,
        with_values=c.algorithm.uses_critic,
        action_masker=c.algorithm.action_masker,
        score_from_generation=cfg.rollout.score_from_generation,
        generator=c.generator,
    )


def iteration_row(loop: Loop, it: int, scored: Scored, stats: dict) -> dict:
    """The ``metrics.jsonl`` row of an iteration (``rollout/``, ``reward/<component>``, ``kl/``, the update's stats)."""
    rollout, rewards, kl = scored.rollout, scored.rewards, scored.kl
    eos_id = loop.c.tokenizer.eos_token_id
    score_t = torch.tensor(rewards.total, dtype=torch.float32, device=rollout.logprobs.device)
    n = len(rollout.samples)
    return {
        "iteration": it,
        "rollout/reward_mean": float(score_t.mean()),
        "rollout/reward_std": float(score_t.std()) if n > 1 else 0.0,
        **{f"reward/{k}": sum(v) / len(v) for k, v in rewards.parts.items()},
        "rollout/response_length": float(rollout.lengths.mean()),
        "rollout/eos_rate": float(rollout.ended_with_eos(eos_id).float().mean()),
        "rollout/entropy_proxy": float(-masked_mean(rollout.logprobs, rollout.response_mask)),
        "rollout/reward_train_mean": float(scored.train_rewards.mean()),
        "kl/mean": float(kl.sum(-1).mean()),
        "kl/coef": loop.kl_ctl.value,
        "kl/per_token": float(masked_mean(kl, rollout.response_mask)),
        **stats,
        **({"_reward_sq": float((score_t**2).mean())} if loop.c.dist.distributed else {}),
    }


def run_eval(loop: Loop, iteration: int) -> dict:
    """Evaluate the policy on the eval split; logs the first samples to ``samples.jsonl``."""
    c = loop.c
    with c.dist.unsharded(c.scorer or c.policy), c.policy.autocast():  # model.autocast: every forward pass
        scores, rows = evaluate(
            c.policy.model,
            c.policy.seq2seq,
            c.tokenizer,
            loop.eval_samples,
            c.reward_fn,
            loop.metrics,
            decoding=loop.decoding,
            use_chat_template=c.use_chat_template,
            generator=c.generator,
            shard=c.dist,  # each process decodes its share; scores over all of them
        )
    loop.log.samples(
        [{"iteration": iteration, **r} for r in logged_rows(rows, loop.cfg.eval.num_logged_samples)]
    )
    return scores


def finish(loop: Loop, last: int, *, saved: bool) -> dict:
    """7. the end: checkpoint, final evaluation, ``eval.json``, then ``model/`` (written last, atomically, so a
    complete ``model/`` means a finished run). ``saved``: the last checkpoint is already at ``last``."""
    cfg, log = loop.cfg, loop.log
    if not saved:
        loop.save(last, final=last == cfg.train.iterations)
    log.phase("eval", last)
    final = run_eval(loop, last)
    log.metrics({"iteration": last, "final": True, **{f"eval/{k}": v for k, v in final.items()}})
    if loop.c.dist.is_main:
        write_text_atomic(loop.out / "eval.json", json.dumps({"iteration": last, **final}, indent=2) + "\n")
    if cfg.train.save_final_model:
        log.phase("save", last)
        with loop.c.dist.unsharded(loop.c.scorer or loop.c.policy):
            if loop.c.dist.is_main:
                save_final_model(loop.c, loop.out / "model")
    loop.c.dist.barrier()
    return final


def checkpoint_bytes(path: Path) -> int:
    """Bytes in checkpoint folder ``path``."""
    return sum(p.stat().st_size for p in Path(path).iterdir() if p.is_file())


def run_is_finished(cfg: Config, out: Path, checkpoints: Checkpointer) -> bool:
    """Did the run in ``out`` reach ``cfg.train.iterations`` and write everything a finished run writes?"""
    eval_file = out / "eval.json"
    if checkpoints.latest_iteration() != cfg.train.iterations or not eval_file.is_file():
        return False
    if cfg.train.save_final_model and not (out / "model").is_dir():
        return False
    rows = read_jsonl(out / "metrics.jsonl") if (out / "metrics.jsonl").is_file() else []
    return any(r.get("final") and r.get("iteration") == cfg.train.iterations for r in rows)


def save_final_model(c: Components, folder: Path) -> None:
    """The trained policy as a Hugging Face folder (+ tokenizer and ``value_head.safetensors``), atomically."""
    from safetensors.torch import save_file

    from rl4text.policies.lora import write_model_folder

    with atomic_folder(folder) as tmp:
        write_model_folder(c.policy.model, c.tokenizer, tmp, keep_adapter=c.cfg_keep_adapter)  # LoRA: merged
        save_file(
            {k: v.contiguous() for k, v in c.policy.value_head.state_dict().items()},
            tmp / "value_head.safetensors",
        )


def check_config_runs(cfg: Config, source: str = "<config>", *, for_rl: bool = True) -> None:
    """Cheap checks that need the registries (names exist, batch sizes fit) before any model is loaded.

    ``for_rl=False`` (``rl4text sft``) skips the rule that only RL has: a random model needs ``model.tokenizer``
    (SFT may train one with ``sft.tokenizer_training``)."""
    from rl4text.registry import METRICS, REWARDS, RegistryError

    if for_rl and cfg.model.random_init is not None and cfg.model.tokenizer is None:
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
    k = ALGORITHMS.get(cfg.algorithm.name).samples_per_prompt_for(cfg.algorithm.params)
    if cfg.rollout.batch_size % k:
        raise ConfigError(
            f"{source}: rollout.batch_size={cfg.rollout.batch_size} must be a multiple of the {cfg.algorithm.name} "
            f"algorithm's samples per prompt ({k})"
        )
    check_component_args(cfg, source)
    _check_runs_here(cfg, source)


def _check_runs_here(cfg: Config, source: str) -> None:
    """Under several processes: does the algorithm run there (before any model is loaded)?"""
    from rl4text.runtime.distributed import launched_by_accelerate

    if not launched_by_accelerate():
        return
    import os

    world = int(os.environ.get("WORLD_SIZE", "1"))
    algo = ALGORITHMS.get(cfg.algorithm.name)
    if world > 1 and not algo.distributed:
        raise ConfigError(
            f"{source}: algorithm {cfg.algorithm.name!r} runs in a single process only (its conjugate-gradient "
            f"step differentiates twice through the policy, which DDP's gradient hooks do not support), but "
            f"{world} processes were launched; run it with `rl4text train` or `accelerate launch --num_processes 1`"
        )


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
