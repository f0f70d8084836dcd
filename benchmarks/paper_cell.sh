#!/usr/bin/env bash
# One cell of the paper's tables at the full protocol (`paper` preset) on a lent GPU machine, within one device job.
#
#   benchmarks/paper_cell.sh DATASET LABELS METHOD SPLIT [MINUTES]      e.g.  cifar10 4000 lp 0
#
# Runs `lpnb run --preset paper ... --time-limit MINUTES` (default 8.5, inside a 10-minute job) with the machine's own
# torch, on the data carried in carry/: DATASET.tar.gz and labels/DATASET/ (the paper's split files). Prepare them
# here once (carry/ is git-ignored):
#   mkdir -p carry/labels && cp ../shared/data/cifar10.tar.gz carry/ && cp -r ../shared/data/labels/cifar10 carry/labels/
# The runs train in build/paper_cell_results/, git-ignored, which the machine keeps between two jobs while it stays
# warm (30 s after a job), and which a job's fresh copy of the tracked tree cannot overwrite: the same command sent
# again at once continues a run stopped at its time limit. The cell's record and its stage-1 run's, and the log, are
# copied to $OUT after each job (a record as <run-id>.json); copy them into results/runs/<run-id>/record.json here.
# Exit status: lpnb's (0: the cell is recorded, 3: stopped at the time limit, run it again; 124: an epoch overran
# the limit by 30 s and was stopped, 137: killed 15 s later; run it again). Once the cell is recorded, the log
# ends with where its time went (benchmarks/time_split.py, with the wall-clock of every call of this script that
# trained it). The decoded data and torch.compile's caches are kept in build/ too.
# A job that did not record the cell (stopped at its time limit, or failed) also sends back the run's checkpoint,
# in pieces (benchmarks/run_state.py), and its wall-clock (<run-id>.wall): empty carry-resume/ (git-ignored) and put
# what came back there to continue the run on a fresh machine (another session): this script restores what it
# finds there where the machine has none yet.
# PRESET, RESULTS_DIR and RESUME_DIR (default paper, build/paper_cell_results and carry-resume) let the script be
# tried on a CPU (OUT: where the log goes):
#   PRESET=smoke RESULTS_DIR=/tmp/r OUT=/tmp/o benchmarks/paper_cell.sh cifar10 4000 lp 0
set -uo pipefail
start=$(date +%s.%N)  # the job's clock: its time limit counts from here, and so does this call's wall-clock
if [ $# -lt 4 ]; then sed -n 2,24p "$0"; exit 2; fi
dataset=$1 labels=$2 method=$3 split=$4 minutes=${5:-8.5}
case "$labels$split" in *[!0-9]*) echo "LABELS and SPLIT are numbers, e.g. 4000 0; got $labels $split"; exit 2;; esac
preset=${PRESET:-paper} results=${RESULTS_DIR:-build/paper_cell_results} out=${OUT:-build/paper_cell}
resume=${RESUME_DIR:-carry-resume}
mkdir -p "$out"
[ -f "carry/$dataset.tar.gz" ] || { echo "carry/$dataset.tar.gz is missing: see the top of $0"; exit 2; }
split_file="carry/labels/$dataset/${labels}_balanced_labels/$((10 + split)).txt"  # else lpnb draws a split of its own
[ -f "$split_file" ] || { echo "$split_file (the paper's split) is missing: see the top of $0"; exit 2; }
export PYTHONUNBUFFERED=1 LPNB_CACHE_DIR=${LPNB_CACHE_DIR:-$PWD/build/lpnb-cache} \
    TORCHINDUCTOR_CACHE_DIR=${TORCHINDUCTOR_CACHE_DIR:-$PWD/build/inductor-cache} \
    PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # lpnb from this tree: the GPU machine's python has it not installed
marker=$(mktemp)
trap 'rm -f "$marker"' EXIT
python3 -c 'import torch, sklearn, lpnb; print("torch", torch.__version__, "scikit-learn", sklearn.__version__,
    "on", torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU")' 2>&1 | tee -a "$out/log.txt" \
    || { echo "lpnb cannot be imported here (above)" | tee -a "$out/log.txt"; exit 2; }
# this cell's run id and its stage-1 run's (none for a stage-1 method)
read -r run base < <(python3 -c 'import sys; from lpnb.config import base_config, make_config, run_id
cfg = make_config(sys.argv[1], dataset=sys.argv[2], labels=int(sys.argv[3]), method=sys.argv[4], split=int(sys.argv[5]))
print(run_id(cfg), run_id(base_config(cfg)) if base_config(cfg) else "")' "$preset" "$dataset" "$labels" "$method" "$split") \
    || { echo "not a cell: $*" | tee -a "$out/log.txt"; exit 2; }
wall_file="$results/paper_cell_wall/$run"  # "seconds since" of the calls that trained it so far
mkdir -p "$(dirname "$wall_file")"
if [ -d "$resume" ]; then  # a run stopped on another machine: its checkpoint and records, where this one has none
    python3 benchmarks/run_state.py restore "$resume" "$results" $run $base 2>&1 | tee -a "$out/log.txt"
    [ "${PIPESTATUS[0]}" = 0 ] || exit 2
    [ -f "$resume/$run.wall" ] && [ ! -f "$wall_file" ] && cp "$resume/$run.wall" "$wall_file"
    rm -rf "$resume"  # restored; left on a warm machine (git-ignored, kept), it would stop the next cell's restore
else
    echo "no $resume/: nothing to restore (a run stopped on another machine starts over)" | tee -a "$out/log.txt"
fi
read -r wall_before since < <(cat "$wall_file" 2>/dev/null || echo "0 $start")
wall_before=${wall_before:-0} since=${since:-$start}  # an empty or older wall file: counted from this call
# lpnb gets what is left of MINUTES after the checks above ($SECONDS: since this script started), less 15 s for its
# imports (its clock starts after them); an epoch that overruns it is stopped 30 s past MINUTES (SIGTERM: lpnb keeps
# its checkpointed epochs), so that the checkpoint is still sent back below before a job limit of MINUTES * 60 + 60 s
read -r left deadline < <(python3 -c 'import sys; left = float(sys.argv[1]) * 60 - int(sys.argv[2])
print(f"{(left - 15) / 60:.3f}", round(left + 30))' "$minutes" "$SECONDS") \
    || { echo "MINUTES is a number, e.g. 8.5; got $minutes" | tee -a "$out/log.txt"; exit 2; }
timeout --kill-after=15 "$deadline" python3 -m lpnb.cli run --preset "$preset" --dataset "$dataset" \
    --labels "$labels" --method "$method" --split "$split" --data-root carry --results-dir "$results" \
    --time-limit "$left" 2>&1 | tee -a "$out/log.txt"
status=${PIPESTATUS[0]}
wall=$(python3 -c "import sys; print(float(sys.argv[1]) + $(date +%s.%N) - $start)" "$wall_before")
if [ "$status" = 0 ]; then rm -f "$wall_file"; else echo "$wall $since" > "$wall_file"; fi  # kept until it is done
record="$results/runs/$run/record.json"
if [ "$status" = 0 ] && [ "$record" -nt "$marker" ]; then
    python3 benchmarks/time_split.py "$record" --wall "$wall" --since "$since" 2>&1 | tee -a "$out/log.txt"
fi
for id in $run $base; do  # this cell's records only (not one being retrained): a job brings back few files (8)
    [ -f "$results/runs/$id/record.json" ] && ! [ -f "$results/runs/$id/.retraining" -a \
        -f "$results/runs/$id/checkpoint.pt" ] &&
        cp "$results/runs/$id/record.json" "$out/$id.json"
done
if [ "$status" != 0 ]; then  # what continuing on a fresh machine needs: the checkpoint (2-3 pieces) and wall-clock
    python3 benchmarks/run_state.py send "$results" "$out" $run $base 2>&1 | tee -a "$out/log.txt"
    [ "${PIPESTATUS[0]}" = 0 ] || echo "the checkpoint was NOT sent back (above)" | tee -a "$out/log.txt"
    cp "$wall_file" "$out/$run.wall"
fi
echo "exit status $status" | tee -a "$out/log.txt"
exit "$status"
