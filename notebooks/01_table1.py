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
# # Table 1: ablation on CIFAR-10 with 500 labels
#
# Regenerates Table 1 of Iscen et al. (CVPR 2019): the test error of the 13-layer network
# trained with pseudo-labels from diffusion (eq. 7) with and without the per-image weights
# $\omega_i$ (eq. 11) and the per-class weights $\zeta_j$, and with pseudo-labels from GTG
# or from the network itself (eq. 1), all with both weights. All six rows share one
# supervised stage 1 per split. Writes `results/table1.csv` (other parameters: the folder
# it prints).
#
# The committed outputs are those of the `cpu` preset, computed from its run records under
# `results/runs/`; the lines printed below name the runs, preset, splits, hardware and data.

# %% tags=["parameters"]
labels = 500
splits = None        # 3: splits 0-2; "0,2": those split numbers; None: 10 (paper preset), 3 (cpu), 1 (smoke)
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

settings = notebook_settings(preset, table=1, datasets="cifar10", results_dir=results_dir, data_root=data_root,
                             splits=splits, labels=labels, train=train, workers=workers)
rows = [dict(method="lp", use_omega=False, use_zeta=False), dict(method="lp", use_omega=False, use_zeta=True),
        dict(method="lp", use_omega=True, use_zeta=False), dict(method="lp", use_omega=True, use_zeta=True),
        dict(method="gtg"), dict(method="network")]
records = run_rows(rows, settings.labels, settings.splits, dataset="cifar10", preset=settings.preset,
                   data_root=settings.data_root, results_dir=settings.results_dir, device=device, train=settings.train,
                   workers=settings.workers)
paper_csv = REPO / "results/paper/table1.csv"
table = summarize(records, paper_csv)
write_table(table, settings.tables_dir / "table1.csv", rows, settings.columns, settings.preset)
print(provenance(records))
side_by_side(table, rows, settings.columns, paper_csv)

# %% [markdown]
# Each cell is our error rate (%), mean ± std over the splits that were run, with the
# paper's number in parentheses. In the paper both weights help, $\omega$ more than
# $\zeta$, and diffusion gives better pseudo-labels than GTG or the network's own
# predictions.

# %% [markdown]
# ## The cells run at the paper's full protocol so far
#
# The same cells under the `paper` preset (all 50,000 training images, the full network and
# schedule, on a GPU; "not run (paper's number)" where none is recorded yet), to be read
# against the paper's numbers: over the splits named, on our JPEG copy, with the GPU's bf16
# path. With `preset="paper"` it repeats the table above.

# %%
paper_records, not_run = recorded(rows, settings.labels, settings.splits, dataset="cifar10", preset="paper",
                                  results_dir=settings.results_dir)
print(provenance(paper_records), f"{len(not_run)} paper-scale runs of this table still to do.")
side_by_side(summarize(paper_records, paper_csv), rows, settings.columns, paper_csv)

# %% [markdown]
# ## What we see
#
# Computed from the records of the first table: the error of every split, our full method against each
# other row on the splits both ran (negative: ours has the lower error), the accuracy of the
# diffusion and network pseudo-labels at the first and last stage-2 epoch, and the run times.

# %%
from lpnb.tables import compare, per_split, pseudo_label_progress, run_times

for other in (dict(method="lp", use_omega=False, use_zeta=False), dict(method="lp", use_omega=False),
              dict(method="lp", use_zeta=False), "gtg", "network"):
    print(compare(records, "lp", other, paper_csv)[1])
per_split(records)

# %%
pseudo_label_progress(records)

# %%
run_times(records)
