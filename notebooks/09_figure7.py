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
# # Figure 7: confident mistakes
#
# Regenerates Figure 7 of Iscen et al. (CVPR 2019): the unlabeled CIFAR-10 images (500
# labels by default) whose pseudo-label is wrong yet has the highest weight $\omega_i$, at the last
# epoch of stage 2, with the predicted class and $\omega_i$ under each. From the record of
# our method's run. Writes `figures/figure7.{pdf,png}`
# (other parameters: the folder it prints).
#
# The committed figure is drawn from the run at the paper's full protocol once it is recorded,
# as the paper's is, and from the `cpu` preset's run until then: the line printed above the
# figure names the run, its preset, split, hardware and data. Where no CIFAR-10 copy is found,
# torchvision's is downloaded (`download`) and the caption names it: the same images in the
# same order, without our copy's JPEG compression.

# %% tags=["parameters"]
labels = 500
split = 0
figures_dir = None   # None: figures/ at the defaults (preset None too), else build/<preset>/figures/<cells>
n_images = 12
preset = None        # None: the preset of the committed results (cpu); paper | cpu | smoke | auto (paper on a GPU)
data_root = None     # None: $LPNB_DATA_ROOT, else <repo>/data or <repo>/../shared/data (CIFAR: JPEG q95 folders)
download = True      # no CIFAR-10 copy found: fetch torchvision's (170 MB) into the data root
results_dir = None   # None: $LPNB_RESULTS_DIR, else the repository's results/ (smoke: a cache folder); runs reused
device = "auto"      # auto | cpu | cuda
train = None         # None: train the run if missing, unless at the paper preset without CUDA; False: never

# %%
from lpnb.data import load_dataset
from lpnb.notebook import figure_dir, figure_run, notebook_settings
from lpnb.plots import plot_figure7, save_figure
from lpnb.tables import provenance

settings = notebook_settings(preset, datasets="cifar10", results_dir=results_dir, figures_dir=figures_dir,
                             data_root=data_root, labels=labels, train=train)
record = figure_run(settings, labels, split, device)
print(provenance([record]))
fig = plot_figure7(record, load_dataset("cifar10", settings.data_root, download=download), n_images)
save_figure(fig, "figure7", figure_dir(settings, "09_figure7", labels=labels, split=split, n_images=n_images))
fig

# %% [markdown]
# In the paper "most of the incorrect labels come from trucks labeled as automobiles or birds
# labeled as frogs".

# %% [markdown]
# ## What we see
#
# The recorded confident mistakes of the run (the wrong pseudo-labels with the highest
# $\omega$ at its last epoch), counted by true class and pseudo-label.

# %%
from lpnb.tables import confusions

counts, finding = confusions(record)
print(finding)
counts
