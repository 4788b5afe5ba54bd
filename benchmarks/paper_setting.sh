#!/usr/bin/env bash
# Every measurement of the paper's setting (a capable optimizer model improving a weaker target), in the
# order the README reports them. Hours of compute on 2 cores from a cold cache; each step writes its
# results after every row and resumes from the cache and run ledgers, so rerunning this script after an
# interruption repeats no paid model call. Results go to benchmarks/results/ (or $OUT).
#
#   bash benchmarks/paper_setting.sh              # everything
#   bash benchmarks/paper_setting.sh compare100   # one step: compare100 | paper_table | diagnose | compare300
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-benchmarks/results}"
OPTIMIZER_MODEL="${OPTIMIZER_MODEL:-gguf/qwen2.5-coder-1.5b}"
export HONED_BBH_DIR="${HONED_BBH_DIR:-$(cd .. && pwd)/shared/data/bbh}"
# Batched decoding gives the single-stream answers (the loop decodes only as many sequences at once as a
# model computes exactly as one; see the README) and evaluates 1.5-1.8x faster here: on unless set to 0.
export HONED_GGUF_BATCH="${HONED_GGUF_BATCH:-1}" HONED_GGUF_BATCH_SEQS="${HONED_GGUF_BATCH_SEQS:-8}"
steps=("${@:-compare100 paper_table diagnose compare300}")

for step in ${steps[*]}; do
    echo "== $step $(date -u +%FT%TZ)" >&2
    case "$step" in
        compare100)
            python benchmarks/compare.py --optimizer-model "$OPTIMIZER_MODEL" --budget 100 \
                --out "$OUT/paper_setting" ;;
        paper_table)
            python benchmarks/paper_table.py --optimizer-model "$OPTIMIZER_MODEL" --out "$OUT" ;;
        diagnose)
            # Sentiment, three compiles per plant (compile seeds 0, 1, 2): what the README's table reports.
            for optimizer in reflective behavior copro gepa; do
                honed diagnose reflection sentiment --optimizer "$optimizer" --optimizer-model "$OPTIMIZER_MODEL" \
                    --budget 100 --train-size 100 --val-size 20 --repeats 3 \
                    --out "$OUT/diagnose_paper_setting/sentiment-$optimizer"
            done
            for optimizer in reflective behavior; do  # what their accepted refinements changed
                for plant in hidden_rule format distractor; do
                    honed diagnose following "$OUT/diagnose_paper_setting/sentiment-$optimizer/runs/$plant" --json \
                        > "$OUT/diagnose_paper_setting/sentiment-$optimizer/following-$plant.json"
                done
            done ;;
        compare300)
            python benchmarks/compare.py --optimizer-model "$OPTIMIZER_MODEL" --budget 300 \
                --optimizers reflective,behavior,mipro,bootstrap --default-adapter-limit 0 \
                --out "$OUT/paper_setting_budget300" ;;
        *) echo "unknown step $step (compare100 | paper_table | diagnose | compare300)" >&2; exit 2 ;;
    esac
done
