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
# # Figure 5: distribution of the weights ω
#
# Regenerates Figure 5 of Iscen et al. (CVPR 2019): histograms of the certainty weights
# $\omega_i$ (eq. 11) of the unlabeled CIFAR-10 images (500 labels by default) at the first epoch of
# stage 2 and at its middle (epoch 90 of 180 in the paper), split by whether the pseudo-label
# is correct (blue) or not (red, stacked on the blue). From the record of our method's run. Writes
# `figures/figure5.{pdf,png}` (other parameters: the folder it prints).
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
from lpnb.plots import plot_figure5, save_figure
from lpnb.tables import provenance

settings = notebook_settings(preset, datasets="cifar10", results_dir=results_dir, figures_dir=figures_dir,
                             data_root=data_root, labels=labels, train=train)
record = figure_run(settings, labels, split, device)
print(provenance([record]))
fig = plot_figure5(record)
save_figure(fig, "figure5", figure_dir(settings, "07_figure5", labels=labels, split=split))
fig

# %% [markdown]
# In the paper $\omega$ estimates how certain a pseudo-label is: most pseudo-labels are wrong
# at the start and more are right as training goes on, and the weights keep the wrong ones
# from dominating the loss (sec. 5.3).

# %% [markdown]
# ## What we see
#
# The share of correct pseudo-labels among the unlabeled images with a high weight
# ($\omega \geq 0.5$) and among the others, at each epoch drawn above, from the histograms.

# %%
from lpnb.tables import certainty_split

shares, finding = certainty_split(record)
print(finding)
shares
