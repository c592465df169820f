"""Data-parallel runs on Hugging Face Accelerate: one object, :class:`Dist`, for everything a recipe does across
processes.

``accelerate launch [--num_processes N] [--config_file F] -m rl4text train CONFIG`` starts N processes; each builds
the same models, wraps policy and optimiser with ``Accelerator.prepare`` (DDP, FSDP or DeepSpeed, from the launch
config), rolls out its own share of the batch and all-reduces gradients. A plain ``rl4text train`` gets a
single-process :class:`Dist` that does nothing (no Accelerate import, the exact single-process behaviour).

What crosses processes, and where:

- gradients: DDP/FSDP/DeepSpeed through :meth:`Dist.prepare` and :meth:`Dist.backward`;
- statistics that steer training: :meth:`Dist.all_reduce_sum` (advantage whitening, approx-KL early stop),
  :meth:`Dist.gather_objects` (reward normalisation, sharded evaluation, per-process checkpoint state);
- logged metrics: :meth:`Dist.reduce_mean`, once per iteration, one tensor;
- NaN checks: :meth:`Dist.check_everywhere` stops every process when one finds a non-finite value;
- files: only the main process writes (:class:`NullLogger` stands in for the logger elsewhere).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from typing import Any

import torch

from rl4text.runtime.env import pick_device, seed_everything
from rl4text.runtime.errors import NonFiniteError, RunError

KINDS = {"NO": "single", "MULTI_CPU": "ddp", "MULTI_GPU": "ddp", "FSDP": "fsdp", "DEEPSPEED": "deepspeed"}
"""Accelerate's ``DistributedType`` names -> the kinds algorithms declare support for."""

RANK_SEED_STRIDE = 1_000_003
"""Process ``r`` of a multi-process run seeds its rollout RNG with ``seed + r * RANK_SEED_STRIDE``."""


def launched_by_accelerate() -> bool:
    """Was this process started by ``accelerate launch`` (or torchrun with several processes)?"""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return True
    return any(key.startswith("ACCELERATE_") for key in os.environ)


class Dist:
    """The processes of a run. ``accelerator=None``: one process, every method a no-op or the local operation."""

    def __init__(self, accelerator=None):
        self.accelerator = accelerator
        self.world_size = 1 if accelerator is None else accelerator.num_processes
        self.rank = 0 if accelerator is None else accelerator.process_index
        self.is_main = self.rank == 0
        self.kind = "single" if accelerator is None else KINDS.get(accelerator.distributed_type.name, "ddp")

    @classmethod
    def from_environment(cls, device: str, *, find_unused_parameters: bool = False) -> Dist:
        """An Accelerate-backed :class:`Dist` under ``accelerate launch``, else the single-process one.

        ``find_unused_parameters``: DDP must expect parameters without gradients (a critic-free algorithm leaves
        the value head unused)."""
        if not launched_by_accelerate():
            return cls()
        from accelerate import Accelerator
        from accelerate.utils import DistributedDataParallelKwargs

        handlers = [DistributedDataParallelKwargs(find_unused_parameters=find_unused_parameters)]
        cpu = device == "cpu" or (device == "auto" and not torch.cuda.is_available())
        try:
            dist = cls(Accelerator(cpu=cpu, kwargs_handlers=handlers))
        except RuntimeError as exc:  # e.g. an FSDP or DeepSpeed config on a machine without GPUs
            raise RunError(
                f"Accelerate cannot start this launch config here: {exc}. FSDP and DeepSpeed need GPUs; on CPUs "
                "launch with configs/accelerate/ddp.yaml and train.device=cpu"
            ) from None
        launched = int(os.environ.get("WORLD_SIZE", "1"))
        if dist.world_size != launched:
            raise RuntimeError(
                f"{launched} processes were launched but Accelerate set up {dist.world_size} (train.device={device}); "
                "launch with a config of configs/accelerate/ and a train.device these processes can use"
            )
        return dist

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def device(self, name: str) -> torch.device:
        """The device of this process: Accelerate's (``cuda:LOCAL_RANK``) when launched, else ``pick_device``."""
        if self.accelerator is None:
            return pick_device(name)
        pick_device(name)  # the same clear error for an unavailable device
        return self.accelerator.device

    def seed_process(self, seed: int) -> None:
        """Give each process its own reproducible rollout RNG (after the identical model build)."""
        if self.distributed:
            seed_everything(seed + self.rank * RANK_SEED_STRIDE)

    # ------------------------------------------------------------------------------------------- training

    def prepare(self, model: torch.nn.Module, optimizer) -> tuple[torch.nn.Module, Any]:
        """``(wrapped model, wrapped optimiser)`` from ``Accelerator.prepare``; unchanged in one process."""
        if self.accelerator is None:
            return model, optimizer
        return self.accelerator.prepare(model, optimizer)

    def backward(self, loss: torch.Tensor) -> None:
        if self.accelerator is None:
            loss.backward()
        else:
            self.accelerator.backward(loss)

    def clip_grad_norm_(self, params: list[torch.Tensor], max_norm: float) -> torch.Tensor:
        if self.accelerator is None:
            return torch.nn.utils.clip_grad_norm_(params, max_norm)
        norm = self.accelerator.clip_grad_norm_(params, max_norm)
        if (
            norm is None
        ):  # DeepSpeed clips inside its engine (the config's gradient_clipping) and returns nothing
            grads = [p.grad.norm() for p in params if p.grad is not None]
            norm = torch.linalg.vector_norm(torch.stack(grads)) if grads else torch.zeros(())
        return norm

    def unwrap(self, model: torch.nn.Module) -> torch.nn.Module:
        return model if self.accelerator is None else self.accelerator.unwrap_model(model)

    @contextlib.contextmanager
    def unsharded(self, wrapped: torch.nn.Module) -> Iterator[None]:
        """Full parameters for calling the inner model directly (generation, rollout scoring, evaluation).

        DDP keeps full parameters anyway; FSDP gathers them for the block (no write-back); DeepSpeed ZeRO-3
        gathers them with ``GatheredParameters``; mixed precision runs the block under Accelerate's autocast."""
        with contextlib.ExitStack() as stack:
            if self.kind == "fsdp":
                from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

                stack.enter_context(FSDP.summon_full_params(wrapped, writeback=False, recurse=True))
            elif self.kind == "deepspeed":  # pragma: no cover - needs deepspeed and a GPU
                import deepspeed

                params = [p for p in wrapped.parameters() if hasattr(p, "ds_id")]
                if params:
                    stack.enter_context(deepspeed.zero.GatheredParameters(params, modifier_rank=None))
            if self.accelerator is not None:
                stack.enter_context(self.accelerator.autocast())
            yield

    # ------------------------------------------------------------------------------------------ collectives

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The sum of ``tensor`` over processes (a new tensor; the input is left alone)."""
        if not self.distributed:
            return tensor
        import torch.distributed as td

        out = tensor.detach().clone().to(self.accelerator.device)
        td.all_reduce(out, op=td.ReduceOp.SUM)
        return out.to(tensor.device)

    def gather_objects(self, obj: Any) -> list:
        """``[obj of process 0, obj of process 1, ...]`` on every process (plain data: lists, numbers, strings)."""
        if not self.distributed:
            return [obj]
        import torch.distributed as td

        out: list = [None] * self.world_size
        td.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.distributed:
            self.accelerator.wait_for_everyone()

    def reduce_mean(self, row: dict) -> dict:
        """The mean over processes of every number in ``row`` (one all-reduce of one tensor); other values kept.

        Every process logs the same keys in the same order (the same code runs), so position ``i`` of the tensor
        is the same metric everywhere. A NaN on one process makes the mean NaN on all (NaN checks stay global)."""
        if not self.distributed:
            return row
        keys = [k for k, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
        values = torch.tensor([float(row[k]) for k in keys], dtype=torch.float64)
        mean = (self.all_reduce_sum(values) / self.world_size).tolist()
        out = dict(row)
        for key, value in zip(keys, mean):
            out[key] = int(row[key]) if isinstance(row[key], int) else value
        return out

    def all_true(self, flag: bool) -> bool:
        """``flag`` on every process (one all-reduce)."""
        if not self.distributed:
            return flag
        return bool(self.all_reduce_sum(torch.tensor([0.0 if flag else 1.0]))[0] == 0)

    def check_everywhere(self, check: Callable[[], None], *, what: str, where: str) -> None:
        """Run ``check`` (which raises :class:`NonFiniteError`) here; when it fails on any process, every process
        stops: the failing one with its own message, the others saying which process found it."""
        error = None
        try:
            check()
        except NonFiniteError as exc:
            error = exc
        if self.all_true(error is None):
            return
        if error is not None:
            raise error
        raise NonFiniteError(f"a non-finite {what} on another process at {where} (its message names it)")


class NullLogger:
    """The logger of a process that is not the main one: logs nothing, writes nothing (same methods as
    :class:`~rl4text.runtime.logger.RunLogger`)."""

    progress = None

    def metrics(self, row: dict) -> None:
        pass

    def samples(self, rows: list[dict]) -> None:
        pass

    def phase(self, name: str, step: int) -> None:
        pass

    def step_done(self, step: int, row: dict) -> None:
        pass

    def truncate_after(self, step: int, *, drop_final: bool = True) -> int:
        return 0

    def finish(self, final: dict | None) -> None:
        pass
