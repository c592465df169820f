"""Trust Region Policy Optimization (Schulman et al. 2015, "Trust Region Policy Optimization").

Per iteration, one policy step on the language model's parameters θ:

    maximise  L(θ) = mean_t(exp(log π_θ(a_t|s_t) - log π_old(a_t|s_t)) A_t)
    subject to  mean_t KL(π_old(·|s_t) || π_θ(·|s_t)) <= δ

(token means over real response tokens; the KL is exact over the vocabulary). As in the paper's Appendix C the
step direction ``x ≈ F⁻¹ g`` comes from conjugate gradient with Fisher-vector products (the Hessian of the mean KL
at θ_old, by double backprop), is scaled to the edge of the trust region, ``β = sqrt(2δ / xᵀFx)``, and a
backtracking line search takes the largest fraction of it that improves ``L`` and keeps the KL within δ; if no
fraction does, θ is left exactly as it was. Then the critic is fitted to the returns by regression in separate
passes through the loop's optimiser; with a shared trunk only the value head moves (the paper fits its value
function separately too, so the policy step never sees the value loss).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from rl4text.algorithms.base import (
    Algorithm,
    OnPolicyConfig,
    TrainBatch,
    masked_entropy_mean,
    minibatch_indices,
)
from rl4text.core import approx_kl, clipped_value_loss, explained_variance, masked_mean
from rl4text.policies.actor_critic import ScoreOutput, sequence_logits
from rl4text.registry import register_algorithm


@dataclass
class TRPOConfig(OnPolicyConfig):
    """TRPO hyper-parameters (plus the shared KL/GAE fields of ``OnPolicyConfig``); no ``vf_coef``: the critic
    is fitted in its own passes, never mixed into the policy objective."""

    max_kl: float = 0.01
    """Trust-region radius δ on the token-mean KL(π_old || π_new) (Schulman et al. 2015 use 0.01 throughout)."""
    cg_iters: int = 10
    """Conjugate-gradient iterations solving F x = g (Schulman et al. 2015, Appendix C, use 10)."""
    cg_damping: float = 0.1
    """Damping λ: CG solves (F + λI) x = g, keeping it stable where F is near-singular (OpenAI Spinning Up's 0.1)."""
    cg_residual_tol: float = 1e-10
    """Stop CG early once the squared residual norm falls below this."""
    line_search_max_steps: int = 10
    """Step fractions tried by the backtracking line search (Spinning Up's 10)."""
    line_search_shrink: float = 0.8
    """Fraction shrink per backtrack (Spinning Up's 0.8; the paper's reference code halves the step, 0.5)."""
    n_value_epochs: int = 5
    """Passes of critic regression over each rollout after the policy step."""
    value_minibatch_size: int | None = None
    """Episodes per critic gradient step (``None``: the whole rollout in one step)."""
    clip_range_value: float | None = None
    """Clip the value update around the rollout values, as PPO does (``None``: plain squared error, the paper's)."""

    def __post_init__(self):
        super().__post_init__()
        if self.max_kl <= 0:
            raise ValueError(f"max_kl must be > 0, got {self.max_kl}")
        if self.cg_iters < 1 or self.line_search_max_steps < 1 or self.n_value_epochs < 1:
            raise ValueError("cg_iters, line_search_max_steps and n_value_epochs must be >= 1")
        if self.cg_damping < 0 or self.cg_residual_tol < 0:
            raise ValueError("cg_damping and cg_residual_tol must be >= 0")
        if not 0 < self.line_search_shrink < 1:
            raise ValueError(f"line_search_shrink must be in (0, 1), got {self.line_search_shrink}")
        if self.value_minibatch_size is not None and self.value_minibatch_size <= 0:
            raise ValueError(
                f"value_minibatch_size must be positive or None, got {self.value_minibatch_size}"
            )
        if self.clip_range_value is not None and self.clip_range_value <= 0:
            raise ValueError(f"clip_range_value must be positive or None, got {self.clip_range_value}")


# ---------------------------------------------------------------------------------------------- pure maths


def conjugate_gradient(
    fvp: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor, iters: int, residual_tol: float = 1e-10
) -> torch.Tensor:
    """Approximate ``x = A⁻¹ b`` for a symmetric positive-definite ``A`` known only through ``fvp(v) = A v``.

    ``b: [N]`` flat; at most ``iters`` products (exact after N in exact arithmetic); stops once ``|r|² <= tol``.
    """
    x = torch.zeros_like(b)
    r = b.clone()  # residual b - A x, with x = 0
    p = b.clone()
    rr = r.dot(r)
    for _ in range(iters):
        if rr <= residual_tol:
            break
        ap = fvp(p)
        alpha = rr / p.dot(ap)
        x += alpha * p
        r -= alpha * ap
        rr_new = r.dot(r)
        p = r + (rr_new / rr) * p
        rr = rr_new
    return x


def categorical_kl(old_logits: torch.Tensor, new_logits: torch.Tensor) -> torch.Tensor:
    """``KL(softmax(old) || softmax(new))`` summed over the last axis: ``[..., V], [..., V] -> [...]``."""
    old_logp = torch.log_softmax(old_logits, dim=-1)
    new_logp = torch.log_softmax(new_logits, dim=-1)
    # tokens ruled out by an action mask have p_old = 0 exactly: they contribute 0, not 0 * inf
    return (old_logp.exp() * (old_logp - new_logp)).sum(-1)


def surrogate(
    logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """TRPO's importance-sampled surrogate ``mean_t(exp(logp - logp_old) A_t)`` over real tokens; inputs ``[B, T]``."""
    return masked_mean(torch.exp(logprobs - old_logprobs) * advantages, mask)


def _flat(grads: tuple[torch.Tensor | None, ...], params: list[torch.Tensor]) -> torch.Tensor:
    """Concatenate gradients into one float32 vector (zeros for a parameter the output does not reach)."""
    return torch.cat(
        [
            (torch.zeros_like(p) if g is None else g).reshape(-1).float()
            for g, p in zip(grads, params, strict=True)
        ]
    )


@torch.no_grad()
def _set_params(params: list[torch.Tensor], base: list[torch.Tensor], step: torch.Tensor | None) -> None:
    """``θ = base + step`` in place (keeping each tensor's storage, dtype and the optimiser's references);
    ``step=None`` copies ``base`` back bit for bit."""
    offset = 0
    for p, p0 in zip(params, base, strict=True):
        if step is None:
            p.copy_(p0)
        else:
            p.copy_(p0 + step[offset : offset + p.numel()].view_as(p).to(p.dtype))
        offset += p.numel()


# ---------------------------------------------------------------------------------------------- the algorithm


@register_algorithm("trpo")
class TRPO(Algorithm):
    Config = TRPOConfig
    distributed = ()  # the Fisher-vector products differentiate twice through the policy: single process only

    def update(self, batch: TrainBatch) -> dict[str, float]:
        stats = self._policy_step(batch)
        stats.update(self._fit_value(batch))
        stats["policy/explained_variance"] = explained_variance(
            batch.old_values, batch.returns, batch.response_mask
        )
        return stats

    # -------------------------------------------------------------------------------------- policy step

    def _policy_params(self) -> list[torch.Tensor]:
        return [p for p in self.policy.model.parameters() if p.requires_grad]

    def _score(self, batch: TrainBatch) -> ScoreOutput:
        return self.score(batch, with_values=False, keep_logits=True)

    @torch.no_grad()
    def _evaluate(self, batch: TrainBatch, old_logits: torch.Tensor) -> tuple[float, float, ScoreOutput]:
        """Surrogate and mean KL(old || current) at the current parameters."""
        scored = self._score(batch)
        mask = batch.response_mask
        surr = surrogate(scored.logprobs, batch.old_logprobs, batch.advantages, mask)
        kl = masked_mean(categorical_kl(old_logits, scored.logits), mask)
        return surr.item(), kl.item(), scored

    def _gradient_and_fvp(
        self, batch: TrainBatch, params: list[torch.Tensor]
    ) -> tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]:
        """Flat surrogate gradient ``g`` and ``v -> (F + λI) v``, F the Hessian of the mean KL at θ_old."""
        # fused attention kernels (flash / memory-efficient SDPA) have no double backward; the math one does
        with sdpa_kernel([SDPBackend.MATH]):
            scored = self._score(batch)
        mask = batch.response_mask
        surr = surrogate(scored.logprobs, batch.old_logprobs, batch.advantages, mask)
        g = _flat(torch.autograd.grad(surr, params, retain_graph=True, allow_unused=True), params)
        # old logits from this same forward, detached: the KL and its gradient are 0 at θ_old, its Hessian is F
        kl = masked_mean(categorical_kl(scored.logits.detach(), scored.logits), mask)
        kl_grad = _flat(torch.autograd.grad(kl, params, create_graph=True, allow_unused=True), params)
        damping = self.config.cg_damping

        def fvp(v: torch.Tensor) -> torch.Tensor:
            hv = torch.autograd.grad(kl_grad.dot(v), params, retain_graph=True, allow_unused=True)
            return _flat(hv, params) + damping * v

        return g, fvp

    def _policy_step(self, batch: TrainBatch) -> dict[str, float]:
        cfg: TRPOConfig = self.config
        params = self._policy_params()
        base = [p.detach().clone() for p in params]
        mask = batch.response_mask
        with torch.no_grad():
            before = self._score(batch)
        old_logits = before.logits
        surr_before = surrogate(before.logprobs, batch.old_logprobs, batch.advantages, mask).item()
        g, fvp = self._gradient_and_fvp(batch, params)
        direction = conjugate_gradient(fvp, g, cfg.cg_iters, cfg.cg_residual_tol)
        shs = direction.dot(fvp(direction)).item()  # xᵀ(F + λI)x, the KL's quadratic model times 2
        full_step = direction * (2 * cfg.max_kl / shs) ** 0.5 if shs > 0 else torch.zeros_like(direction)
        expected_full = g.dot(full_step).item()
        accepted, fraction, backtracks, surr, kl, after = False, 0.0, 0, surr_before, 0.0, before
        if expected_full > 0 and torch.isfinite(full_step).all():  # else no step along it can improve L
            accepted, fraction, backtracks, surr, kl, after = self._line_search(
                batch, params, base, full_step, old_logits, surr_before
            )
        if not accepted:
            _set_params(params, base, None)  # bit-identical: copied back, not re-added
            fraction, surr, kl, after = 0.0, surr_before, 0.0, before
        return {
            "loss/policy": -surr_before,
            "loss/entropy": masked_entropy_mean(old_logits, mask).item(),
            "policy/approx_kl": approx_kl(after.logprobs, batch.old_logprobs, mask).item(),
            "policy/grad_norm": g.norm().item(),
            "trpo/kl": kl,
            "trpo/step_size": (fraction * full_step).norm().item(),
            "trpo/line_search_steps": float(backtracks),
            "trpo/accepted": float(accepted),
            "trpo/surrogate_improvement": surr - surr_before,
            "trpo/expected_improvement": (fraction if accepted else 1.0) * expected_full,
        }

    def _line_search(
        self,
        batch: TrainBatch,
        params: list[torch.Tensor],
        base: list[torch.Tensor],
        full_step: torch.Tensor,
        old_logits: torch.Tensor,
        surr_before: float,
    ) -> tuple[bool, float, int, float, float, ScoreOutput | None]:
        """Try ``θ_old + shrink**i * full_step`` for i = 0, 1, ...; accept the first that improves the surrogate
        and keeps the mean KL within δ (the quadratic model of the KL can be wrong far from θ_old).

        Returns ``(accepted, fraction, backtracks, surrogate, kl, scores)``, leaving θ at the last step tried.
        """
        cfg: TRPOConfig = self.config
        surr, kl, scored = surr_before, 0.0, None
        for i in range(cfg.line_search_max_steps):
            fraction = cfg.line_search_shrink**i
            _set_params(params, base, fraction * full_step)
            surr, kl, scored = self._evaluate(batch, old_logits)
            if surr - surr_before > 0 and kl <= cfg.max_kl:  # NaNs compare False: rejected
                return True, fraction, i, surr, kl, scored
        return False, 0.0, cfg.line_search_max_steps, surr, kl, scored

    # -------------------------------------------------------------------------------------- critic fit

    def _trunk_hidden(self, model: torch.nn.Module, batch: TrainBatch) -> torch.Tensor:
        """Last hidden states ``[B, T, H]`` of ``model`` at the states before each response token."""
        _, hidden = sequence_logits(
            model,
            self.policy.seq2seq,
            batch.prompt_ids,
            batch.prompt_mask,
            batch.response_ids,
            batch.response_mask.long(),
            output_hidden=True,
            logits=False,
        )
        return hidden

    def _values(self, mb: TrainBatch, frozen_hidden: torch.Tensor | None) -> torch.Tensor:
        """Critic values ``[b, T]``, differentiable in the value head (and the separate critic's trunk)."""
        if frozen_hidden is None:
            frozen_hidden = self._trunk_hidden(self.policy.critic_model, mb)
        return self.policy.value_head(frozen_hidden.float()).squeeze(-1)

    @torch.no_grad()
    def _shared_hidden(self, batch: TrainBatch) -> torch.Tensor | None:
        """The shared trunk's last hidden states ``[B, T, H]``, computed once without grad so the value loss
        cannot reach the policy; ``None`` with a separate critic (its trunk is trained with the head)."""
        if self.policy.critic_model is not None:
            return None
        return self._trunk_hidden(self.policy.model, batch)

    def _fit_value(self, batch: TrainBatch) -> dict[str, float]:
        cfg: TRPOConfig = self.config
        # after the policy step: the next rollout's values are read from the updated trunk
        hidden = self._shared_hidden(batch)
        size = cfg.value_minibatch_size or len(batch)
        losses, norms = [], []
        for _epoch in range(cfg.n_value_epochs):
            device = batch.prompt_ids.device
            for index in minibatch_indices(len(batch), size, shuffle=size < len(batch), device=device):
                mb = batch.select(index)
                values = self._values(mb, None if hidden is None else hidden[index])
                loss, _ = clipped_value_loss(
                    values, mb.old_values, mb.returns, mb.response_mask, cfg.clip_range_value
                )
                norms.append(self.step(loss))
                losses.append(loss.item())
        return {
            "loss/value": sum(losses) / len(losses),
            "value/grad_norm": sum(norms) / len(norms),
            "trpo/value_steps": float(len(losses)),
        }
