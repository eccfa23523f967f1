#!/usr/bin/env bash
# Verify everything issue 33 left for a GPU, in back-to-back calls of at most 10 minutes that resume
# where the last one stopped. Run from the repository root:
#
#     bash bench/gpu/gpu_verify.sh [--out DIR] [--budget SECONDS] [--only STAGES]   on CUDA, again until "all done"
#     bash bench/gpu/gpu_verify.sh --check [--out DIR]                anywhere: validates every stage, runs none
#
# Stages, in order; each is skipped once its output exists in DIR (default out/gpu_verify, ignored by git):
#   1. step     bench/gpu/gpu_step.py --ladder: the ladder's shapes, compile time cold and warm, 1, 2 and 4
#               runs sharing the GPU                                       -> step.txt, step.json
#   2. recipe   bench/gpu/ladder_recipe.py: lr x beta2 grid at two ladder widths -> recipe.txt, recipe.json
#               (its 16 runs live in DIR/recipe-runs: a call that stops mid-grid resumes there)
#   3. ladder   distillscale demo --scale gpu --out DIR/ladder (the sweep resumes its runs)
#                                                                          -> ladder.txt, ladder/report.json
#   4. tests    the CUDA-only tests (tests/training/test_device.py, test_model.py's compile + bf16 test)
#                                                                          -> tests.txt
#   5. lrgrid   bench/demo/tuned_calibration.py grid --scale gpu (issue 53): the ladder's teachers without its
#               held-out size at 4 rates 2x apart (56 runs, 4 sharing the GPU: ~9 min by the dry run),
#               the hyperparameter law fitted on them, then `heldout --scale gpu`: the law of the grid's
#               smaller depths scored at its largest   -> lrgrid.txt, law-gpu.json, grid_gpu.csv
#   6. tuned    bench/demo/tuned_calibration.py arms: the ladder's teachers twice, at the old width rule's
#               rates and at that law's (21 runs each, ~200 s each on an H200), and each arm's
#               supervised held-out check                                  -> tuned.txt, teachers_arms.csv
#   7. sizes    bench/laws/gpu_ladder_sizes.py run (issue 55): the ladder's teachers at depths 2-8 (25 runs, its
#               rate law, the two largest seeded; 314 s on an H200)       -> sizes.txt, sizes/sizes.csv
#               (scored anywhere: python bench/laws/gpu_ladder_sizes.py check DIR/sizes/sizes.csv)
# Issue 65's targets (GPU speed and plans in GPU-hours), each stage one call within the default budget:
#   8. speed    bench/gpu/gpu_step.py --no-family: the 85M student supervised, from a live 680M teacher (its share
#               of the FLOP-ideal 3 F_S / (3 F_S + F_T), target >= 90%), from a top-128 cache decoded on the
#               GPU and on the host (target >= 0.9x supervised), under FSDP (~4 min)     -> speed.txt
#   9. family   bench/gpu/gpu_step.py --sizes 6M,11M,85M --no-students --table DIR/throughput.json: the
#               family against a plain HF Llama loop with both HF losses (labels= and float32 CE), MFU,
#               target >= 1.0x each (~5 min)                                -> family.txt, throughput.json
#  10. family2  the same at 200M and 680M, added to DIR/throughput.json (~5 min)      -> family2.txt
#  11. profile  bench/gpu/gpu_step.py --sizes 6M --student 85M --profile 3: where the steps that missed on the
#               H100 (2026-11-26: 6M at 0.71x HF labels=, the cache-fed 85M student at 0.63x) spend
#               their time: ms per step, the device's busy share, the top operations (~4 min) -> profile.txt
#  12. gpuhours bench/planning/gpu_hours_check.py --verify-dir DIR: the sizes ladder stage 7 trained, planned by
#               `sweep plan` from the shipped table and from DIR/throughput.json (target: within 15%
#               of its measured wall-clock; ~1 min, needs stage sizes)        -> gpuhours.txt
#  13. reader   bench/speed/cache_reader_scaling.py (issue 73): the logit cache's reader at 1, 2 and all the
#               machine's cores (threads as distill reads, and DataLoader processes), beside the
#               supervised tokens/s it must feed (~2 min, CPU only)       -> reader.txt
#   Where the device time is short: --only speed,family first (~6 min on an H100), then --only
#   family2,profile (~9 min), then --only sizes,gpuhours.
# Issue 97's targets (the cache-fed student and FSDP at full speed, the KD loss's memory, GPU-hours on the
# current engine), in one call: --only kdmem,kdspeed,sizes,gpuhours --budget 480 (~7.5 min: ~45 s, ~100 s,
# the sizes ladder's ~250 s on today's engine, ~1 min):
#  14. kdmem    bench/speed/kd_memory.py: peak memory of the four KD loss paths (full vocabulary, chunked, top-k
#               from cache, top-k live) at 8K tokens x 128K vocabulary against the logits' size, and the
#               kernels one cache-fed loss step launches, eager and compiled (~45 s)  -> kdmem.txt
#  15. kdspeed  bench/gpu/gpu_step.py --no-family --arms cache,fsdp: the 85M student supervised, from a top-128
#               cache (its loss compiled) and under FSDP on one rank (the update on local shards), each
#               profiled (kernels per step; targets >= 0.9x supervised; ~100 s)         -> kdspeed.txt
# then summary.md: one page with each stage's result. DIR/state.txt records what each call did. With
# $OUT set (the device machine's folder of files that come back) both, and each done stage's outputs,
# are copied to $OUT/gpu_verify/ (ladder/report.json as ladder-report.json).
#
# On the device machine DIR survives only while the machine stays warm (30 s after a call, 30 minutes
# held at most): make the calls back to back. A fresh machine starts bare: copy what came back into
# DIR (ladder-report.json to DIR/ladder/report.json), carry DIR, and the done stages are skipped.
# --only STAGE[,STAGE] runs the named stages alone (e.g. --only recipe,tests where time is short).
#
# A stage is given the time left in this call (--budget, default 540 s, keeping a 10-minute call's
# margin) under `timeout`; one stopped at its limit is left unfinished and the next call starts it
# again (the recipe grid and the ladder resume their runs from their checkpoints, taken every ~60 s).
#
# The device machine has no network: wheels of missing packages (pydantic, datasets, tomli-w, ...) travel
# in .whl/ (see /work/.library/device/README.md); when .whl/ holds any, they are installed into
# /tmp/site first. The sources are used from src/ (PYTHONPATH), nothing is installed from the network.
#
# Exit status: 0 when every stage is done, 3 when stages remain (call again), 2 for bad arguments,
# 1 when a stage failed, 4 when there is no GPU (a real run needs CUDA; --check does not).

set -uo pipefail

usage() { echo "usage: bash bench/gpu/gpu_verify.sh [--check] [--out DIR] [--budget SECONDS] [--only STAGE,...]"; }

CHECK=0
ONLY=
DIR=out/gpu_verify
BUDGET=540
while [ $# -gt 0 ]; do
    case "$1" in
        --check|--dry-run) CHECK=1 ;;
        --only) [ $# -ge 2 ] || { echo "gpu_verify: --only needs stages, e.g. --only recipe,tests" >&2; exit 2; }; ONLY=$2; shift ;;
        --out) [ $# -ge 2 ] || { echo "gpu_verify: --out needs a directory" >&2; exit 2; }; DIR=$2; shift ;;
        --budget) [ $# -ge 2 ] && [[ "$2" =~ ^[0-9]+$ ]] || { echo "gpu_verify: --budget needs whole seconds, e.g. --budget 540" >&2; exit 2; }
                  BUDGET=$2; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "gpu_verify: unknown argument $1: $(usage)" >&2; exit 2 ;;
    esac
    shift
done

if [ ! -f bench/gpu/gpu_step.py ] || [ ! -d src/distillscale ]; then
    echo "gpu_verify: run it from the repository root (bench/ and src/ not found in $PWD)" >&2
    exit 2
fi

# The tests that skip without CUDA (-rs lists any that still skip: on a GPU machine, none should).
CUDA_TESTS="tests/training/test_device.py tests/model/test_model.py::test_compiled_bf16_model_matches_eager_on_cuda"
CUDA_TESTS="$CUDA_TESTS tests/training/test_cache_decode_cuda.py tests/model/test_norm_dtypes.py"  # issue 65
# The stages: name, the files that mark it done, its command.
STAGES=(step recipe ladder tests lrgrid tuned sizes speed family family2 profile gpuhours reader kdmem kdspeed)
if [ -n "$ONLY" ]; then
    IFS=, read -r -a wanted <<< "$ONLY"
    for stage in "${wanted[@]}"; do
        [[ " ${STAGES[*]} " == *" $stage "* ]] || { echo "gpu_verify: unknown stage $stage in --only: use step, recipe, ladder, tests, lrgrid, tuned, sizes, speed, family, family2, profile, gpuhours, reader, kdmem or kdspeed" >&2; exit 2; }
    done
    STAGES=("${wanted[@]}")
fi
START=$(date +%s)
# The interpreter: $PYTHON when set, else the repository's .venv when there is one, else python3.
if [ -z "${PYTHON:-}" ]; then
    PYTHON=python3
    [ -x .venv/bin/python ] && PYTHON=.venv/bin/python
fi
# A real run needs CUDA: said before anything is installed or written.
if [ "$CHECK" = 0 ] && ! "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() and torch.cuda.device_count() > 0 else 1)"; then
    echo "gpu_verify: no GPU: CUDA is not usable here (torch.cuda.is_available() is False); run it on a GPU machine, or use --check" >&2
    exit 4
fi
SITE=/tmp/site
if [ "$CHECK" = 0 ] && compgen -G ".whl/*.whl" > /dev/null; then
    echo "gpu_verify: installing the wheels of .whl/ into $SITE"
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl \
        || { echo "gpu_verify: installing .whl/*.whl failed: check the wheels (one version of each)" >&2; exit 1; }
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
[ -d "$SITE" ] && export PYTHONPATH="$PYTHONPATH:$SITE"
export PYTHONUNBUFFERED=1

missing=$("$PYTHON" - <<'EOF'
import importlib.util
print(" ".join(name for name in ("torch", "numpy", "pydantic", "pydantic_core", "typer", "rich", "tomli_w", "safetensors",
                            "tokenizers", "pytest")
               if importlib.util.find_spec(name) is None))
EOF
)
if [ -n "$missing" ]; then
    echo "gpu_verify: missing Python packages: $missing: bring their wheels in .whl/ (no network on the device machine)" >&2
    exit 1
fi

declare -A DONE_FILE=([step]=step.json [recipe]=recipe.json [ladder]=ladder/report.json [tests]=tests.txt
                      [lrgrid]=law-gpu.json [tuned]=teachers_arms.csv [sizes]=sizes/sizes.csv
                      [speed]=speed.txt [family]=family.txt [family2]=family2.txt [profile]=profile.txt [gpuhours]=gpuhours.txt
                      [reader]=reader.txt [kdmem]=kdmem.txt [kdspeed]=kdspeed.txt)
stage_command() {
    case "$1" in
        step)   echo "$PYTHON bench/gpu/gpu_step.py --ladder --json '$DIR/step.json.tmp'" ;;
        recipe) echo "$PYTHON bench/gpu/ladder_recipe.py --no-tiny --out '$DIR/recipe-runs' --json '$DIR/recipe.json.tmp'" ;;
        ladder) echo "$PYTHON -m distillscale.cli demo --scale gpu --out '$DIR/ladder'" ;;
        tests)  echo "$PYTHON -m pytest -q -rs $CUDA_TESTS" ;;
        lrgrid) echo "$PYTHON bench/demo/tuned_calibration.py grid --scale gpu --work '$DIR' && $PYTHON bench/demo/tuned_calibration.py heldout --scale gpu --work '$DIR'" ;;
        tuned)  echo "$PYTHON bench/demo/tuned_calibration.py arms --work '$DIR'" ;;
        sizes)  echo "$PYTHON bench/laws/gpu_ladder_sizes.py run --work '$DIR/sizes' --budget $(( ${left:-$BUDGET} - 30 ))" ;;
        speed)  echo "$PYTHON bench/gpu/gpu_step.py --no-family --student 85M" ;;
        family) echo "$PYTHON bench/gpu/gpu_step.py --sizes 6M,11M,85M --no-students --table '$DIR/throughput.json' --table-device measured" ;;
        family2) echo "$PYTHON bench/gpu/gpu_step.py --sizes 200M,680M --no-students --table '$DIR/throughput.json' --table-device measured" ;;
        profile) echo "$PYTHON bench/gpu/gpu_step.py --sizes 6M --student 85M --steps 10 --profile 3" ;;
        gpuhours) echo "$PYTHON bench/planning/gpu_hours_check.py --verify-dir '$DIR'" ;;
        reader) echo "$PYTHON bench/speed/cache_reader_scaling.py" ;;
        kdmem)  echo "$PYTHON bench/speed/kd_memory.py" ;;
        kdspeed) echo "$PYTHON bench/gpu/gpu_step.py --no-family --student 85M --arms cache,fsdp --steps 10 --warmup 3 --profile 2" ;;
    esac
}
# What --check runs instead: the same entry points, without training.
check_command() {
    case "$1" in
        step)   echo "$PYTHON bench/gpu/gpu_step.py --help" ;;
        recipe) echo "$PYTHON bench/gpu/ladder_recipe.py --no-tiny --plan" ;;
        ladder) echo "$PYTHON -m distillscale.cli demo --help" ;;
        tests)  echo "$PYTHON -m pytest -q --collect-only $CUDA_TESTS" ;;
        lrgrid|tuned) echo "$PYTHON bench/demo/tuned_calibration.py --help" ;;
        sizes)  echo "$PYTHON bench/laws/gpu_ladder_sizes.py spec --work '$DIR/sizes'" ;;
        speed|family|family2|profile) echo "$PYTHON bench/gpu/gpu_step.py --help" ;;
        gpuhours) echo "$PYTHON bench/planning/gpu_hours_check.py --help" ;;
        reader) echo "$PYTHON bench/speed/cache_reader_scaling.py --help" ;;
        kdmem)  echo "$PYTHON bench/speed/kd_memory.py --device cpu --tiny" ;;
        kdspeed) echo "$PYTHON bench/gpu/gpu_step.py --device cpu --tiny --no-family --arms cache,fsdp --steps 1 --warmup 1 --profile 1" ;;
    esac
}
# The cli module runs `main` under python -m: check it does (distillscale may not be installed there).
if ! grep -q '__name__ == "__main__"' src/distillscale/cli.py; then
    echo "gpu_verify: src/distillscale/cli.py cannot run as python -m distillscale.cli" >&2
    exit 1
fi

if [ "$CHECK" = 1 ]; then
    status=0
    for stage in "${STAGES[@]}"; do
        state=pending; [ -e "$DIR/${DONE_FILE[$stage]}" ] && state=done
        if output=$(eval "$(check_command "$stage")" 2>&1); then
            echo "check: $stage ($state): $(stage_command "$stage")"
            [ "$stage" = recipe ] && echo "$output" | sed 's/^/    /'
        else
            echo "check: $stage FAILED: $(check_command "$stage")" >&2
            status=1
        fi
    done
    if "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
        echo "check: CUDA is available: run without --check to verify"
    else
        echo "check: no GPU here: a real run would stop (exit 4)"
    fi
    exit $status
fi


mkdir -p "$DIR"
log() { echo "$(date -u +%FT%TZ) $*" | tee -a "$DIR/state.txt"; }
remaining() { echo $(( BUDGET - ($(date +%s) - START) )); }

failed=0
for stage in "${STAGES[@]}"; do
    if [ -e "$DIR/${DONE_FILE[$stage]}" ]; then
        echo "gpu_verify: $stage: done earlier ($DIR/${DONE_FILE[$stage]})"
        continue
    fi
    left=$(remaining)
    if [ "$left" -lt 30 ]; then
        log "$stage: not started, $left s left in this call: call again"
        break
    fi
    log "$stage: started with $left s left: $(stage_command "$stage")"
    stage_start=$(date +%s)
    timeout --signal=TERM --kill-after=20 "$left" bash -c "$(stage_command "$stage")" > "$DIR/$stage.txt.part" 2>&1
    code=$?
    took=$(( $(date +%s) - stage_start ))
    if [ $code = 124 ] || [ $code = 137 ]; then
        log "$stage: stopped at this call's limit after $took s (its runs resume): call again"
        mv "$DIR/$stage.txt.part" "$DIR/$stage.txt.unfinished"
        break
    fi
    mv "$DIR/$stage.txt.part" "$DIR/$stage.txt"
    if [ $code != 0 ]; then
        log "$stage: FAILED (exit $code) after $took s: see $DIR/$stage.txt"
        failed=1
        mv "$DIR/$stage.txt" "$DIR/$stage.failed.txt"
        break
    fi
    for json in step recipe; do  # written under a temporary name: the JSON marks the stage done
        [ "$stage" = "$json" ] && [ -e "$DIR/$json.json.tmp" ] && mv "$DIR/$json.json.tmp" "$DIR/$json.json"
    done
    if [ "$stage" = ladder ] && [ ! -e "$DIR/ladder/report.json" ]; then
        log "ladder: finished without ladder/report.json: see $DIR/ladder.txt"; failed=1; break
    fi
    log "$stage: done in $took s"
done

# The one-page summary, from what exists so far.
summary="$DIR/summary.md"
{
    echo "# GPU verification (bench/gpu/gpu_verify.sh)"
    echo
    echo "$(date -u +%FT%TZ), $("$PYTHON" -c 'import torch; print(torch.cuda.get_device_name(), "torch", torch.__version__)' 2>/dev/null)"
    echo
    for stage in "${STAGES[@]}"; do
        if [ -e "$DIR/${DONE_FILE[$stage]}" ]; then state=done; elif [ -e "$DIR/$stage.failed.txt" ]; then state=FAILED
        else state="not done yet"; fi
        echo "## $stage: $state"
        echo
        text="$DIR/$stage.txt"; [ -e "$text" ] || text="$DIR/$stage.failed.txt"
        if [ -e "$text" ]; then
            echo '```'
            case "$stage" in
                step)   grep -A20 '^3\. ' "$text" | head -20 ;;
                recipe) grep -v '^L[0-9]' "$text" | tail -20 ;;
                ladder) tail -25 "$text" ;;
                tests)  tail -8 "$text" ;;
                lrgrid) grep -v '━' "$text" | tail -20 ;;
                tuned)  grep '^|' "$text" ;;
                sizes)  tail -3 "$text" ;;
                speed)  grep -A12 '^2\. ' "$text" ;;
                family|family2) grep -A12 '^1\. ' "$text" ;;
                profile) grep -E '^ *(profile of|[0-9]+M |targets)' "$text" ;;
                gpuhours) cat "$text" ;;
                reader) grep -v '^$' "$text" ;;
                kdmem)  grep -v '^$' "$text" ;;
                kdspeed) grep -E '^ *(profile of|supervised|top-|targets)' "$text" ;;
            esac
            echo '```'
            echo
        fi
    done
} > "$summary.tmp" && mv "$summary.tmp" "$summary"
# What comes back from the device machine ($OUT: at most 8 files): the summary, the state, and the small
# outputs of this call's stages (all of them, or those of --only) under DIR's own names, so that a fresh
# machine can go on from them (put them in DIR again and carry it: only the recipe grid's and the ladder's
# unfinished runs are lost); past 8 files the rest stay in DIR and state.txt names them.
declare -A RETURNED=([step]=step.json [recipe]=recipe.json [ladder]="ladder.txt ladder/report.json" [tests]=tests.txt
                     [lrgrid]="lrgrid.txt law-gpu.json grid_gpu.csv" [tuned]="tuned.txt teachers_arms.csv"
                     [sizes]="sizes.txt sizes/sizes.csv" [speed]=speed.txt [family]="family.txt throughput.json"
                     [family2]="family2.txt throughput.json" [profile]=profile.txt [gpuhours]=gpuhours.txt
                     [reader]=reader.txt [kdmem]=kdmem.txt [kdspeed]=kdspeed.txt)
if [ -n "${OUT:-}" ] && [ -d "${OUT:-}" ]; then
    mkdir -p "$OUT/gpu_verify"
    names=(summary.md)  # and state.txt last, with the names of any left out
    for stage in "${STAGES[@]}"; do
        for name in ${RETURNED[$stage]}; do
            [[ " ${names[*]} " == *" $name "* ]] || names+=("$name")
        done
    done
    copied=0
    for name in "${names[@]}"; do
        [ -e "$DIR/$name" ] || continue
        target=$(echo "$name" | sed 's#^ladder/report.json$#ladder-report.json#; s#^sizes/sizes.csv$#sizes.csv#')
        if [ $copied -ge 7 ]; then
            log "not returned (8 files at most): $DIR/$name"
            continue
        fi
        cp "$DIR/$name" "$OUT/gpu_verify/$target"
        copied=$((copied + 1))
    done
    cp "$DIR/state.txt" "$OUT/gpu_verify/state.txt" 2>/dev/null
fi

if [ $failed = 1 ]; then echo "gpu_verify: a stage failed: see $summary" >&2; exit 1; fi
for stage in "${STAGES[@]}"; do
    if [ ! -e "$DIR/${DONE_FILE[$stage]}" ]; then
        echo "gpu_verify: stages remain: call again (summary so far: $summary)"
        exit 3
    fi
done
echo "gpu_verify: all done: $summary"
exit 0
