"""LabelPropagation next to scikit-learn's LabelSpreading on the digits data set."""
import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")
from sklearn.base import clone  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.semi_supervised import LabelSpreading  # noqa: E402

from lpnb.diffusion import LabelPropagation  # noqa: E402


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
    # vote weights [v . v_j]_+^gamma over the 2 nearest training points: both of class 5
    p = model.predict_proba([[1.0, 0.05]])[0]
    F = model.label_distributions_
    x = np.array([1.0, 0.05]) / np.linalg.norm([1.0, 0.05])
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    w = Xn[:2] @ x
    np.testing.assert_allclose(p, (w[:, None] * F[:2]).sum(0) / (w[:, None] * F[:2]).sum(), atol=1e-5)


def test_gaussian_graph_estimator():
    rng = np.random.default_rng(8)
    X = np.concatenate([rng.normal(0, 0.3, (50, 2)), rng.normal(3, 0.3, (50, 2))])
    y = np.repeat([0, 1], 50)
    y_train = np.full(100, -1)
    y_train[[0, 50]] = [0, 1]
    model = LabelPropagation(k=8, graph="gaussian", normalize=False).fit(X, y_train)
    assert (model.transduction_ == y).all() and model.sigma_ > 0
    np.testing.assert_array_equal(model.predict([[0.1, -0.1], [2.9, 3.2]]), [0, 1])


def test_drop_in_for_label_spreading(digits):
    # the same code path, either estimator; clone() works through get_params
    X, y = digits
    y_train, _ = hide_labels(y, 0.1, 9)
    for model in [LabelSpreading(kernel="knn", n_neighbors=10), LabelPropagation(k=10)]:
        fitted = clone(model).fit(X[:1000], y_train[:1000])
        assert fitted.score(X[1000:], y[1000:]) > 0.9
    model = LabelPropagation(k=7).set_params(alpha=0.9)
    assert clone(model).get_params()["alpha"] == 0.9 and clone(model).k == 7
    with pytest.raises(ValueError, match="invalid parameter"):
        model.set_params(n_neighbors=3)


def test_estimator_bad_input(digits):
    X, y = digits
    with pytest.raises(ValueError, match="no labeled example"):
        LabelPropagation().fit(X, np.full(len(y), -1))
    with pytest.raises(ValueError, match="y must have shape"):
        LabelPropagation().fit(X, y[:-1])
    Xnan = X.astype(float)
    Xnan[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        LabelPropagation().fit(Xnan, y)
    model = LabelPropagation(k=10).fit(X[:200], hide_labels(y[:200], 0.3, 0)[0])
    with pytest.raises(ValueError, match="features"):
        model.predict(X[:5, :10])
