"""LabelPropagation as a scikit-learn estimator: scikit-learn's own checks, clone / Pipeline /
GridSearchCV / cross_val_score, and next to LabelSpreading on the digits data set."""
import re
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import Normalizer
from sklearn.semi_supervised import LabelSpreading
from sklearn.utils.estimator_checks import parametrize_with_checks

from lpnb.diffusion import LabelPropagation, propagate


@pytest.fixture(scope="module")
def digits():
    return load_digits(return_X_y=True)


def hide_labels(y, fraction, seed):
    labeled = np.random.default_rng(seed).random(len(y)) < fraction
    return np.where(labeled, y, -1), labeled


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_transductive_accuracy_vs_label_spreading(digits, seed):
    X, y = digits
    y_train, labeled = hide_labels(y, 0.1, seed)
    ours = LabelPropagation(k=10).fit(X, y_train)
    theirs = LabelSpreading(kernel="knn", n_neighbors=10).fit(X, y_train)
    acc_ours = (ours.transduction_[~labeled] == y[~labeled]).mean()
    acc_theirs = (theirs.transduction_[~labeled] == y[~labeled]).mean()
    assert acc_ours >= acc_theirs - 0.02, (acc_ours, acc_theirs)
    assert acc_ours > 0.9
    np.testing.assert_array_equal(ours.transduction_[labeled], y[labeled])


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_paper_setting_vs_label_spreading_same_setting(digits):
    # k = 50, alpha = 0.99 for both: eq. (9)'s weighted graph beats the binary k-NN kernel
    X, y = digits
    y_train, labeled = hide_labels(y, 0.1, 3)
    ours = LabelPropagation().fit(X, y_train)
    theirs = LabelSpreading(kernel="knn", n_neighbors=50, alpha=0.99).fit(X, y_train)
    assert (ours.transduction_ == y).mean() >= (theirs.transduction_ == y).mean() - 0.02


def test_fitted_attributes(digits):
    X, y = digits
    y_train, labeled = hide_labels(y, 0.1, 4)
    model = LabelPropagation(k=10).fit(X, y_train)
    np.testing.assert_array_equal(model.classes_, np.arange(10))
    assert model.label_distributions_.shape == (len(X), 10)
    np.testing.assert_allclose(model.label_distributions_.sum(1), 1, atol=1e-5)
    np.testing.assert_array_equal(model.transduction_[~labeled], model.label_distributions_.argmax(1)[~labeled])
    assert 0 < model.n_iter_ <= 20


def test_non_contiguous_labels(digits):
    X, y = digits
    keep = np.isin(y, [3, 7, 9])
    X, y = X[keep], y[keep]
    y_train, labeled = hide_labels(y, 0.1, 5)
    model = LabelPropagation(k=10).fit(X, y_train)
    np.testing.assert_array_equal(model.classes_, [3, 7, 9])
    assert set(np.unique(model.transduction_)) <= {3, 7, 9}
    np.testing.assert_array_equal(model.transduction_[labeled], y[labeled])
    assert (model.transduction_ == y).mean() > 0.95
    assert set(np.unique(model.predict(X[:50]))) <= {3, 7, 9}
    assert model.predict_proba(X[:5]).shape == (5, 3)


def test_predict_held_out(digits):
    X, y = digits
    rng = np.random.default_rng(6)
    order = rng.permutation(len(X))
    train, test = order[:1400], order[1400:]
    y_train, _ = hide_labels(y[train], 0.15, 7)
    ours = LabelPropagation(k=10).fit(X[train], y_train)
    theirs = LabelSpreading(kernel="knn", n_neighbors=10).fit(X[train], y_train)
    proba = ours.predict_proba(X[test])
    np.testing.assert_allclose(proba.sum(1), 1, atol=1e-5)
    np.testing.assert_array_equal(ours.predict(X[test]), ours.classes_[proba.argmax(1)])
    assert ours.score(X[test], y[test]) >= theirs.score(X[test], y[test]) - 0.02
    assert ours.score(X[test], y[test]) > 0.9


def test_predict_by_hand():
    # two training points per class on the unit circle; a query next to class 5's points
    X = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]], float)
    y = np.array([5, 5, 8, 8])
    model = LabelPropagation(k=2, gamma=1.0).fit(X, y)
    np.testing.assert_array_equal(model.predict([[1.0, 0.05], [0.05, 1.0]]), [5, 8])
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    for k, query, gamma in ((2, [1.0, 0.05], 1.0), (3, [1.0, 0.6], 1.0), (3, [1.0, 0.6], 3.0)):
        # vote weights [v . v_j]_+^gamma over the k nearest training points (k = 2: both of class 5)
        model = LabelPropagation(k=k, gamma=gamma).fit(X, y)
        p = model.predict_proba([query])[0]
        F = model.label_distributions_
        w = (Xn @ (np.array(query) / np.linalg.norm(query))) ** gamma
        w[np.argsort(-w)[k:]] = 0
        np.testing.assert_allclose(p, (w[:, None] * F).sum(0) / (w[:, None] * F).sum(), atol=1e-5)


def test_predict_by_hand_with_gaussian_weights():
    X = np.array([[0, 0], [1, 0], [0, 3], [4, 4], [5, 4], [4, 6]], float) * 10  # not unit scale: sigma's units
    y = np.array([0, -1, -1, 1, 1, -1])
    model = LabelPropagation(k=3, graph="gaussian", sigma=15.0).fit(X, y)
    query = np.array([20.0, 10.0])
    d2 = ((X - query) ** 2).sum(1)
    near = np.argsort(d2)[:3]
    w = np.exp(-d2[near] / 15.0 ** 2)  # exp(-d^2 / sigma^2) over the 3 nearest training points
    F = model.label_distributions_
    np.testing.assert_allclose(model.predict_proba([query])[0], (w[:, None] * F[near]).sum(0) / (w @ F[near]).sum(),
                               rtol=1e-4)


def test_a_query_with_no_positive_similarity_gets_a_uniform_vote_whatever_the_training_order():
    X = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9], [0.2, 0.8]])
    y = np.array([0, -1, 1, -1, -1])
    for order in ([0, 1, 2, 3, 4], [2, 3, 4, 0, 1]):  # which neighbours tie at 0 depends on the order
        model = LabelPropagation(k=2).fit(X[order], y[order])
        np.testing.assert_allclose(model.predict_proba([[0.0, 0.0], [-1.0, -1.0]]), [[0.5, 0.5], [0.5, 0.5]])


def test_nan_or_none_for_the_unlabeled_points_says_to_use_minus_one():
    X = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]])
    for y in (np.array([0, np.nan, 1, np.nan]), np.array(["a", None, "b", None], dtype=object),
              pd.Series(["a", None, "b", None], dtype="string")):  # pandas' NA
        with pytest.raises(ValueError, match="y holds NaN or None: mark the unlabeled points with -1"):
            LabelPropagation(k=2).fit(X, y)


def test_gaussian_graph_estimator():
    rng = np.random.default_rng(8)
    X = np.concatenate([rng.normal(0, 0.3, (50, 2)), rng.normal(3, 0.3, (50, 2))])
    y = np.repeat([0, 1], 50)
    y_train = np.full(100, -1)
    y_train[[0, 50]] = [0, 1]
    model = LabelPropagation(k=8, graph="gaussian").fit(X, y_train)
    assert (model.transduction_ == y).all() and model.sigma_ > 0
    np.testing.assert_array_equal(model.predict([[0.1, -0.1], [2.9, 3.2]]), [0, 1])
    # the default sigma is the mean distance to the 8 nearest neighbours, in X's units
    d = np.sort(np.linalg.norm(X[:, None] - X[None], axis=2), axis=1)[:, 1:9]
    assert model.sigma_ == pytest.approx(d.mean(), rel=1e-4)
    for far in (1e39, 1e300):  # finite, but their squared distances overflow float32 in the training points' frame
        with pytest.raises(ValueError, match="queries lie beyond float32's range relative to the training points"):
            model.predict([[far, 0.0]])


def test_gaussian_default_sigma_comes_from_the_graphs_own_search(monkeypatch):
    """One k-NN search in fit (the approximate one when asked), not another exact one just for sigma."""
    import lpnb.diffusion
    searches = []
    search = lpnb.diffusion.knn_search
    monkeypatch.setattr(lpnb.diffusion, "knn_search", lambda *a, **kw: searches.append(kw) or search(*a, **kw))
    X = np.random.default_rng(9).normal(size=(400, 3))
    LabelPropagation(k=10, graph="gaussian", knn="approx").fit(X, np.where(np.arange(400) < 40, np.arange(400) % 2, -1))
    assert [kw["approx"] for kw in searches] == [True]


def test_drop_in_for_label_spreading(digits):
    # the same code path, either estimator; clone() works through get_params (BaseEstimator)
    X, y = digits
    y_train, _ = hide_labels(y, 0.1, 9)
    for model in [LabelSpreading(kernel="knn", n_neighbors=10), LabelPropagation(k=10)]:
        fitted = clone(model).fit(X[:1000], y_train[:1000])
        assert fitted.score(X[1000:], y[1000:]) > 0.9
    model = LabelPropagation(k=7).set_params(alpha=0.9)
    assert clone(model).get_params()["alpha"] == 0.9 and clone(model).k == 7
    with pytest.raises(ValueError, match="Invalid parameter 'n_neighbors'"):
        model.set_params(n_neighbors=3)


def test_estimator_bad_input(digits):
    # scikit-learn's own validation (validate_data), with its messages
    X, y = digits
    with pytest.raises(ValueError, match="no labeled example"):
        LabelPropagation().fit(X, np.full(len(y), -1))
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        LabelPropagation().fit(X, y[:-1])
    Xnan = X.astype(float)
    Xnan[0, 0] = np.nan
    with pytest.raises(ValueError, match="Input X contains NaN"):
        LabelPropagation().fit(Xnan, y)
    with pytest.raises(ValueError, match="Unknown label type"):
        LabelPropagation().fit(X, y + 0.5)
    model = LabelPropagation(k=10).fit(X[:200], hide_labels(y[:200], 0.3, 0)[0])
    with pytest.raises(ValueError, match="X has 10 features, but LabelPropagation is expecting 64"):
        model.predict(X[:5, :10])


def test_predict_before_fit_raises_not_fitted():
    for method in ["predict", "predict_proba"]:
        with pytest.raises(NotFittedError):
            getattr(LabelPropagation(), method)(np.ones((3, 2)))


@pytest.mark.parametrize("name, value", [("k", 0), ("k", 2.5), ("k", True), ("max_iter", 0), ("max_iter", -1),
                                         ("gamma", 0), ("gamma", np.nan), ("alpha", 1.0), ("alpha", -0.5),
                                         ("sigma", 0.0), ("sigma", np.inf), ("graph", "rbf"), ("knn", "hnsw")])
@pytest.mark.parametrize("graph", ["dot", "gaussian"])
def test_fit_refuses_bad_setting(digits, graph, name, value):
    X, y = digits
    params = {"graph": graph, name: value}
    with pytest.raises(ValueError, match=f"^{name} must be"):
        LabelPropagation(**params).fit(X[:100], y[:100])


def test_attributes_are_propagates_result(digits):
    X, y = digits
    y_train, labeled = hide_labels(y, 0.1, 10)
    model = LabelPropagation(k=10, alpha=0.9).fit(X, y_train)
    res = propagate(X, np.where(labeled, y, 0), labeled, n_classes=10, k=10, alpha=0.9)
    np.testing.assert_array_equal(model.transduction_, res.pseudo_labels)
    np.testing.assert_array_equal(model.label_distributions_, res.scores)
    np.testing.assert_array_equal(model.certainty_, res.weights)
    assert model.n_iter_ == res.n_iter and model.n_features_in_ == 64 and model.sigma_ is None
    np.testing.assert_array_equal(model.X_, X)


# --- a scikit-learn estimator ---

@parametrize_with_checks([LabelPropagation(k=5), LabelPropagation(k=5, graph="gaussian")])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def test_pipeline_with_normalizer(digits):
    # unit rows for the Gaussian graph: sklearn's Normalizer in front, as the docstring says
    X, y = digits
    y_train, labeled = hide_labels(y, 0.1, 11)
    pipe = Pipeline([("unit", Normalizer()), ("lp", LabelPropagation(k=10, graph="gaussian"))]).fit(X, y_train)
    alone = LabelPropagation(k=10, graph="gaussian").fit(Normalizer().fit_transform(X), y_train)
    np.testing.assert_array_equal(pipe.named_steps["lp"].transduction_, alone.transduction_)
    np.testing.assert_array_equal(pipe.predict(X[:100]), alone.predict(Normalizer().fit_transform(X[:100])))
    assert (pipe.named_steps["lp"].transduction_[~labeled] == y[~labeled]).mean() > 0.9


def test_cross_val_score_is_clone_fit_score_per_fold(digits):
    X, y = digits[0][:600], digits[1][:600]
    scores = cross_val_score(LabelPropagation(k=10), X, y, cv=3)
    by_hand = [clone(LabelPropagation(k=10)).fit(X[train], y[train]).score(X[test], y[test])
               for train, test in StratifiedKFold(3).split(X, y)]
    np.testing.assert_allclose(scores, by_hand)
    assert min(scores) > 0.85  # the first 600 digits: a hard fold for LabelSpreading and k-NN too


def test_grid_search(digits):
    X, y = digits[0][:600], digits[1][:600]
    grid = {"k": [3, 10], "alpha": [0.5, 0.99]}
    search = GridSearchCV(LabelPropagation(), grid, cv=3).fit(X, y)
    for params, mean in zip(search.cv_results_["params"], search.cv_results_["mean_test_score"]):
        assert mean == pytest.approx(cross_val_score(LabelPropagation(**params), X, y, cv=3).mean())
    refit = LabelPropagation(**search.best_params_).fit(X, y)
    np.testing.assert_array_equal(search.best_estimator_.transduction_, refit.transduction_)
    assert search.score(digits[0][600:], digits[1][600:]) > 0.9


# --- the overall scale of X does not matter ---

SCALES = [(1e-30, np.float32), (1e-7, np.float32), (1e7, np.float32), (1e30, np.float32), (1e200, np.float64)]


def scale_data(seed=17, k=10):
    """240 training points (every 10th labeled) and 60 queries, rows of very different norms,
    away from the origin. A seed whose k-th and (k+1)-th neighbours (training and query
    points, cosine and Euclidean) are apart: float32 rounding of a scaled copy cannot change
    the graph or the vote, only the scale handling can."""
    rng = np.random.default_rng(seed)
    y = np.arange(300) % 3
    X = (rng.normal(size=(3, 8))[y] + 0.6 * rng.normal(size=(300, 8))) * rng.uniform(0.2, 5.0, (300, 1)) + 2.0
    unit = X / np.linalg.norm(X, axis=1, keepdims=True)
    for rows, own in [(slice(0, 240), True), (slice(240, 300), False)]:
        cos = unit[rows] @ unit[:240].T - (3 * np.eye(240) if own else 0)
        dist = np.linalg.norm(X[rows, None] - X[None, :240], axis=-1) + (np.diag(np.full(240, np.inf)) if own else 0)
        cos, dist = -np.sort(-cos, 1), np.sort(dist, 1)
        assert (cos[:, k - 1] - cos[:, k]).min() > 1e-5
        assert ((dist[:, k] - dist[:, k - 1]) / dist[:, :k].mean()).min() > 1e-5
    return X[:240], np.where(np.arange(240) % 10 == 0, y[:240], -1), X[240:]


@pytest.mark.parametrize("scale, dtype", SCALES)
@pytest.mark.parametrize("graph", ["dot", "gaussian"])
def test_fit_and_predict_do_not_depend_on_scale(graph, scale, dtype):
    X, y_train, Q = scale_data()
    ref = LabelPropagation(k=10, graph=graph).fit(X, y_train)
    model = LabelPropagation(k=10, graph=graph).fit((X * scale).astype(dtype), y_train)
    atol = 1e-5 if graph == "dot" else 1e-3  # Gaussian: float32 rounding of X alone moves them up to 6e-4
    np.testing.assert_array_equal(model.transduction_, ref.transduction_)
    np.testing.assert_allclose(model.label_distributions_, ref.label_distributions_, atol=atol)
    np.testing.assert_allclose(model.certainty_, ref.certainty_, atol=atol)
    np.testing.assert_allclose(model.predict_proba((Q * scale).astype(dtype)), ref.predict_proba(Q), atol=atol)
    np.testing.assert_array_equal(model.predict((Q * scale).astype(dtype)), ref.predict(Q))
    assert len(np.unique(ref.predict(Q))) == 3
    if graph == "gaussian":
        assert model.sigma_ == pytest.approx(ref.sigma_ * scale, rel=1e-5) and ref.sigma_ > 0


def test_fit_and_predict_take_views_with_negative_strides_and_frames(digits):
    X, y = digits
    X, y = X[:300], hide_labels(y[:300], 0.3, 0)[0]
    ref = LabelPropagation(k=10).fit(X, y)
    flipped = X[::-1].copy()[::-1]  # the same values, negative strides
    model = LabelPropagation(k=10).fit(flipped, y[::-1].copy()[::-1])
    np.testing.assert_array_equal(model.transduction_, ref.transduction_)
    np.testing.assert_array_equal(model.predict(flipped[:20]), ref.predict(X[:20]))
    pd = pytest.importorskip("pandas")
    model = LabelPropagation(k=10).fit(pd.DataFrame(X), pd.Series(y))
    np.testing.assert_array_equal(model.label_distributions_, ref.label_distributions_)


def test_fit_warning_points_at_the_callers_line(digits):
    X, y = digits
    with pytest.warns(UserWarning, match="k=50") as caught:
        LabelPropagation().fit(X[:10], y[:10])
    assert [w.filename for w in caught] == [__file__]


def test_fit_warnings_name_the_classes_and_attributes_of_the_estimator():
    """propagate's warnings speak of class codes and of a pseudo-label 0 with weight 0; fit's name the labels
    of classes_ and what transduction_ and certainty_ hold."""
    e = np.eye(3)
    X = np.concatenate([e[i] + 0.05 * np.random.default_rng(i).standard_normal((5, 3)) for i in range(3)]
                       + [-np.ones((1, 3))])  # cat, dog, an unlabeled cluster, and a bird with no positive edge
    y = np.array(["cat"] + ["-1"] * 4 + ["dog"] + ["-1"] * 4 + ["-1"] * 5 + ["bird"])
    with pytest.warns(UserWarning) as caught:
        model = LabelPropagation(k=3).fit(X, y)
    messages = [str(w.message) for w in caught]
    assert len(messages) == 2 and [w.filename for w in caught] == [__file__] * 2
    assert "(classes ['bird']) have no edge" in messages[0] and "classes ['bird'] have no other" in messages[0]
    assert messages[1].endswith("5 in a part of the graph without labels. They get transduction_ 'bird' "
                                "(classes_[0]) and certainty_ 0")
    assert (model.transduction_[10:15] == "bird").all() and (model.certainty_[10:15] == 0).all()
    chain, y = np.c_[np.arange(400.0), np.zeros(400)], np.full(400, -1)
    y[[0, -1]] = 7, 9
    with pytest.warns(UserWarning, match=r"378 farther .* 10 iterations reach \(raise max_iter=10\)\. They get "
                                         r"transduction_ 7 \(classes_\[0\]\) and certainty_ 0$"):
        LabelPropagation(k=2, graph="gaussian", max_iter=10).fit(chain, y)


def test_string_labels_with_minus_one_for_the_unlabeled():
    X = np.array([[1, 0], [0.9, 0.1], [0.95, 0.05], [0, 1], [0.1, 0.9], [0.05, 0.95]])
    y = ["cat", -1, -1, "dog", -1, -1]
    as_strings = np.array(y)  # numpy turns -1 into the string "-1"; pandas keeps strings as objects
    for given in (np.array(y, dtype=object), as_strings, as_strings.astype(object), pd.Series(as_strings),
                  pd.Series(as_strings, dtype="string"), pd.Categorical(as_strings)):
        model = LabelPropagation(k=2).fit(X, given)
        assert model.classes_.tolist() == ["cat", "dog"]
        assert model.transduction_.tolist() == ["cat", "cat", "cat", "dog", "dog", "dog"]


def test_a_negative_label_other_than_minus_one_is_a_class_and_says_so():
    X = np.array([[1, 0], [0.9, 0.1], [0.95, 0.05], [0, 1], [0.1, 0.9], [0.05, 0.95]])
    with pytest.warns(UserWarning, match=r"y holds \[-2\]: only -1 marks an unlabeled point"):
        model = LabelPropagation(k=2).fit(X, np.array([-2, -1, -1, 5, -1, -1]))
    assert model.classes_.tolist() == [-2, 5] and model.transduction_.tolist() == [-2, -2, -2, 5, 5, 5]


@pytest.mark.parametrize("marker", ["", "unlabeled", " -1", "-1.0", "NaN"])
def test_a_string_that_looks_like_unlabeled_is_a_class_and_says_so(marker):
    X = np.array([[1, 0], [0.9, 0.1], [0.95, 0.05], [0, 1], [0.1, 0.9], [0.05, 0.95]])
    y = np.array(["cat", marker, marker, "dog", marker, marker], dtype=object)
    with pytest.warns(UserWarning, match=rf"y holds the class\(es\) \[{re.escape(repr(marker))}\]: only -1"):
        model = LabelPropagation(k=2).fit(X, y)
    assert sorted(model.classes_.tolist()) == sorted(["cat", "dog", marker])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a class named like none of them: no warning
        LabelPropagation(k=2).fit(X, np.array(["cat", "-1", "-1", "dog", "nano", "-1"], dtype=object))


def test_labels_of_mixed_types_are_refused_by_name():
    X = np.array([[1, 0], [0.9, 0.1], [0.95, 0.05], [0, 1], [0.1, 0.9], [0.05, 0.95]])
    with pytest.raises(ValueError, match=r"y mixes labels of types \['int', 'str'\]: give every label the same"):
        LabelPropagation(k=2).fit(X, np.array(["cat", -1, -1, 3, -1, -1], dtype=object))


def test_bytes_labels_are_read_as_strings():
    X = np.array([[1, 0], [0.9, 0.1], [0.95, 0.05], [0, 1], [0.1, 0.9], [0.05, 0.95]])
    model = LabelPropagation(k=2).fit(X, np.array([b"cat", b"-1", b"-1", b"dog", b"-1", b"-1"]))
    assert model.classes_.tolist() == ["cat", "dog"] and model.transduction_.tolist() == ["cat"] * 3 + ["dog"] * 3
    with pytest.raises(ValueError, match="labels represented as bytes is not supported"):  # not "mixes types"
        LabelPropagation(k=2).fit(X, np.array([b"cat", -1, -1, b"dog", -1, -1], dtype=object))


def test_torch_tensors_are_taken_as_propagate_takes_them(digits):
    """A tensor that requires grad, or one in bfloat16, fits and predicts as its numpy values do."""
    import torch
    X, y = digits
    y_train, _ = hide_labels(y, 0.1, 3)
    ref = LabelPropagation(k=10).fit(X, y_train)
    model = LabelPropagation(k=10).fit(torch.tensor(X, requires_grad=True), torch.tensor(y_train))
    np.testing.assert_array_equal(model.transduction_, ref.transduction_)
    half = torch.tensor(X).bfloat16()  # digits' values 0..16 are exact in bfloat16
    np.testing.assert_array_equal(LabelPropagation(k=10).fit(half, y_train).transduction_, ref.transduction_)
    np.testing.assert_array_equal(model.predict(half[:50]), ref.predict(X[:50]))


def test_predict_refuses_a_graph_changed_since_fit(digits):
    X, y = digits
    model = LabelPropagation(k=10).fit(X, hide_labels(y, 0.1, 4)[0])
    model.set_params(graph="gaussian")
    with pytest.raises(ValueError, match="graph is 'gaussian', but the model was fitted with graph='dot': fit it"):
        model.predict(X[:5])
    assert model.set_params(graph="dot", k=5).predict(X[:5]).shape == (5,)  # k: the vote's, as in KNeighbors
    for gamma in (-1.0, 0, np.nan):  # checked again, as fit checks it
        with pytest.raises(ValueError, match="^gamma must be a finite number > 0"):
            model.set_params(gamma=gamma).predict(X[:5])


def test_a_fit_that_raises_leaves_the_estimator_as_it_was(digits):
    X, y = digits
    model = LabelPropagation(k=10).fit(X[:200], hide_labels(y[:200], 0.3, 0)[0])
    before = model.predict(X[200:220])
    with pytest.raises(ValueError, match="no labeled example"):
        model.fit(X[:100, :3], np.full(100, -1))
    assert model.n_features_in_ == 64
    np.testing.assert_array_equal(model.predict(X[200:220]), before)


def test_predict_searches_as_fit_does(digits, monkeypatch):
    from lpnb import diffusion

    searches, search = [], diffusion.knn_search
    monkeypatch.setattr(diffusion, "knn_search", lambda *a, **kw: searches.append(kw.get("approx")) or search(*a, **kw))
    X, y = digits
    for knn in ("exact", "approx"):
        LabelPropagation(k=10, knn=knn).fit(X[:300], hide_labels(y[:300], 0.3, 0)[0]).predict(X[300:310])
    assert searches == [False, False, True, True]
