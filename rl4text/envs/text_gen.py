"""Text generation as a Gymnasium environment: the reference semantics of rl4text.

State = the prompt and the tokens generated so far; action = the next token id. An episode ends with
``terminated`` when the action is EOS and ``truncated`` after ``max_new_tokens`` actions. The reward of the
finished text is given on the last step (0 before), or, with ``reward_every_step``, the increase of the reward
of the text so far at each step (which sums to the same return). The env needs no model: the agent is the policy.
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from rl4text.text import decode_completion, encode_prompts, format_prompt


class TextGenEnv(gym.Env):
    """``gymnasium.make("rl4text/TextGen-v0", tokenizer=..., samples=[...], reward="chrf", max_new_tokens=32)``.

    Observation (a ``Dict`` of int64 arrays): ``prompt_input_ids`` / ``prompt_attention_mask`` ``[P]`` (left-padded
    for causal models, right-padded for seq2seq, exactly as the fast rollout encodes prompts) and
    ``context_input_ids`` / ``context_attention_mask`` ``[max_new_tokens]`` (generated tokens, right-padded).
    ``info`` holds ``prompt``, ``references`` and, at the end, ``completion`` and ``reward_components``.
    """

    metadata: ClassVar[dict] = {"render_modes": ["ansi"]}

    def __init__(
        self,
        tokenizer,
        samples: list[dict],
        reward: Any = "chrf",
        max_new_tokens: int = 32,
        max_prompt_length: int = 128,
        seq2seq: bool = False,
        use_chat_template: bool = False,
        vocab_size: int | None = None,
        reward_every_step: bool = False,
        render_mode: str | None = None,
    ):
        from rl4text.rewards import build_reward

        if not samples:
            raise ValueError("TextGenEnv needs at least one sample {'prompt': str, 'references': [str, ...]}")
        for i, s in enumerate(samples):
            if not isinstance(s.get("prompt"), str) or not isinstance(s.get("references"), list):
                raise ValueError(
                    f"TextGenEnv sample {i} must have 'prompt' (str) and 'references' (list of str)"
                )
        if tokenizer.pad_token_id is None or tokenizer.eos_token_id is None:
            raise ValueError("TextGenEnv needs a tokenizer with pad and EOS tokens")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"render_mode must be one of {self.metadata['render_modes']}, got {render_mode!r}"
            )
        self.tokenizer = tokenizer
        self.samples = samples
        self.reward_fn = build_reward(reward)
        self.max_new_tokens = max_new_tokens
        self.max_prompt_length = max_prompt_length
        self.seq2seq = seq2seq
        self.use_chat_template = use_chat_template
        self.reward_every_step = reward_every_step
        self.render_mode = render_mode
        self.eos_id = tokenizer.eos_token_id
        self.pad_id = tokenizer.pad_token_id
        vocab = vocab_size or len(tokenizer)
        self.action_space = spaces.Discrete(vocab)

        def ids(n: int) -> spaces.Box:
            return spaces.Box(0, vocab - 1, shape=(n,), dtype=np.int64)

        def mask(n: int) -> spaces.Box:
            return spaces.Box(0, 1, shape=(n,), dtype=np.int64)

        P, T = max_prompt_length, max_new_tokens
        self.observation_space = spaces.Dict(
            {
                "prompt_input_ids": ids(P),
                "prompt_attention_mask": mask(P),
                "context_input_ids": ids(T),
                "context_attention_mask": mask(T),
            }
        )
        self._sample: dict | None = None
        self._prompt_ids = np.zeros(P, dtype=np.int64)
        self._prompt_mask = np.zeros(P, dtype=np.int64)
        self._context: list[int] = []
        self._last_partial_reward = 0.0
        self._done = True

    # ------------------------------------------------------------------ gymnasium API
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Start an episode on ``options["sample"]`` (a sample dict or an index) or a random sample."""
        super().reset(seed=seed)
        options = options or {}
        chosen = options.get("sample")
        if chosen is None:
            chosen = int(self.np_random.integers(len(self.samples)))
        self._sample = self.samples[chosen] if isinstance(chosen, (int, np.integer)) else chosen
        text = format_prompt(self.tokenizer, self._sample["prompt"], self.use_chat_template)
        ids, mask = encode_prompts(self.tokenizer, [text], self.max_prompt_length, self.seq2seq)
        P, n = self.max_prompt_length, ids.shape[1]
        self._prompt_ids = np.full(P, self.pad_id, dtype=np.int64)
        self._prompt_mask = np.zeros(P, dtype=np.int64)
        # keep the encoder's padding side at full width: left-padded for causal, right-padded for seq2seq
        window = slice(0, n) if self.seq2seq else slice(P - n, P)
        self._prompt_ids[window], self._prompt_mask[window] = ids[0].numpy(), mask[0].numpy()
        self._context = []
        self._last_partial_reward = 0.0
        self._done = False
        return self._obs(), self._info()

    def step(self, action):
        if self._done:
            raise RuntimeError("step() called on a finished episode; call reset() first")
        action = int(action)
        if not self.action_space.contains(action):
            raise ValueError(f"action {action} is outside the action space {self.action_space}")
        self._context.append(action)
        terminated = action == self.eos_id
        truncated = not terminated and len(self._context) >= self.max_new_tokens
        self._done = terminated or truncated
        info = self._info()
        reward = 0.0
        if self._done or self.reward_every_step:
            total, parts = self._score()
            reward = total - self._last_partial_reward if self.reward_every_step else total
            self._last_partial_reward = total
            if self._done:
                info["completion"] = self.completion
                info["reward_components"] = parts
                info["episode_reward"] = total
        return self._obs(), float(reward), terminated, truncated, info

    def render(self):
        if self.render_mode == "ansi":
            return f"{self._sample['prompt'] if self._sample else ''} ⟶ {self.completion}"
        return None

    # ------------------------------------------------------------------ helpers
    @property
    def completion(self) -> str:
        """The text generated so far (up to EOS, special tokens dropped)."""
        return decode_completion(self.tokenizer, self._context)

    def _score(self) -> tuple[float, dict[str, float]]:
        s = self._sample
        fields = {
            "ended_with_eos": [bool(self._context) and self._context[-1] == self.eos_id],
            "response_token_ids": [list(self._context)],
            "meta": [s.get("meta", {})],
        }
        total, parts = self.reward_fn.score([s["prompt"]], [self.completion], [s["references"]], **fields)
        return total[0], {k: v[0] for k, v in parts.items()}

    def _obs(self) -> dict[str, np.ndarray]:
        T = self.max_new_tokens
        ctx = np.full(T, self.pad_id, dtype=np.int64)
        ctx_mask = np.zeros(T, dtype=np.int64)
        ctx[: len(self._context)] = self._context
        ctx_mask[: len(self._context)] = 1
        return {
            "prompt_input_ids": self._prompt_ids.copy(),
            "prompt_attention_mask": self._prompt_mask.copy(),
            "context_input_ids": ctx,
            "context_attention_mask": ctx_mask,
        }

    def _info(self) -> dict:
        s = self._sample or {}
        return {"prompt": s.get("prompt"), "references": s.get("references")}
