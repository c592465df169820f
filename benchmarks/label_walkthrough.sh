#!/usr/bin/env bash
# The README's labeling walkthrough on a real model (SmolLM2-135M-Instruct, Multi30k de->en), end to end:
# samples -> label (scripted annotators standing in for people) -> export -> RM -> RL with learned_rm -> eval
# -> label start vs trained -> win rate. Run from the repository root with the project's venv on PATH:
#   RL4TEXT_DATA=../shared/data OMP_NUM_THREADS=1 bash benchmarks/label_walkthrough.sh
# Writes runs/label_demo/ (and times each step into runs/label_demo/times.txt).
set -euo pipefail
D=runs/label_demo
mkdir -p $D
step() { local t0=$SECONDS; "$@"; echo "$((SECONDS - t0)) s: $*" >> $D/times.txt; }
serve_and_annotate() {  # serve the project, let 3 scripted annotators judge everything, stop the server
  rl4text label serve "$1" --port 8765 & local pid=$!
  for _ in $(seq 50); do curl -s -o /dev/null http://127.0.0.1:8765/ && break; sleep 0.2; done
  python -m rl4text.label.simulate http://127.0.0.1:8765 --prefer chrf --noise 0.05 --seed "$2"
  kill $pid; wait $pid || true
}
# 1. two samples per prompt from the starting policy (temperature 0.7, two seeds), 48 training sentences
for s in 1 2; do
  step rl4text eval rl4text/presets/quickstart.yaml --split train --max-samples 48 eval.do_sample=true \
    eval.temperature=0.7 train.seed=$s --output-dir $D/samples-$s --overwrite
done
# 2. a pairwise project (references shown), 3 annotators per item; annotate; quality control
rm -rf $D/collect $D/verdict
step rl4text label new $D/collect --from $D/samples-1/predictions.jsonl $D/samples-2/predictions.jsonl \
  --names sample-a sample-b --show-references --per-item 3
step serve_and_annotate $D/collect 0
step rl4text label stats $D/collect
# 3. export the majority preferences, train a reward model on them
step rl4text label export $D/collect --format pairs --output $D/pairs.jsonl --min-agreement 0.6
step rl4text rm train configs/rm_label_pairs.yaml data.path=$D/pairs.jsonl --output-dir $D/rm --overwrite
# 4. RL against it (the quickstart's PPO settings), then evaluate start and trained on the same 40 test sentences
step rl4text train configs/label_multi30k_smollm2.yaml reward.components.0.args.path=$D/rm --output-dir $D/rl --overwrite
step rl4text eval $D/rl --split test --max-samples 40 --output-dir $D/trained --overwrite
step rl4text eval rl4text/presets/quickstart.yaml --split test --max-samples 40 --output-dir $D/start --overwrite
# 5. the human (here: scripted) evaluation of the RL run
step rl4text label new $D/verdict --from $D/start/predictions.jsonl $D/trained/predictions.jsonl \
  --names start trained --show-references --per-item 3
step serve_and_annotate $D/verdict 1
step rl4text label stats $D/verdict
