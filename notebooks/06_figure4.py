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
# # Figure 4: pseudo-label accuracy during training
#
# Regenerates Figure 4 of Iscen et al. (CVPR 2019): the accuracy of the pseudo-labels on the
# unlabeled CIFAR-10 images at every epoch of stage 2, from diffusion (eq. 7) and from the
# network's own predictions (eq. 1) on the same descriptor pass. Both come from the record
# of our method's run with 500 labels by default (the run Table 1 also uses; `labels`). Writes
# `figures/figure4.{pdf,png}` (other parameters: the folder it prints).
#
# The committed figure is drawn from the run at the paper's full protocol once it is recorded,
# as the paper's is, and from the `cpu` preset's run until then: the line printed above the
# figure names the run, its preset, split, hardware and data.

# %% tags=["parameters"]
labels = 500
split = 0
figures_dir = None   # None: figures/ at the defaults (preset None too), else build/<preset>/figures/<cells>
preset = None        # None: the preset of the committed results (cpu); paper | cpu | smoke | auto (paper on a GPU)
data_root = None     # None: $LPNB_DATA_ROOT, else <repo>/data or <repo>/../shared/data (CIFAR: JPEG q95 folders)
results_dir = None   # None: $LPNB_RESULTS_DIR, else the repository's results/ (smoke: a cache folder); runs reused
device = "auto"      # auto | cpu | cuda
train = None         # None: train the run if missing, unless at the paper preset without CUDA; False: never

# %%
from lpnb.notebook import figure_dir, figure_run, notebook_settings
from lpnb.plots import plot_figure4, save_figure
from lpnb.tables import provenance

settings = notebook_settings(preset, datasets="cifar10", results_dir=results_dir, figures_dir=figures_dir,
                             data_root=data_root, labels=labels, train=train)
record = figure_run(settings, labels, split, device)
print(provenance([record]))
fig = plot_figure4(record)
save_figure(fig, "figure4", figure_dir(settings, "06_figure4", labels=labels, split=split))
fig

# %% [markdown]
# In the paper, "diffusion predictions are consistently better than network predictions" on the
# unlabeled images throughout stage 2.

# %% [markdown]
# ## What we see
#
# The accuracy of both kinds of pseudo-label at every stage-2 epoch of the run, from its history.

# %%
from lpnb.tables import pseudo_label_accuracy

accuracy, finding = pseudo_label_accuracy(record)
print(finding)
accuracy
