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
# # Figure 6: error versus number of labels on CIFAR-10
#
# Regenerates Figure 6 of Iscen et al. (CVPR 2019) from the runs of Table 2 (the same
# records): the test error of each method against the number of labeled images, with
# the paper's numbers as dashed lines. Writes
# `figures/figure6.{pdf,png}` (other parameters: the folder it prints).

# %% tags=["parameters"]
labels = [500, 1000, 2000, 4000]
methods = ["supervised", "network", "lp", "mt", "mt+lp"]
splits = None        # 3: splits 0-2; "0,2": those split numbers; None: 10 (paper preset), 3 (cpu), 1 (smoke)
figures_dir = None   # None: figures/ at the defaults (preset None too), else build/<preset>/figures/<cells>
preset = None        # None: the preset of the committed results (cpu); paper | cpu | smoke | auto (paper on a GPU)
data_root = None     # None: $LPNB_DATA_ROOT, else <repo>/data or <repo>/../shared/data (CIFAR: JPEG q95 folders)
results_dir = None   # None: $LPNB_RESULTS_DIR, else the repository's results/ (smoke: a cache folder); runs reused
device = "auto"      # auto | cpu | cuda
train = None         # None: train missing runs, unless at the paper preset without CUDA; False: only show
                     # the runs already recorded (and list the missing ones)
workers = 1          # runs trained at a time, each in its own process (spread over the GPUs): lpnb sweep

# %%
import pandas as pd

from lpnb.experiment import REPO
from lpnb.notebook import figure_dir, notebook_settings
from lpnb.plots import plot_figure6, save_figure
from lpnb.tables import provenance, recorded, run_rows

settings = notebook_settings(preset, table=2, datasets="cifar10", results_dir=results_dir, figures_dir=figures_dir,
                             data_root=data_root, splits=splits, labels=labels, methods=methods, train=train,
                             workers=workers)
rows = [dict(method=m) for m in settings.methods]
records = run_rows(rows, settings.labels, settings.splits, dataset="cifar10", preset=settings.preset,
                   data_root=settings.data_root, results_dir=settings.results_dir, device=device, train=settings.train,
                   workers=settings.workers)
print(provenance(records))
full_records = []
if settings.preset != "paper":  # the cells already run at the paper's full protocol, as squares
    full_records, _ = recorded(rows, settings.labels, settings.splits, dataset="cifar10", preset="paper",
                               results_dir=settings.results_dir)
    print("full protocol:", provenance(full_records))
fig = plot_figure6(records, pd.read_csv(REPO / "results/paper/table2.csv"), full_records, settings.methods)
save_figure(fig, "figure6", figure_dir(settings, "08_figure6", labels=labels, methods=methods, splits=splits))
fig

# %% [markdown]
# In the paper the gain of diffusion over the other pseudo-labelling methods grows as the
# number of labels shrinks. Squares on dotted lines are the cells we have run so far at the
# paper's full protocol (all 50,000 images, full network and schedule, on a GPU), when the
# solid lines are a smaller preset's.

# %% [markdown]
# ## What we see
#
# Ours against supervised training and against network pseudo-labels (the latter split by
# split; negative: ours has the lower error), from the records of the solid lines.

# %%
from lpnb.tables import compare

for baseline in [m for m in ("supervised", "network") if {"lp", m} <= set(settings.methods)]:  # those selected
    print(compare(records, "lp", baseline, REPO / "results/paper/table2.csv")[1])
compare(records, "lp", "network")[0]
