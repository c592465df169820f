#!/usr/bin/env bash
# Issue 13's measurements in one go, for a machine with its cores free (other sessions' load makes every
# absolute time longer; the ratios come from runs alternated inside each tool):
#   1. benchmarks/vs_trl.py: RLOO on SmolLM2-135M, rl4text fp32 full fine-tuning, rl4text under bf16 autocast and
#      rl4text with LoRA r=8, alternated with TRL's RLOOTrainer (fp32) ROUNDS times
#      -> benchmarks/results/vs_trl.md / .json
#   2. benchmarks/memory.py --kinds causal: PPO quickstart peak RSS of full, full_lean (gradient checkpointing,
#      micro-batches of 4, bf16 reference), lora, three_copies, full_autocast -> benchmarks/results/memory.md / .json
#   3. the same for the seq2seq model (T5-small architecture) -> benchmarks/results/memory_seq2seq.md / .json
#
# Expected duration with OMP_NUM_THREADS=1 (from the runs in benchmarks/results/, which were measured under
# 2-5 cores' worth of other load): part 1 ~8-13 min per round (TRL's process ~3-5.5 min, rl4text's ~1.5-3 min
# each), part 2 ~3-4 min, part 3 ~2 min: ~13-19 min with ROUNDS=1, ~21-32 min with ROUNDS=2.
#
#   bash benchmarks/issue13_measure.sh              # ROUNDS=1
#   ROUNDS=2 bash benchmarks/issue13_measure.sh     # A B C D A B C D, when there is time
#   SMOKE=1 bash benchmarks/issue13_measure.sh      # the plumbing on tiny random models, no TRL (~5 min),
#                                                   # results in a temporary folder, benchmarks/results/ untouched
# Environment: PYTHON (default .venv/bin/python, else /work/main/.venv/bin/python), TRL_PYTHON (default
# /work/trl-venv/bin/python; see benchmarks/vs_trl.py for making that venv), OMP_NUM_THREADS (default 1).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo /work/main/.venv/bin/python)}
TRL_PYTHON=${TRL_PYTHON:-/work/trl-venv/bin/python}
ROUNDS=${ROUNDS:-1}
SMOKE=${SMOKE:-0}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} MKL_NUM_THREADS=${MKL_NUM_THREADS:-${OMP_NUM_THREADS:-1}}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

results=benchmarks/results
extra=()      # overrides of every run (SMOKE: tiny random models)
s2s_extra=()
trl=(--trl-python "$TRL_PYTHON")
if [ "$SMOKE" = 1 ]; then
  results=$(mktemp -d /tmp/issue13_smoke.XXXXXX)
  llama='model.random_init={model_type: llama, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2,'
  llama+=' num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 256}'
  t5='model.random_init={model_type: t5, d_model: 32, d_ff: 64, num_layers: 2, num_heads: 4, d_kv: 8}'
  extra=(model.name_or_path=null "$llama" model.tokenizer=char)
  s2s_extra=(model.name_or_path=null "$t5" model.tokenizer=char)
  trl=(--no-trl)
  ROUNDS=1
fi

stamp() { echo "== $(date +%T) $*"; }
t0=$SECONDS

stamp "1/3 vs_trl.py (rounds $ROUNDS) -> $results/vs_trl.md"
vs_args=()
for o in "${extra[@]}"; do vs_args+=(--rl4text-override "$o"); done
"$PYTHON" benchmarks/vs_trl.py "${trl[@]}" --rounds "$ROUNDS" --warmup 0 --steps 2 \
  --rl4text-override train.micro_batch_size=8 "${vs_args[@]}" \
  --variant fp32: \
  --variant autocast:model.autocast=true \
  --variant "lora:'model.lora={r: 8, alpha: 16}'" \
  --output "$results/vs_trl.md"
stamp "part 1 took $((SECONDS - t0)) s"

t1=$SECONDS
stamp "2/3 memory.py causal -> $results/memory.md"
mem_args=()
for o in "${extra[@]}"; do mem_args+=(--override "$o"); done
"$PYTHON" benchmarks/memory.py --kinds causal --iterations 1 "${mem_args[@]}" --output "$results/memory.md"
stamp "part 2 took $((SECONDS - t1)) s"

t2=$SECONDS
stamp "3/3 memory.py seq2seq -> $results/memory_seq2seq.md"
mem_args=()
for o in "${s2s_extra[@]}"; do mem_args+=(--override "$o"); done
"$PYTHON" benchmarks/memory.py --kinds seq2seq --iterations 1 "${mem_args[@]}" \
  --output "$results/memory_seq2seq.md"
stamp "part 3 took $((SECONDS - t2)) s; all $((SECONDS - t0)) s; results in $results"
