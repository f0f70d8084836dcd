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
# # Figure 3: label propagation with different numbers of labeled points
#
# Regenerates Figure 3 of Iscen et al., *Label Propagation for Deep Semi-supervised
# Learning* (CVPR 2019): the toy data of Figure 1 (`04_figure1`), propagated once per
# number of labeled points per class. Writes
# `figures/figure3.pdf` and `figures/figure3.png` (other parameters: the folder it prints).

# %% tags=["parameters"]
seed = 0                      # seeds the toy data and the choice of labeled points
n_points = 300
n_classes = 3
noise = 0.05                  # std of the Gaussian noise around each spiral arm
n_labeled = [1, 2, 5, 10]     # labeled points per class, one panel each
k = 10                        # neighbours per point in the Euclidean k-NN graph
sigma = None                  # edge weights exp(-d^2 / sigma^2); None: propagate's default
alpha = 0.99                  # diffusion parameter of eq. (10)
figures_dir = None            # None: figures/; build/cpu/figures/<values>/ for other values; SMOKE_TEST: smoke folder
# graph="gaussian": k, sigma and alpha apply; gamma (graph="dot" only) does not.

# %%
from lpnb.diffusion import propagate
from lpnb.notebook import figure_dir, notebook_settings, positive_ints
from lpnb.plots import plot_figure3, save_figure
from lpnb.toy import make_toy, pick_labeled, unlabeled_accuracy

settings = notebook_settings(figures_dir=figures_dir)

points, labels = make_toy(n_points, n_classes, noise=noise, seed=seed)
per_class = positive_ints(n_labeled, "n_labeled")  # `-p n_labeled 1,5` too
masks = [pick_labeled(labels, m, seed=seed) for m in per_class]
results = [propagate(points, labels, mask, graph="gaussian", k=k, sigma=sigma, alpha=alpha) for mask in masks]

# %%
fig = plot_figure3(points, labels, masks, results)
save_figure(fig, "figure3", figure_dir(settings, "05_figure3", seed=seed, n_points=n_points, n_classes=n_classes,
                                         noise=noise, n_labeled=per_class, k=k, sigma=sigma, alpha=alpha))
fig

# %% [markdown]
# The labeled points of each panel include those of the panels to its left (same seed).
# Triangles are labeled points; circles are coloured by their pseudo-label, with area
# proportional to the weight $\omega_i$ (eq. 11). As $\omega_i$ is divided by its maximum,
# the sizes show relative certainty within a panel.
# With a single label per class a label must travel along a whole arm; for some seeds (try
# `seed = 2`) part of an arm takes a wrong pseudo-label until a few more points per class are
# labeled.
#
# ## What we see
#
# The accuracy of the pseudo-labels on the unlabeled points of each panel.

# %%
for m, mask, res in zip(per_class, masks, results):
    print(f"{m:2d} labeled per class: {unlabeled_accuracy(res, labels, mask):.1%} of the unlabeled points "
          "pseudo-labeled correctly")
