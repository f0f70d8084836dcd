# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: tags,-papermill,-execution
#     formats: ipynb,py:percent
#     notebook_metadata_filter: -jupytext.text_representation
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Table 3: CIFAR-100 and Mini-ImageNet
#
# Regenerates Table 3 of Iscen et al. (CVPR 2019): 4000 and 10000 labels on CIFAR-100
# (13-layer network) and Mini-ImageNet (ResNet-18, top-1 and top-5 error). Mini-ImageNet
# must be supplied by the user (class folders + Ravi & Larochelle csv files under
# `<data_root>/miniimagenet/`); where it is missing its columns show the paper's numbers only.
# Writes `results/table3.csv` (other parameters: the folder it prints).
#
# The committed outputs are those of the `cpu` preset, computed from its run records under
# `results/runs/`; the lines printed below name the runs, preset, splits, hardware and data.

# %% tags=["parameters"]
datasets = ["cifar100", "miniimagenet"]
labels = [4000, 10000]
methods = ["supervised", "lp", "mt", "mt+lp"]
splits = None        # 3: splits 0-2; "0,2": those split numbers; None: 3 (paper preset), 3 (cpu), 1 (smoke)
preset = None        # None: the preset of the committed results (cpu); paper | cpu | smoke | auto (paper on a GPU)
data_root = None     # None: $LPNB_DATA_ROOT, else <repo>/data or <repo>/../shared/data (CIFAR: JPEG q95 folders)
results_dir = None   # None: $LPNB_RESULTS_DIR, else the repository's results/ (smoke: a cache folder); runs reused
device = "auto"      # auto | cpu | cuda
train = None         # None: train missing runs, unless at the paper preset without CUDA; False: only show
                     # the runs already recorded (and list the missing ones)
workers = 1          # runs trained at a time, each in its own process (spread over the GPUs): lpnb sweep

# %%
from lpnb.experiment import REPO
from lpnb.notebook import notebook_settings
from lpnb.tables import provenance, recorded, run_rows, side_by_side, summarize, write_table

settings = notebook_settings(preset, table=3, results_dir=results_dir, data_root=data_root, splits=splits,
                             labels=labels, methods=methods, datasets=datasets, train=train, workers=workers)
rows = [dict(method=m) for m in settings.methods]
records = []
for dataset in settings.datasets:
    records += run_rows(rows, settings.labels, settings.splits, dataset=dataset, preset=settings.preset,
                        data_root=settings.data_root, results_dir=settings.results_dir, device=device,
                        train=settings.train, workers=settings.workers)
paper_csv = REPO / "results/paper/table3.csv"
table = summarize(records, paper_csv)
write_table(table, settings.tables_dir / "table3.csv", rows, settings.columns, settings.preset)
print(provenance(records))
side_by_side(table, rows, settings.columns, paper_csv)

# %% [markdown]
# Our error rate (%), mean ± std over the splits run, with the paper's number in
# parentheses. In the paper, ours improves on supervised training on both datasets, and
# combined with Mean Teacher it is best on CIFAR-100 and with 10k labels on Mini-ImageNet.

# %% [markdown]
# ## The cells run at the paper's full protocol so far
#
# The table above is of the preset that the lines above it name. Below are the same cells under
# the `paper` preset (all 50,000 training images, the full network and schedule, on a GPU;
# "not run (paper's number)" where none is recorded yet), to be read against the paper's
# numbers: over the splits named, on our JPEG copy, with the GPU's bf16 path. With
# `preset="paper"` it repeats the table above.

# %%
paper_records, not_run = [], []
for dataset in settings.datasets:
    found, missing = recorded(rows, settings.labels, settings.splits, dataset=dataset, preset="paper",
                              results_dir=settings.results_dir)
    paper_records, not_run = paper_records + found, not_run + missing
print(provenance(paper_records), f"{len(not_run)} paper-scale runs of this table still to do.")
side_by_side(summarize(paper_records, paper_csv), rows, settings.columns, paper_csv)

# %% [markdown]
# ## What we see
#
# Computed from the records of the first table: the error of every split, the differences
# that the paper's claims are about (negative: the first method has the lower error), the
# accuracy of our pseudo-labels and the network's at the first and last stage-2 epoch, the
# labeled images each method trains on (an epoch of Mean Teacher or of stage 2 is one pass over
# the unlabeled images, B_L labeled images a step; one of supervised training a pass over the
# labeled images), and the run times.

# %%
from lpnb.tables import compare, labeled_exposure, per_split, pseudo_label_progress, run_times

claims = [("lp", "supervised"), ("mt", "supervised"), ("mt+lp", "mt")]
for row, baseline in [pair for pair in claims if set(pair) <= set(settings.methods)]:  # the methods selected
    print(compare(records, row, baseline, paper_csv)[1])
per_split(records)

# %%
pseudo_label_progress(records)

# %%
exposure, finding = labeled_exposure(records)
print(finding)
exposure

# %%
run_times(records + paper_records)
