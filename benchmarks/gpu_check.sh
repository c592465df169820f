#!/usr/bin/env bash
# One-GPU check (< 8 min on an H100/H200): the equivalence tests on CUDA, then bf16 PPO on SmolLM2-135M (causal)
# and on a T5-base-sized encoder-decoder, each reporting generation tokens/s, seconds per iteration and the
# update's MFU (benchmarks/gpu_report.py). Run from the repository root:  bash benchmarks/gpu_check.sh
#
# Copes with a GPU machine that has torch, transformers, accelerate and peft but not gymnasium, wandb or
# rouge-score: rl4text imports them lazily (training needs none of them); WHEELS=DIR installs them offline from
# wheels handed over in DIR. Models: SMOLLM2=PATH and T5=PATH point at local copies; without them (no Hub
# access) the runs use randomly initialised models of the same architecture (same parameter count and FLOPs,
# a character tokenizer), which is what throughput and MFU need.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
OUT=${OUT:-runs/gpu_check}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
mkdir -p "$OUT"
if [[ -n "${WHEELS:-}" ]]; then
  $PY -m pip install --no-index --find-links "$WHEELS" gymnasium wandb rouge-score || echo "some wheels missing"
fi
$PY -c 'import torch; assert torch.cuda.is_available(), "no CUDA device"; print(torch.cuda.get_device_name(0))'

echo "== equivalence on CUDA"
tests=(tests/test_distributed.py::test_cuda_update_matches_cpu)
if $PY -c 'import gymnasium' 2>/dev/null; then tests+=(tests/test_equivalence.py); else echo "(no gymnasium: env equivalence skipped)"; fi
RL4TEXT_TEST_DEVICE=cuda timeout 180 $PY -m pytest -q -p no:cacheprovider "${tests[@]}"

common=(algorithm.name=ppo rollout.batch_size=64 rollout.max_new_tokens=48 rollout.max_prompt_length=64
        train.iterations=6 train.device=cuda eval.every=0 eval.at_start=false eval.max_samples=64
        tracking.wandb.enabled=false tracking.progress=lines train.save_every=0 reward.normalize=false)
launch=(accelerate launch --num_processes 1 --mixed_precision bf16 -m rl4text train configs/smoke.yaml)

if [[ -n "${SMOLLM2:-}" ]]; then causal=(model.random_init=null model.tokenizer=null "model.name_or_path=$SMOLLM2")
else causal=("model.random_init={model_type: llama, hidden_size: 576, intermediate_size: 1536, num_hidden_layers: 30, num_attention_heads: 9, num_key_value_heads: 3, max_position_embeddings: 2048, vocab_size: 49152, tie_word_embeddings: true}")
fi
echo "== bf16 PPO, SmolLM2-135M"
timeout 200 "${launch[@]}" "${common[@]}" "${causal[@]}" train.learning_rate=1e-5 --output-dir "$OUT/smollm2" --overwrite
if [[ -n "${T5:-}" ]]; then seq2seq=(model.random_init=null model.tokenizer=null "model.name_or_path=$T5")
else seq2seq=("model.random_init={model_type: t5, d_model: 768, d_ff: 3072, d_kv: 64, num_layers: 12, num_heads: 12, vocab_size: 32128}")
fi
echo "== bf16 PPO, T5-base-sized seq2seq"
timeout 200 "${launch[@]}" "${common[@]}" "${seq2seq[@]}" train.learning_rate=1e-5 --output-dir "$OUT/t5" --overwrite

$PY benchmarks/gpu_report.py "$OUT/smollm2" smollm2-135m-bf16 | tee "$OUT/report.jsonl"
$PY benchmarks/gpu_report.py "$OUT/t5" t5-base-bf16 | tee -a "$OUT/report.jsonl"
