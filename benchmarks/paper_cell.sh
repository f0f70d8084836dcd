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
# again at once continues a run stopped at its time limit. Every record there, and the log, are copied to $OUT after
# each job (a record as <run-id>.json); copy them into results/runs/<run-id>/record.json here. Exit status: lpnb's
# (0: the cell is recorded, 3: stopped at the time limit, run it again). Once the cell is recorded, the log ends with
# where its time went (benchmarks/time_split.py, with the wall-clock of every call of this script that trained it).
# The decoded data and torch.compile's caches are kept in build/ too. PRESET and RESULTS_DIR (default paper and
# build/paper_cell_results) let the script be tried on a CPU (OUT: where the log goes):
#   PRESET=smoke RESULTS_DIR=/tmp/r OUT=/tmp/o benchmarks/paper_cell.sh cifar10 4000 lp 0
set -uo pipefail
if [ $# -lt 4 ]; then sed -n 2,18p "$0"; exit 2; fi
dataset=$1 labels=$2 method=$3 split=$4 minutes=${5:-8.5}
preset=${PRESET:-paper} results=${RESULTS_DIR:-build/paper_cell_results} out=${OUT:-build/paper_cell}
mkdir -p "$out"
[ -f "carry/$dataset.tar.gz" ] || { echo "carry/$dataset.tar.gz is missing: see the top of $0"; exit 2; }
export PYTHONUNBUFFERED=1 LPNB_CACHE_DIR=${LPNB_CACHE_DIR:-$PWD/build/lpnb-cache} \
    TORCHINDUCTOR_CACHE_DIR=${TORCHINDUCTOR_CACHE_DIR:-$PWD/build/inductor-cache}
marker=$(mktemp) printed=$(mktemp)
python3 -c 'import torch, sklearn, lpnb; print("torch", torch.__version__, "cuda", torch.cuda.is_available(),
    "scikit-learn", sklearn.__version__)' 2>&1 | tee -a "$out/log.txt"
start=$(date +%s.%N)
wall_file="build/paper_cell_wall/${preset}_${dataset}_${labels}_${method}_${split}"  # "seconds since" of the calls so far
mkdir -p "$(dirname "$wall_file")"
read -r wall_before since < <(cat "$wall_file" 2>/dev/null || echo "0 $start")
wall_before=${wall_before:-0} since=${since:-$start}  # an empty or older wall file: counted from this call
python3 -m lpnb.cli run --preset "$preset" --dataset "$dataset" --labels "$labels" --method "$method" \
    --split "$split" --data-root carry --results-dir "$results" --time-limit "$minutes" 2>&1 | tee -a "$out/log.txt" "$printed"
status=${PIPESTATUS[0]}
wall=$(python3 -c "import sys; print(float(sys.argv[1]) + $(date +%s.%N) - $start)" "$wall_before")
if [ "$status" = 3 ]; then echo "$wall $since" > "$wall_file"; else rm -f "$wall_file"; fi  # kept while it continues
record="$results/runs/$(tail -1 "$printed" | cut -d: -f1)/record.json"
if [ "$status" = 0 ] && [ "$record" -nt "$marker" ]; then
    python3 benchmarks/time_split.py "$record" --wall "$wall" --since "$since" 2>&1 | tee -a "$out/log.txt"
fi
find "$results/runs" -name record.json | while read -r record; do
    cp "$record" "$out/$(basename "$(dirname "$record")").json"
done
echo "exit status $status" | tee -a "$out/log.txt"
exit "$status"
