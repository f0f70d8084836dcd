"""lpnb: Label Propagation for Deep Semi-supervised Learning (Iscen, Tolias, Avrithis, Chum, CVPR 2019).

    lpnb.propagate(features, labels, labeled)      transductive label propagation (eqs. 5-11)
    lpnb.LabelPropagation().fit(X, y)              the same as a scikit-learn estimator
    lpnb.run(lpnb.make_config("cpu", labels=500))  one deep SSL experiment (Algorithm 1) -> record
"""
from lpnb.config import Config, make_config
from lpnb.diffusion import LabelPropagation, PseudoLabels, gtg_pseudo_labels, network_pseudo_labels, propagate
from lpnb.experiment import run

__all__ = ["propagate", "PseudoLabels", "network_pseudo_labels", "gtg_pseudo_labels", "LabelPropagation",
           "Config", "make_config", "run"]
