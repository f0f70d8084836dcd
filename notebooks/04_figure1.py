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
# # Figure 1: label propagation on a toy example
#
# Regenerates Figure 1 of Iscen et al., *Label Propagation for Deep Semi-supervised
# Learning* (CVPR 2019) on toy data of our own (the paper does not give its own): 300
# points on three interleaved spiral arms, a few of them labeled. Labels are propagated over
# a k-NN graph of the points (eq. 10) and every unlabeled point gets a pseudo-label and a
# certainty weight $\omega_i$ (eq. 11).
# Writes `figures/figure1.pdf` and `figures/figure1.png` (other parameters: the folder it prints).

# %% tags=["parameters"]
seed = 0            # seeds the toy data and the choice of labeled points
n_points = 300
n_classes = 3
noise = 0.05        # std of the Gaussian noise around each spiral arm
n_labeled = 3       # labeled points per class
k = 10              # neighbours per point in the Euclidean k-NN graph
sigma = None        # edge weights exp(-d^2 / sigma^2); None: propagate's default
alpha = 0.99        # diffusion parameter of eq. (10)
figures_dir = None  # None: figures/; build/cpu/figures/<values>/ for other values; SMOKE_TEST: smoke folder
# The points are not unit descriptors, so the graph is graph="gaussian": k, sigma and
# alpha apply; gamma (the exponent of the inner-product graph, graph="dot") does not.

# %%
from lpnb.diffusion import propagate
from lpnb.notebook import figure_dir, notebook_settings
from lpnb.plots import plot_figure1, save_figure
from lpnb.toy import make_toy, pick_labeled, unlabeled_accuracy, where_least_certain

settings = notebook_settings(figures_dir=figures_dir)

points, labels = make_toy(n_points, n_classes, noise=noise, seed=seed)
labeled = pick_labeled(labels, n_labeled, seed=seed)
result = propagate(points, labels, labeled, graph="gaussian", k=k, sigma=sigma, alpha=alpha)
print(f"pseudo-labels correct on {unlabeled_accuracy(result, labels, labeled):.1%} of the {(~labeled).sum()} "
      "unlabeled points")

# %%
fig = plot_figure1(points, labels, labeled, result)
save_figure(fig, "figure1", figure_dir(settings, "04_figure1", seed=seed, n_points=n_points, n_classes=n_classes,
                                         noise=noise, n_labeled=n_labeled, k=k, sigma=sigma, alpha=alpha))
fig

# %% [markdown]
# Top: the labeled points (triangles) in their class colour, the unlabeled ones in gray.
# Bottom: the pseudo-labels found by diffusion; the area of each circle is proportional
# to $\omega_i = 1 - H(\hat z_i) / \log c$, normalised by its maximum. Propagation
# follows the arms rather than Euclidean proximity: the line printed above says how many of
# the unlabeled points it labels correctly from `n_labeled` labels per class.
#
# ## What we see
#
# Where the least certain pseudo-labels (the smallest weights in the loss, eq. 12) lie: the
# mean distance from the centre, where the arms come close, of the tenth of the unlabeled
# points with the smallest $\omega_i$, against the others (with other seeds they may lie
# at the arms' outer ends instead).

# %%
print(where_least_certain(points, labeled, result, share=0.1)[2])
