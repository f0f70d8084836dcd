"""Datasets as uint8 arrays, labeled splits, and batched augmentation on the images' device.

`load_dataset` reads CIFAR-10/100, Mini-ImageNet or Fashion-MNIST from the formats they
are distributed in, decodes them once and caches the uint8 arrays as .npy files that later
calls memory-map. `labeled_indices` gives the labeled set I_L of a run (the paper's own
split files where they exist, else a seeded class-balanced draw saved as a file).
`to_device`, `augment` and `normalize` keep the images on the GPU as uint8 and make a
training batch there: augment moves pixels (uint8 in, uint8 out), normalize makes floats.
"""
from __future__ import annotations

import collections
import contextlib
import errno
import gzip
import hashlib
import io
import json
import math
import os
import pickle
import re
import sys
import tarfile
import tempfile
import time
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torchvision
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

try:
    import fcntl
except ImportError:  # not POSIX: files are not locked
    fcntl = None

REPO = Path(__file__).resolve().parent.parent
DATASETS = ("cifar10", "cifar100", "miniimagenet", "fashion-mnist")
# Official per-channel statistics in [0, 1] units (docs/method.md); other datasets: computed.
CIFAR_STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}
OFFICIAL_TRAIN_IMAGES = 50_000  # CIFAR-10's and CIFAR-100's training sets, which the paper's split files index
PAPER_SPLITS = {"cifar10": ((500, 1000, 2000, 4000), 10), "cifar100": ((4000, 10000), 3)}  # its files: labels, splits
TORCHVISION = {
    "cifar10": torchvision.datasets.CIFAR10,
    "cifar100": torchvision.datasets.CIFAR100,
    "fashion-mnist": torchvision.datasets.FashionMNIST,
}
TORCHVISION_FOLDERS = ("cifar-10-batches-py", "cifar-100-python")
FASHION_MNIST_SYSTEM = Path("/usr/share/datasets/fashion-mnist")  # Debian dataset-fashion-mnist
# the project's CIFAR copies (../shared/data: JPEG, quality 95, not CIFAR's original pixels), by the fingerprint of
# their decoded pixels and labels (ImageData.fingerprint): how a record says it was trained on them
PROJECT_COPIES = {"2ad0627943a0028a": "cifar10", "0bffc2e9c65e4123": "cifar100"}
MINIIMAGENET_SIZE = 84
MINIIMAGENET_SEED = 0  # per-class train/test assignment (paper sec. 5.1: 500/100 at random)
CACHE_VERSION = 3  # part of the cache key: bump when decoding or meta.json changes (3: 16-bit images refused)


@dataclass
class ImageData:
    """A dataset as uint8 NHWC arrays (possibly read-only memmaps) with int64 labels."""

    name: str
    train_images: np.ndarray = field(repr=False)
    train_labels: np.ndarray = field(repr=False)
    test_images: np.ndarray = field(repr=False)
    test_labels: np.ndarray = field(repr=False)
    classes: list[str]
    mean: tuple[float, ...]  # per channel, [0, 1] units
    std: tuple[float, ...]
    source: str = ""  # the file or folder the arrays were decoded from
    fingerprint: str = ""  # sha1 of the decoded pixels and labels: the same data gives the same value anywhere


def data_roots(root=None) -> list[Path]:
    """The folders searched, in order, for each dataset and its split files: [root] if one is given, else
    [$LPNB_DATA_ROOT] if it is set (that folder only), else [<repo>/data, <repo>/../shared/data]."""
    if root is not None:
        if (root := Path(root).expanduser()).is_file():  # a dataset's tarball: its folder is the root
            raise ValueError(f"the data root {root} is a file: give the folder that holds it ({root.parent})")
        return [root]
    if os.environ.get("LPNB_DATA_ROOT"):
        return [Path(os.environ["LPNB_DATA_ROOT"]).expanduser()]
    return [REPO / "data", REPO.parent / "shared" / "data"]


def default_data_root() -> Path:
    """Where download=True puts a dataset when no root is given: the first of data_roots() that exists, else
    the first of them."""
    roots = data_roots()
    return next((path for path in roots if path.is_dir()), roots[0])


def default_cache_dir() -> Path:
    """$LPNB_CACHE_DIR, else ~/.cache/lpnb."""
    if os.environ.get("LPNB_CACHE_DIR"):
        return Path(os.environ["LPNB_CACHE_DIR"]).expanduser()
    return Path.home() / ".cache" / "lpnb"


def load_dataset(name: str, root=None, *, download: bool = False, cache_dir=None) -> ImageData:
    """Load dataset `name` from the first source found under `root`, or without root under the first of
    data_roots() that holds one.

    Sources, in order: CIFAR-10/100 in torchvision's format (root/cifar-10-batches-py,
    root/cifar-100-python); CIFAR class folders (root/<name>.tar.gz or root/<name>/ with
    train/<class>/<index>.<ext> and test/<class>/<file>); Mini-ImageNet as Ravi &
    Larochelle's csv files in root/miniimagenet/; Fashion-MNIST idx files in
    root/fashion-mnist/, root/FashionMNIST/raw/ or /usr/share/datasets/fashion-mnist/.
    With download=True and no local copy, torchvision downloads CIFAR or Fashion-MNIST
    into root (default_data_root()), and downloads again a torchvision CIFAR copy that
    fails its md5 check. The decoded arrays are cached in cache_dir (default_cache_dir()),
    keyed by a tarball's content or a folder's paths, sizes and mtimes, checked against their content
    fingerprint (once per process while their files are unchanged), and memory-mapped from there.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {DATASETS}")
    if not isinstance(download, bool):  # `-p download no` is a non-empty string
        raise ValueError(f"download must be True or False, got {download!r}")
    roots = data_roots(root)
    home = roots[0] if root is not None else default_data_root()  # where a download goes
    source = _find_source(name, roots)
    if download and name in TORCHVISION and (source is None or source[0] == "torchvision"):
        # fetches and unpacks train and test; a copy found is md5-checked and fetched again if a file is corrupt
        try:
            TORCHVISION[name](source[1].parent if source else home, download=True)
        except (OSError, RuntimeError) as e:  # no network (URLError), a full disk, a download that is no archive
            raise FileNotFoundError(f"downloading {name} failed ({type(e).__name__}: {e}).\n"
                                    + _missing_message(name, home, roots, downloading=True)) from e
        source = _find_source(name, roots)
    if source is None:
        raise FileNotFoundError(_missing_message(name, home, roots))
    if root is not None and source[1] == FASHION_MNIST_SYSTEM and not source[1].is_relative_to(roots[0]):
        warnings.warn(f"no {name} under {root}: reading Debian's copy in {FASHION_MNIST_SYSTEM}", stacklevel=2)
    kind, path = source[0], source[1].absolute()
    cache = Path(cache_dir if cache_dir is not None else default_cache_dir()) / f"{name}-{_fingerprint(path)}"
    if not (cache / "meta.json").is_file():
        _decode_into_cache(cache, name, kind, path)
    _remove_stale_temporaries(cache)
    return _open_cache(cache, name, path)


def _decode_into_cache(cache, name, kind, path):
    """Decode the dataset at `path` (a source of `kind`) into the cache folder `cache`."""
    try:  # before decoding, which takes a while
        cache.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=cache).close()
    except OSError as e:
        raise OSError(f"cannot write the decoded-data cache {cache} ({e.strerror or e}): set $LPNB_CACHE_DIR "
                      "to a writable folder (default ~/.cache/lpnb)") from e
    reader = {"torchvision": _read_torchvision, "folders": _read_class_folders,
              "miniimagenet": _read_miniimagenet, "idx": _read_fashion_mnist}[kind]
    try:
        arrays, classes = reader(name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            cache.rmdir()  # still empty: no folder left behind
        raise
    _write_cache(cache, name, arrays, classes, str(path))


def _open_cache(cache, name, path):
    """The ImageData of a cache folder, its arrays memory-mapped, checked against its fingerprint once per
    process; a corrupt cache raises, naming the folder to delete."""
    try:
        meta = json.loads((cache / "meta.json").read_text(encoding="utf-8"))
        train_images = np.load(cache / "train_images.npy", mmap_mode="r")
        test_images = np.load(cache / "test_images.npy", mmap_mode="r")
        train_labels, test_labels = np.load(cache / "train_labels.npy"), np.load(cache / "test_labels.npy")
        if (signature := _cache_signature(cache)) not in _VERIFIED:  # read in full once per process, not per load
            arrays = (train_images, train_labels, test_images, test_labels)
            if content_fingerprint(arrays) != meta["fingerprint"]:  # a disk error, or a file edited or replaced
                raise ValueError("its arrays do not match the fingerprint its meta.json records")
            if any(len(labels) and not 0 <= labels.min() <= labels.max() < len(meta["classes"])
                   for labels in (train_labels, test_labels)):
                raise ValueError(f"its labels are not all among its {len(meta['classes'])} classes")
            _VERIFIED.add(signature)
        return ImageData(name=name, train_images=train_images, train_labels=train_labels, test_images=test_images,
                         test_labels=test_labels, classes=meta["classes"], mean=tuple(meta["mean"]),
                         std=tuple(meta["std"]), source=str(path), fingerprint=meta["fingerprint"])
    except (OSError, ValueError, KeyError, TypeError, EOFError) as e:  # truncated or edited cache files
        raise RuntimeError(f"the decoded-data cache {cache} is corrupt ({type(e).__name__}: {e}). Delete that folder; "
                           f"the next load decodes {path} again.") from e


def find_dataset(name: str, root=None):
    """(kind, path) of the first source of dataset `name` that `load_dataset` would read under root
    (default: the first of data_roots() that holds one), or None when there is none."""
    return _find_source(name, data_roots(root))


def _find_source(name, roots):
    """(kind, path) of the first source of `name` under the first of roots that has one, or None."""
    idx_stems = ("train-images-idx3-ubyte", "train-images-idx3-ubyte.gz")
    candidates = []  # (root, kind, path, the files in path that make it a source, all of them)
    for root in roots:
        if name in CIFAR_STATS:
            tv = TORCHVISION[name]  # all its files: an empty or half-unpacked folder is no source
            files = [f for f, _ in tv.train_list + tv.test_list] + [tv.meta["filename"]]
            candidates += [(root, "torchvision", root / tv.base_folder, files),
                           (root, "folders", root / f"{name}.tar.gz", [""]), (root, "folders", root / name, ["train"])]
        elif name == "miniimagenet":
            candidates += [(root, "miniimagenet", root / "miniimagenet", ["train.csv"])]
        else:
            candidates += [(root, "idx", folder, [stem]) for folder in (root / "fashion-mnist",
                                                                        root / "FashionMNIST" / "raw")
                           for stem in idx_stems]
    if name == "fashion-mnist":  # the Debian package's copy, after every root
        candidates += [(None, "idx", FASHION_MNIST_SYSTEM, [stem]) for stem in idx_stems]
    for here in dict.fromkeys(root for root, *_ in candidates):  # root by root: a later one is not read
        found = {}  # path: kind, in the order read
        for root, kind, path, files in candidates:
            if root == here and path not in found and _holds(path, files, root or path, name):
                found[path] = kind
        if found:
            (path, kind), *others = found.items()
            if others and here is not None:  # e.g. torchvision's copy beside your own class folders
                other = others[0][0]
                warnings.warn(f"{path}{'/' * path.is_dir()} and {other}{'/' * other.is_dir()} are both there: "
                              f"reading {path.relative_to(here)}, not {other.relative_to(here)}; move one away to "
                              "read the other", stacklevel=3)
            return kind, path
    return None


def _holds(path, files, root, name):
    """Whether all `files` are in `path`; a folder that cannot be searched raises an error that says so."""
    try:
        return all((path / f).exists() for f in files)
    except PermissionError as e:
        raise PermissionError(f"cannot read {e.filename} ({e.strerror}) in {root}, where lpnb looks for {name}: make "
                              "it readable, or give another data root (--data-root, in Python root=)") from None


def _missing_message(name, root, searched, downloading=False):
    """What to provide, and where (root), when no source of `name` is in the folders searched (or a download
    failed: then without the advice to download it)."""
    where = {
        "cifar10": (
            f"  - torchvision's copy in {root}/cifar-10-batches-py: load_dataset('cifar10', root, download=True),\n"
            f"    i.e. torchvision.datasets.CIFAR10('{root}', download=True), fetches\n"
            "    https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz and unpacks it there;\n"
            f"  - or class folders {root}/cifar10.tar.gz or {root}/cifar10/ holding train/<class>/<index>.jpg\n"
            "    (index = position in the official training set) and test/<class>/<file>."),
        "cifar100": (
            f"  - torchvision's copy in {root}/cifar-100-python: load_dataset('cifar100', root, download=True),\n"
            f"    i.e. torchvision.datasets.CIFAR100('{root}', download=True), fetches\n"
            "    https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz and unpacks it there;\n"
            f"  - or class folders {root}/cifar100.tar.gz or {root}/cifar100/ holding train/<class>/<index>.jpg\n"
            "    (fine labels; index = position in the official training set) and test/<class>/<file>."),
        "miniimagenet": (
            f"  - Ravi & Larochelle's split files train.csv, val.csv, test.csv (header 'filename,label'; from\n"
            "    https://github.com/twitter/meta-learning-lstm/tree/master/data/miniImagenet) in\n"
            f"    {root}/miniimagenet/, and the 60,000 ImageNet (ILSVRC-2012) images they name in\n"
            f"    {root}/miniimagenet/images/<filename> or {root}/miniimagenet/<wnid>/<filename>."),
        "fashion-mnist": (
            "  - apt-get install dataset-fashion-mnist (idx files in /usr/share/datasets/fashion-mnist);\n"
            f"  - or load_dataset('fashion-mnist', root, download=True), i.e.\n"
            f"    torchvision.datasets.FashionMNIST('{root}', download=True), into {root}/FashionMNIST/raw;\n"
            "  - or the four idx files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz,\n"
            "    t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz) from\n"
            f"    https://github.com/zalandoresearch/fashion-mnist in {root}/fashion-mnist/."),
    }[name]
    shell = (f"\nFrom a shell (the command line has no --download): python -c \"import lpnb.data; "
             f"lpnb.data.load_dataset('{name}', '{root}', download=True)\"; in notebook 09_figure7: -p download "
             "True") if name in TORCHVISION and not downloading else ""
    inside = [r for r in searched if (r / "train").is_dir() and (r / "test").is_dir()]
    hint = (f"{inside[0]} holds train/ and test/ itself: give the folder above it as the data root, with this folder "
            f"named {name}/ in it.\n") if inside else ""
    if len(searched) == 1 and not searched[0].exists():  # a root given (root=, --data-root, $LPNB_DATA_ROOT)
        hint += f"{searched[0]} does not exist (a typo?).\n"
    return (f"no {name} data found under {' or '.join(map(str, searched))}. {hint}Provide it in one of these forms:\n"
            f"{where}\nThe data root is root=... in Python, --data-root on the command line and data_root in the\n"
            "notebooks, else $LPNB_DATA_ROOT (that folder only), else the first of <repo>/data and\n"
            "<repo>/../shared/data that holds the dataset."
            + shell)


def _fingerprint(path: Path) -> str:
    """Hash of the source (and CACHE_VERSION): a single file (a tarball) by its content, so that a fresh copy of
    it (another mtime, e.g. a GPU job's) finds the cache (CIFAR-10's 53 MB hash in 0.05 s, its decoding takes
    seconds); a folder by its files' paths, sizes and mtimes, through symlinked folders as the readers read them."""
    path = path.resolve()
    h = hashlib.sha1(f"v{CACHE_VERSION}\n".encode())
    if path.is_file():
        with open(path, "rb") as f:
            while block := f.read(1 << 22):
                h.update(block)
        return h.hexdigest()[:16]
    files = sorted(os.path.join(d, f) for d, _, fs in os.walk(path, followlinks=True) for f in fs)
    for f in files:
        st = os.stat(f)
        h.update(f"{f}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


NOT_WRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)  # a folder's permissions, or a read-only file system


def make_folder(path) -> None:
    """mkdir -p path; where it cannot be made (a folder not writable, a read-only file system), a PermissionError
    that names it and the remedy."""
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        if e.errno not in NOT_WRITABLE:
            raise
        raise PermissionError(e.errno, f"{e.strerror}: the folder {path} cannot be made there; make its parent "
                                       "writable or choose another folder", str(path)) from e


def atomic_write(path, write) -> None:
    """Call write(binary file) on a temporary file next to path, flush it to disk, then rename
    it to path: a crash or kill leaves either the old file or the new one, never a partial one. A write
    that fails as a full disk does, or a folder that is not writable, raises an error that names path and
    the remedy."""
    path = Path(path)
    make_folder(path.parent)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:  # its file name would be the temporary file's
        if e.errno not in NOT_WRITABLE:
            raise
        raise PermissionError(e.errno, f"{e.strerror}: the folder is not writable, so {path.name} cannot be written "
                                       "there; make it writable or choose another folder", str(path)) from e
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
        _fsync_folder(path.parent)  # the rename itself on disk: a power loss cannot undo it
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):  # gone if the signal came just after os.replace
            os.unlink(tmp)
        if (stop := interruption(e)) is not None and stop is not e:  # torch.save made it a RuntimeError
            raise stop from None
        full = (isinstance(e, OSError) and (e.errno in (errno.ENOSPC, errno.EDQUOT) or "free space" in str(e)
                                             or re.fullmatch(r"\d+ requested and \d+ written", str(e)))
                or type(e) is RuntimeError)  # numpy: "Not enough free space", a short write; torch.save: RuntimeError
        if not full:
            raise
        raise type(e)(f"writing {path} failed ({e}); the file as it was is kept. If the disk is full, free space, "
                      "then run the same command again") from e


def interruption(error):
    """The exception that interrupted the process (Ctrl-C, SIGTERM as lpnb.cli raises it, SystemExit, or lpnb's
    own such as a SLURM job's JobOutOfTime) that `error` is or wraps, else None. torch.save and torch.load turn an
    exception raised while they call Python into a RuntimeError, the original as its __context__."""
    while error is not None:
        if not isinstance(error, Exception) or type(error).__module__.startswith("lpnb."):
            return error
        error = error.__context__
    return None


def _fsync_folder(folder):
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # a system where folders cannot be opened (Windows)
        return
    try:
        os.fsync(fd)
    except OSError:  # a file system that cannot sync a folder
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def locked(path, waiting=None, timeout=None):
    """Hold an exclusive lock (flock) on the file `path` (created if missing), waiting for another process's;
    `waiting` is printed when it has to wait; with `timeout` (seconds), a lock still held after that long raises
    TimeoutError. Yields whether it waited. Not on a system without fcntl (not POSIX)."""
    with open(path, "a") as f:
        waited = False
        if fcntl is not None:
            try:
                _flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB, path)
            except BlockingIOError:
                if waiting:
                    print(waiting, file=sys.stderr, flush=True)
                waited = True
                if timeout is None:
                    _flock(f, fcntl.LOCK_EX, path)
                else:
                    _lock_by(f, time.monotonic() + timeout, path)
        yield waited


def _flock(f, flags, path):
    """fcntl.flock(f, flags); a file system that has no such locks raises an OSError that names `path` and why."""
    try:
        fcntl.flock(f, flags)
    except BlockingIOError:
        raise
    except OSError as e:
        raise OSError(e.errno, f"cannot lock {path} ({e.strerror}): lpnb locks its files so that two processes never "
                               "train one run or write one file at once; put the results folder (or the data cache) "
                               "on a file system with flock locks: a local disk, NFS with its lock service, Lustre "
                               "mounted with -o flock") from None


def _lock_by(f, deadline, path):
    """Take the lock on the open file f, trying every second until `deadline` (time.monotonic()), then TimeoutError."""
    while True:
        try:
            return _flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB, path)
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{path} is still locked by another process") from None
            time.sleep(min(1.0, max(0.01, deadline - time.monotonic())))


def write_text(path, text) -> None:
    """Write `text` to `path` as UTF-8, atomically (`atomic_write`)."""
    atomic_write(path, lambda f: f.write(text.encode()))


def write_json(path, obj) -> None:
    """Write `obj` as indented JSON to `path`, atomically."""
    write_text(path, json.dumps(obj, indent=1))


def content_fingerprint(arrays) -> str:
    """sha1 (16 hex digits) of arrays' shapes, dtypes and bytes: the same pixels and labels give the same
    value on any machine, whatever file format they were decoded from."""
    h = hashlib.sha1()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}\n".encode())
        h.update(memoryview(a).cast("B"))
    return h.hexdigest()[:16]


CACHE_FILES = ("train_images.npy", "train_labels.npy", "test_images.npy", "test_labels.npy", "meta.json")
_VERIFIED = set()  # `_cache_signature`s of the cache entries this process has checked or written


def _cache_signature(cache: Path):
    """The cache entry's files' sizes and modification times: changed by any write to them."""
    return str(cache), tuple((s.st_size, s.st_mtime_ns) for s in ((cache / f).stat() for f in CACHE_FILES))


def _remove_stale_temporaries(cache: Path):
    """Remove the temporary files of a cache write that was killed (an hour old: not another process's, under way)."""
    for stale in cache.glob(".*.tmp"):
        with contextlib.suppress(OSError):
            if time.time() - stale.stat().st_mtime > 3600:
                stale.unlink()


def _write_cache(cache: Path, name, arrays, classes, source):
    """Write the four arrays, then meta.json last: a cache entry is complete iff meta.json exists."""
    _remove_stale_temporaries(cache)
    train_images = arrays[0]
    mean, std = CIFAR_STATS[name] if name in CIFAR_STATS else _channel_stats(train_images)
    for key, array in zip(("train_images", "train_labels", "test_images", "test_labels"), arrays):
        atomic_write(cache / f"{key}.npy", lambda f, a=array: np.save(f, a))
    meta = {"name": name, "source": source, "classes": list(classes), "fingerprint": content_fingerprint(arrays),
            "mean": [float(m) for m in mean], "std": [float(s) for s in std]}
    write_json(cache / "meta.json", meta)
    _VERIFIED.add(_cache_signature(cache))  # its fingerprint is of the arrays just written


def _channel_stats(images: np.ndarray):
    """Per-channel mean and (population) std of uint8 NHWC images, in [0, 1] units."""
    c = images.shape[-1]
    s, s2 = np.zeros(c), np.zeros(c)
    for i in range(0, len(images), 1024):
        x = images[i:i + 1024].reshape(-1, c).astype(np.float64) / 255
        s += x.sum(0)
        s2 += (x * x).sum(0)
    n = images[..., 0].size
    mean = s / n
    return mean, np.sqrt(np.maximum(s2 / n - mean ** 2, 0))


def _read_torchvision(name, path):
    """CIFAR-10/100 as torchvision stores it (pickled batches, md5-checked by torchvision)."""
    try:
        train = TORCHVISION[name](path.parent, train=True)
        test = TORCHVISION[name](path.parent, train=False)
    except (RuntimeError, OSError, EOFError, pickle.UnpicklingError) as e:  # RuntimeError: a failed md5 check
        raise ValueError(f"{path} is not a complete copy of torchvision's {name} ({type(e).__name__}: {e}): delete "
                         "that folder, or load with download=True to download it again") from e
    arrays = (train.data, np.asarray(train.targets, np.int64), test.data, np.asarray(test.targets, np.int64))
    return arrays, list(train.classes)


def _decode_image(data: bytes, where: str, removable: bool = False) -> np.ndarray:
    """An RGB image from 8-bit encoded bytes; `removable`: the file may be removed instead of replaced (a test
    image, or a training image not named by its index, whose removal shifts no other image's number)."""
    remedy = "remove it or replace it with a good copy" if removable else \
        "replace it with a good copy (removing it would shift the numbers of the images after it)"
    try:
        with Image.open(io.BytesIO(data)) as im:
            mode, rgb = im.mode, np.asarray(im.convert("RGB"))
    except UnidentifiedImageError:
        raise ValueError(f"{where} is not an image PIL can read: {remedy}, then load again") from None
    except (OSError, SyntaxError, ValueError) as e:  # PIL's errors for truncated or corrupt image bytes
        raise ValueError(f"{where} is not a readable image ({e}): {remedy}, then load again") from e
    if mode in ("I", "F") or mode.startswith("I;"):  # convert("RGB") clipped them to 255, not scaled
        raise ValueError(f"{where} is a {mode} image (16 or 32 bits per pixel): lpnb reads 8-bit images; convert "
                         "them to 8 bits (scaled to 0-255) first")
    return rgb


def _torchvision_copy(where, path, folder):
    """The error for torchvision's copy of CIFAR (its `folder`) found where class folders were expected."""
    remedy = (f"rename {path.name}/ to {folder}/" if path.is_dir() else
              f"unpack it in the data root (tar xzf {path} -C {path.parent}) and remove {path.name}")
    return ValueError(f"{where}: {path.name} is torchvision's copy of CIFAR ({folder}/), not class folders: {remedy}; "
                      f"lpnb reads {path.parent}/{folder}/ through torchvision")


def _folder_entries(path: Path):
    """Yield (split, class, file name, encoded bytes, where) from a class-folder tar.gz (streamed) or tree: every
    file at train/<class>/<file> or test/<class>/<file>, hidden ones (a part starting with ".") skipped. A file
    elsewhere under train/ or test/, a tarball holding two such trees, or a folder that cannot be read raises:
    its images would be left out without a word."""
    def placed(parts, where, prefixes):  # parts: the file's path split at "/"
        if folder := next((p for p in parts if p in TORCHVISION_FOLDERS), None):
            raise _torchvision_copy(where, path, folder)
        if any(p.startswith(".") and p != "." for p in parts) or not {"train", "test"} & set(parts):
            return False  # hidden (not "./", as `tar czf x.tar.gz .` names all), or outside the tree (a README)
        at = next(i for i, p in enumerate(parts) if p in ("train", "test"))
        if len(parts) - at != 3:
            raise ValueError(f"{where} is not at train/<class>/<file> or test/<class>/<file>: move it there (or "
                             "out of train/ and test/); lpnb reads no other layout")
        prefixes.add("/".join(parts[:at]))
        if len(prefixes) > 1:
            raise ValueError(f"{path} holds more than one train/ and test/ tree ({sorted(prefixes)}): keep one "
                             "copy of the dataset in it")
        return True

    prefixes = set()
    if path.is_file():
        with open(path, "rb") as f:
            if f.read(2) != b"\x1f\x8b" and tarfile.is_tarfile(path):  # gzip's magic number
                raise ValueError(f"{path} is a tar archive without gzip compression: compress it (gzip < "
                                 f"{path.name} > {path.name}.new, then rename that to {path.name}), or unpack it "
                                 f"into {path.parent}/{path.name.removesuffix('.tar.gz')}/")
        try:
            with tarfile.open(path, "r|gz") as tar:
                for member in tar:
                    parts = member.name.split("/")
                    if (member.issym() or member.islnk()) and placed(parts, f"{path}:{member.name}", prefixes):
                        raise ValueError(f"{path}:{member.name} is a link, which lpnb cannot follow in a tar.gz: make "
                                         "the archive again with the files themselves (GNU tar: tar --dereference "
                                         f"--hard-dereference -czf {path.name} train test)")
                    if member.isfile() and placed(parts, f"{path}:{member.name}", prefixes):
                        yield parts[-3], parts[-2], parts[-1], tar.extractfile(member).read(), f"{path}:{member.name}"
        except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
            raise ValueError(f"{path} is not a complete tar.gz archive ({type(e).__name__}: {e}): the file is "
                             "truncated or corrupt; copy or download it again") from e
    else:
        def unreadable(e):  # os.walk would skip a folder it cannot list; a missing train/ or test/ is said later
            if not isinstance(e, FileNotFoundError):
                raise PermissionError(f"cannot read {e.filename} ({e.strerror}): make it readable, or move it out "
                                      f"of {path}")
        if (path / "train").is_file():  # torchvision's CIFAR-100 files (train, test, meta) in a folder renamed
            raise _torchvision_copy(path / "train", path, "cifar-100-python")
        for split in ("train", "test"):
            for folder, _, files in sorted(os.walk(path / split, onerror=unreadable, followlinks=True)):
                for name in sorted(files):
                    f = Path(folder) / name
                    if placed([split, *f.relative_to(path / split).parts], str(f), prefixes):
                        yield split, f.parent.name, f.name, f.read_bytes(), str(f)


def _read_class_folders(name, path):
    """train/<class>/<file> and test/<class>/<file>, from a tar.gz or a directory.

    Class index = position of the folder name in the sorted class names. When every training
    file stem is a distinct number below 2N, that number is the image's index, and the stems must
    be exactly 0..N-1 (a gap is refused); otherwise (numbers spread wider are ids of your own), and
    for the test set, images are ordered by (class, file name).
    """
    items, shapes = {"train": [], "test": []}, {}
    for split, cls, fname, data, where in _folder_entries(path):
        if cls != cls.strip() or ".png " in cls:  # a split file's line, '<index>_<class>.png <class>', cannot hold it
            raise ValueError(f"{where}: the class folder name {cls!r} has spaces at an end or '.png ' in it, which "
                             "the split files' lines cannot hold: rename the folder in train/ and test/")
        image = _decode_image(data, where, removable=split == "test" or not Path(fname).stem.isdecimal())
        items[split].append((cls, fname, image))
        shapes.setdefault(image.shape, where)  # the first file of each size, to name
    if not items["train"] or not items["test"]:
        raise ValueError(f"{path}: expected images in train/<class>/<file> and test/<class>/<file>")
    train_classes, test_classes = ({cls for cls, _, _ in items[split]} for split in ("train", "test"))
    if train_classes != test_classes:
        raise ValueError(f"{path}: train/ and test/ hold images of different classes (only in train/: "
                         f"{sorted(train_classes - test_classes)}, only in test/: "
                         f"{sorted(test_classes - train_classes)}; a class folder without images counts as absent): "
                         "each class needs images in both; add them, or rename or remove class folders")
    classes = sorted(train_classes)
    if len(classes) < 2:
        raise ValueError(f"{path}: one class folder ({classes[0]!r}): classification needs two classes or more")
    if len(shapes) != 1:
        sizes = "; ".join(f"{shape} e.g. {where}" for shape, where in sorted(shapes.items()))
        raise ValueError(f"{path}: images differ in size ({sizes}); resize them to one size first")
    label = {cls: k for k, cls in enumerate(classes)}
    arrays = []
    for split in ("train", "test"):
        entries = sorted(items[split], key=lambda e: e[:2])
        numbers = [int(stem) for _, fname, _ in entries if (stem := Path(fname).stem).isdecimal()]
        distinct = split == "train" and len(set(numbers)) == len(numbers) > 0  # perhaps their indices
        if split == "train" and len(numbers) / 2 < len(set(numbers)) < len(numbers):  # indices, some of them twice
            twice = sorted(n for n, c in collections.Counter(numbers).items() if c > 1)
            where = [f"train/{cls}/{fname}" for cls, fname, _ in entries if Path(fname).stem.isdecimal()
                     and int(Path(fname).stem) in twice[:2]]
            raise ValueError(f"{path}: the training images are named by their index, but {twice[:10]}"
                             f"{f' and {len(twice) - 10} more' if len(twice) > 10 else ''} name two images or more "
                             f"({', '.join(where[:4])}): remove the copies, so that each index names one image (split "
                             "files name images by index)")
        if distinct and len(entries) / 2 < len(numbers) < len(entries) and max(numbers) < len(entries):
            others = [f"train/{cls}/{fname}" for cls, fname, _ in entries if not Path(fname).stem.isdecimal()]
            raise ValueError(f"{path}: the training images are named by their index except {', '.join(others[:3])}"
                             f"{f' and {len(others) - 3} more' if len(others) > 3 else ''}: remove those (copies?), "
                             "or give every file a name that is not a number (the images are then ordered by class "
                             "and file name)")
        if distinct and len(numbers) == len(entries) and max(numbers) < 2 * len(numbers):  # (spread wider: ids)
            _check_indices(path, numbers)  # named by their index, which split files name: no gap may shift them
            entries = sorted(entries, key=lambda e: int(Path(e[1]).stem))
        arrays += [np.stack([im for _, _, im in entries]),
                   np.array([label[cls] for cls, _, _ in entries], np.int64)]
    return arrays, classes


def _check_indices(path, numbers):
    """Training images named by their index (<index>.jpg) must be numbered 0..N-1 exactly."""
    missing = sorted(set(range(max(numbers) + 1)) - set(numbers))
    if missing:
        more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
        raise ValueError(f"{path}: the training images are named by their index, but {missing[:10]}{more} of "
                         f"0..{max(numbers)} are missing: every later image would take another's index (split "
                         "files name images by index). Restore them from a complete copy; if the numbers are not "
                         "indices, give the files names that are not numbers.")


def _read_miniimagenet(name, path):
    """Mini-ImageNet from Ravi & Larochelle's train/val/test.csv (all 100 classes x 600 images).

    Per class (sorted wnids give the class index), a permutation seeded by MINIIMAGENET_SEED
    sends round(5/6 of its images) to train (500 of 600) and the rest to test (paper sec.
    5.1); each set is ordered by (class, file name). Images found in images/<filename> or
    <wnid>/<filename>, converted to RGB and resized to 84x84 (Lanczos) if they are not.
    """
    by_class = {}
    for split in ("train", "val", "test"):
        csv = path / f"{split}.csv"
        if not csv.is_file():
            raise FileNotFoundError(f"{csv} is missing: Mini-ImageNet needs train.csv, val.csv and test.csv")
        lines = csv.read_text(encoding="utf-8-sig").splitlines()  # -sig: a byte-order mark (Excel) is not data
        if not lines or lines[0].strip() != "filename,label":
            raise ValueError(f"{csv}: expected the header 'filename,label'")
        for number, line in enumerate(lines[1:], 2):
            fields = line.strip().split(",")
            if len(fields) != 2 or not all(fields):
                raise ValueError(f"{csv}:{number}: expected 'filename,label', got {line!r}")
            by_class.setdefault(fields[1], []).append(fields[0])
    classes = sorted(by_class)
    rng = np.random.default_rng(MINIIMAGENET_SEED)
    splits = {"train": [], "test": []}
    for label, wnid in enumerate(classes):
        files = sorted(by_class[wnid])
        perm = rng.permutation(len(files))
        n_train = round(len(files) * 5 / 6)
        splits["train"] += [(wnid, label, files[i]) for i in sorted(perm[:n_train])]
        splits["test"] += [(wnid, label, files[i]) for i in sorted(perm[n_train:])]
    size = MINIIMAGENET_SIZE
    arrays = []
    for split in ("train", "test"):
        images = np.empty((len(splits[split]), size, size, 3), np.uint8)
        for k, (wnid, _, fname) in enumerate(tqdm(splits[split], desc=f"Mini-ImageNet {split}", leave=False)):
            f = path / "images" / fname
            if not f.is_file():
                f = path / wnid / fname
            if not f.is_file():
                raise FileNotFoundError(f"Mini-ImageNet image {fname} is in neither {path / 'images'} "
                                        f"nor {path / wnid}")
            image = _decode_image(f.read_bytes(), str(f))
            if image.shape[:2] != (size, size):
                image = np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.LANCZOS))
            images[k] = image
        arrays += [images, np.array([label for _, label, _ in splits[split]], np.int64)]
    return arrays, classes


def _idx_remedy(folder: Path) -> str:
    if folder == FASHION_MNIST_SYSTEM:
        return "reinstall the Debian package: sudo apt-get install --reinstall dataset-fashion-mnist"
    return f"copy or download it again into {folder} (https://github.com/zalandoresearch/fashion-mnist)"


def _read_idx(path: Path) -> np.ndarray:
    """A uint8 idx file (LeCun's MNIST format), gzipped or not."""
    try:
        with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
        raise ValueError(f"{path} is truncated or corrupt ({type(e).__name__}: {e}): "
                         f"{_idx_remedy(path.parent)}") from e
    if len(data) < 4 or data[:3] != b"\0\0\x08":
        raise ValueError(f"{path} is not a uint8 idx file: {_idx_remedy(path.parent)}")
    header = 4 + 4 * data[3]
    shape = np.frombuffer(data[4:header], ">i4") if len(data) >= header else None
    if shape is None or len(data) != header + int(np.prod(shape)):
        raise ValueError(f"{path} is truncated or corrupt ({len(data)} bytes, which its header does not "
                         f"account for): {_idx_remedy(path.parent)}")
    return np.frombuffer(data, np.uint8, offset=header).reshape(shape)


def _read_fashion_mnist(name, path):
    """Fashion-MNIST idx files (torchvision's raw files or the Debian package's), as (N, 28, 28, 1)."""
    def read(stem):
        for f in (path / stem, path / f"{stem}.gz"):
            if f.is_file():
                return _read_idx(f)
        raise FileNotFoundError(f"{path / stem}[.gz] is missing: Fashion-MNIST needs the four idx files "
                                "train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and "
                                f"t10k-labels-idx1-ubyte (each possibly .gz) in one folder; {_idx_remedy(path)}")
    arrays = []
    for prefix in ("train", "t10k"):
        images, labels = read(f"{prefix}-images-idx3-ubyte"), read(f"{prefix}-labels-idx1-ubyte")
        if images.ndim != 3 or images.shape[1:] != (28, 28) or labels.shape != images.shape[:1] or (labels > 9).any():
            raise ValueError(f"{path}: {prefix}-images-idx3-ubyte holds images of shape {images.shape} and "
                             f"{prefix}-labels-idx1-ubyte labels of shape {labels.shape}, the largest "
                             f"{labels.max(initial=0)}; Fashion-MNIST has one label in 0..9 per 28x28 image: "
                             f"{_idx_remedy(path)}")
        arrays += [images[..., None], labels.astype(np.int64)]
    return arrays, list(torchvision.datasets.FashionMNIST.classes)


def labeled_indices(data: ImageData, n_labels: int, split: int, *, root=None, results_dir=None) -> np.ndarray:
    """Sorted int64 indices of the labeled training images of split `split` (0, 1, ...), read from
    `split_file` (which see): the paper's file when it exists, else a seeded class-balanced draw."""
    return read_split(split_file(data, n_labels, split, root=root, results_dir=results_dir), data, n_labels)


def split_file(data: ImageData, n_labels: int, split: int, *, root=None, results_dir=None) -> Path:
    """The file that lists the labeled training images of split `split` (0, 1, ...).

    It is the paper's file root/labels/<name>/<n_labels>_balanced_labels/<10+split>.txt
    (Mean Teacher's format, one '<index>_<class>.png <class>' line per image) when it exists.
    Without root, it is looked for in the one of data_roots() that `data` was loaded from,
    then, for a training set of the official size, in the others; for data loaded from elsewhere,
    only beside it (the folder holding the dataset's file or folder). Otherwise draws n_labels/c
    images per class with numpy seed `split`, saves them in the same format to
    <results_dir>/splits/<name>/<n_labels>/<split>.txt
    (default <repo>/results) and returns that file from then on, so every run can be repeated
    (delete it to draw again, e.g. for other data).
    """
    for what, value, least in (("split", split, 0), ("n_labels", n_labels, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
            raise ValueError(f"{what} must be an integer >= {least}, got {value!r}")
    roots = data_roots(root)
    if root is None and data.source:  # data's own root first (a stable sort keeps the others' order)
        source = Path(os.path.abspath(data.source))
        ours = [r for r in roots if source.is_relative_to(os.path.abspath(r))]
        official = len(data.train_labels) == OFFICIAL_TRAIN_IMAGES  # what the paper's split files index
        others = [r for r in roots if r not in ours] if official else []
        roots = ours + others if ours else [source.parent]
    for root in roots:
        paper = root / "labels" / data.name / f"{n_labels}_balanced_labels" / f"{10 + split}.txt"
        if paper.is_file():
            return paper
    ours = Path(results_dir if results_dir is not None else REPO / "results") / "splits" / data.name \
        / str(n_labels) / f"{split}.txt"
    if not ours.is_file():
        idx = _balanced_split(data.train_labels, data.classes, n_labels, split)
        papers = sorted(int(p.stem) - 10 for root in roots for p in (root / "labels" / data.name /
                        f"{n_labels}_balanced_labels").glob("*.txt") if p.stem.isdecimal())
        if papers:  # a split number past the paper's: easy to take for one of them
            warnings.warn(f"split {split}: the paper's split files for {n_labels} labels are splits {papers[0]}.."
                          f"{papers[-1]}; this one is a seeded draw of our own, saved to {ours}", stacklevel=2)
        elif (n_labels in PAPER_SPLITS.get(data.name, ((), 0))[0] and split < PAPER_SPLITS[data.name][1]
              and len(data.train_labels) == OFFICIAL_TRAIN_IMAGES):
            warnings.warn(f"no labels/{data.name}/{n_labels}_balanced_labels/{10 + split}.txt (the paper's split) in "
                          f"{', '.join(map(str, roots))}: this split is a seeded draw of our own, saved to {ours}, "
                          "and its runs are not the paper's cells. Copy the paper's labels/ folder beside the data "
                          "for its splits.", stacklevel=2)
        lines = "".join(f"{i}_{data.classes[data.train_labels[i]]}.png {data.classes[data.train_labels[i]]}\n"
                        for i in idx)
        write_text(ours, lines)
    return ours


def _balanced_split(labels, classes, n_labels, seed):
    n_classes = len(classes)
    if n_labels <= 0 or n_labels % n_classes:
        raise ValueError(f"labels (--labels) = {n_labels} must be a positive multiple of the number of classes "
                         f"({n_classes}) for a class-balanced split drawn here, e.g. "
                         f"{max(1, round(n_labels / n_classes)) * n_classes}; or give a split file of your own")
    per_class = n_labels // n_classes
    rng = np.random.default_rng(seed)
    idx = []
    for j in range(n_classes):
        members = np.flatnonzero(labels == j)
        if len(members) < per_class:
            raise ValueError(f"class {classes[j]!r} has {len(members)} training images, fewer than the "
                             f"{per_class} per class that n_labels = {n_labels} asks for")
        idx.append(rng.choice(members, per_class, replace=False))
    return np.sort(np.concatenate(idx))


def read_split(path: Path, data: ImageData, n_labels: int) -> np.ndarray:
    """Read a '<index>_<class>.png <class>' file, checking every class against data."""
    if Path(path).parts[-4:-1] == ("splits", data.name, str(n_labels)):  # one split_file drew
        remedy = (f"lpnb drew this split for other {data.name} data; delete the file and the next run "
                  "draws one for this data")
        unreadable = "delete it, and the next run draws this split again"
    elif len(data.train_labels) == OFFICIAL_TRAIN_IMAGES:  # CIFAR's size: one of the paper's files
        remedy = (f"the paper's split files index the official {data.name} training set, and "
                  f"{Path(data.source).name} is not it. Give your own data a root of its own (--data-root, in Python "
                  "root=): lpnb reads split files only from a root given, and draws a seeded split where it has none")
        unreadable = "restore it from the paper's split files"
    else:  # a file of the user's own, or one of the paper's beside other data
        unreadable = ("a split file of your own names one labeled training image a line, '<index>_<class>.png <class>' "
                      "(the index: the number in the image's file name): correct it, or delete it and the next run "
                      "draws a seeded split. If it is one of the paper's files (they index the official "
                      f"{data.name} training set), restore it from them, or give your own data a root of its own "
                      "(--data-root, in Python root=)")
        remedy = f"this file does not fit {Path(data.source).name}'s training images; {unreadable}"
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is not a text file of split lines ({e}): {unreadable}") from None
    idx = []
    for k, line in enumerate(lines, 1):
        if not line.strip():
            continue
        head, sep, cls = line.strip().partition(".png ")
        stem, _, file_cls = head.partition("_")
        if not sep or not stem.isdecimal():
            raise ValueError(f"{path}:{k}: expected '<index>_<class>.png <class>', got {line!r}: {unreadable}")
        i = int(stem)
        if i >= len(data.train_labels):
            raise ValueError(f"{path}:{k}: index {i} is outside the {len(data.train_labels)} training images: "
                             f"{remedy}")
        true = data.classes[data.train_labels[i]]
        if file_cls != true or cls != true:
            where = "in the file" if cls != true else "in its file name"
            raise ValueError(f"{path}:{k}: image {i} is labeled {cls if cls != true else file_cls!r} {where} but is "
                             f"{true!r} in {data.name}: {remedy}")
        idx.append(i)
    idx = np.array(sorted(idx), np.int64)
    if len(idx) != n_labels or len(np.unique(idx)) != len(idx):
        raise ValueError(f"{path}: expected {n_labels} distinct images, found {len(np.unique(idx))} "
                         f"distinct in {len(idx)} lines: {unreadable}")
    return idx


STANDIN_MARKER = "LPNB_STANDIN.txt"


def describe_source(source) -> str:
    """How a record names a dataset's source: its file or folder name, or "generated stand-ins"; class folders
    of images other than JPEG say their format ("cifar10 (PNG images)"): the project's CIFAR copies are JPEG."""
    source = Path(source)
    if (source / STANDIN_MARKER).is_file():
        return "generated stand-ins"
    image_format = _class_folder_format(source)
    return source.name + (f" ({image_format} images)" if image_format not in (None, "JPEG") else "")


def _class_folder_format(source):
    """PIL's name for the format of the first image of class folders (a tar.gz, or a folder holding train/);
    None for another kind of source, or one without a readable image."""
    if not (source.name.endswith(".tar.gz") or (source / "train").is_dir()):
        return None
    entries = _folder_entries(source)
    try:
        encoded = next(entries)[3]
        with Image.open(io.BytesIO(encoded)) as image:
            return image.format
    except (StopIteration, ValueError, OSError):
        return None
    finally:
        entries.close()


def write_standin(root, name="cifar10", *, n_classes=10, train_per_class=30, test_per_class=10, seed=0) -> Path:
    """Write a small stand-in for a CIFAR-like dataset as class folders, root/<name>/{train,test}/<class>/<n>.png.

    32x32 RGB images, each a class's own colour plus noise (learnable in a few epochs); training files
    are numbered 0..N-1 in class order, as the real copies number theirs. For tests and smoke runs
    (`SMOKE_TEST=1`) on machines without the real data: the code paths, not the numbers. A file
    STANDIN_MARKER in root/<name>/ marks the folder, so that records say their data was generated. Returns root.
    """
    root = Path(root)
    (root / name).mkdir(parents=True, exist_ok=True)
    (root / name / STANDIN_MARKER).write_text("generated by lpnb.data.write_standin: not the real dataset\n")
    rng = np.random.default_rng(seed)
    colours = rng.integers(40, 216, (n_classes, 3))
    index = 0
    for split, per_class in (("train", train_per_class), ("test", test_per_class)):
        for c in range(n_classes):
            folder = root / name / split / f"class{c:03d}"
            folder.mkdir(parents=True, exist_ok=True)
            for j in range(per_class):
                image = (colours[c] + rng.integers(-40, 40, (32, 32, 3))).clip(0, 255).astype(np.uint8)
                Image.fromarray(image).save(folder / f"{index if split == 'train' else j:05d}.png")
                index += split == "train"
    return root


def to_device(images_nhwc_uint8: np.ndarray, device=None) -> torch.Tensor:
    """Copy uint8 NHWC images to `device` as an NCHW tensor with channels_last strides."""
    if images_nhwc_uint8.dtype != np.uint8 or images_nhwc_uint8.ndim != 4:
        raise ValueError(f"expected uint8 (N, H, W, C) images, got {images_nhwc_uint8.dtype} "
                         f"{images_nhwc_uint8.shape}")
    x = torch.from_numpy(np.array(images_nhwc_uint8))  # a copy: the source may be a read-only memmap
    return x.to(device).permute(0, 3, 1, 2)


def augment(x: torch.Tensor, kind: str, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random training augmentation of a batch of NCHW images, computed on x's device.

    Every kind only moves pixels (one gather, nearest neighbour, zero or reflect fill): the
    output has x's shape and dtype, so uint8 in gives exact uint8 out; call normalize()
    afterwards. The output is channels_last. Random numbers come from `generator` (on any
    device), so a seeded generator reproduces a batch exactly.
      "cifar": translate by (dx, dy), each uniform in {-4..4}, with reflect padding, then
          flip horizontally with probability 1/2 (Mean Teacher's RandomTranslateWithReflect(4)
          and RandomHorizontalFlip, docs/method.md);
      "miniimagenet": rotate by an angle uniform in [-10, 10] degrees about the centre (zero
          fill), crop the input's size (84) at a random offset from the image zero-padded by
          8, flip with probability 1/2 (RandomRotation(10), RandomCrop(84, padding=8),
          RandomHorizontalFlip; nearest interpolation as torchvision's default);
      "none": x itself.
    It is `apply_augmentation(x, kind, draw_augmentation(len(x), kind, generator, x.device))`.
    """
    return apply_augmentation(x, kind, draw_augmentation(len(x), kind, generator, x.device))


def draw_augmentation(n: int, kind: str, generator: torch.Generator | None = None, device=None) -> tuple:
    """The random half of `augment`: per-image parameters, each an (n, 1, 1) tensor on `device`.

    "cifar": (flip, dy, dx), flip in {0, 1} and shifts in {-4..4}; "miniimagenet": (flip, dy,
    dx, angle), crop offsets in {0..16} and the angle in radians; "none": ().
    """
    if kind == "none":
        return ()
    if kind not in ("cifar", "miniimagenet"):
        raise ValueError(f"unknown augmentation {kind!r}; choose 'cifar', 'miniimagenet' or 'none'")
    gen_device = generator.device if generator is not None else device

    def randint(low, high):  # n integers uniform in [low, high]
        return torch.randint(low, high + 1, (n,), generator=generator, device=gen_device)

    if kind == "cifar":
        params = (randint(0, 1), randint(-4, 4), randint(-4, 4))
    else:
        params = (randint(0, 1), randint(0, 16), randint(0, 16),
                  (torch.rand(n, generator=generator, device=gen_device) * 20 - 10) * math.pi / 180)
    return tuple(p.to(device).view(n, 1, 1) for p in params)


def apply_augmentation(x: torch.Tensor, kind: str, params: tuple) -> torch.Tensor:
    """The deterministic half of `augment`: moves the pixels of x as `params` (from `draw_augmentation`) say.

    Free of random numbers and host synchronisation, so it compiles into the training step's graph.
    """
    if kind == "none":
        return x
    if kind not in ("cifar", "miniimagenet"):
        raise ValueError(f"unknown augmentation {kind!r}; choose 'cifar', 'miniimagenet' or 'none'")
    n, _, h, w = x.shape
    i = torch.arange(h, device=x.device).view(1, h, 1)
    j = torch.arange(w, device=x.device).view(1, 1, w)
    j = torch.where(params[0] == 1, w - 1 - j, j)  # horizontal flip, the last step
    valid = None
    if kind == "cifar":
        def reflect(k, size):  # reflect padding without repeating the edge, for |shift| < size
            return (size - 1) - ((size - 1) - k.abs()).abs()
        rows, cols = reflect(i - params[1], h), reflect(j - params[2], w)
    else:
        a, b = i + params[1] - 8, j + params[2] - 8  # crop of the 8-padded rotated image
        cos, sin = params[3].cos(), params[3].sin()
        cy, cx = (h - 1) / 2, (w - 1) / 2  # counter-clockwise rotation about the centre, inverse-mapped
        rows = torch.round(cy + cos * (a - cy) + sin * (b - cx)).long()
        cols = torch.round(cx + cos * (b - cx) - sin * (a - cy)).long()
        valid = (a >= 0) & (a < h) & (b >= 0) & (b < w) & (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)
        rows, cols = rows.clamp(0, h - 1), cols.clamp(0, w - 1)
    out = x.permute(0, 2, 3, 1)[torch.arange(n, device=x.device).view(n, 1, 1), rows, cols]  # (n, h, w, C)
    if valid is not None:
        out = out.masked_fill(~valid.unsqueeze(-1), 0)
    return out.permute(0, 3, 1, 2)


def normalize(x: torch.Tensor, mean, std) -> torch.Tensor:
    """(x / 255 - mean) / std per channel, for uint8 NCHW images, in float32."""
    if len(mean) != x.shape[1] or len(std) != x.shape[1]:
        raise ValueError(f"mean and std need one value per channel ({x.shape[1]}), got {mean} and {std}")
    mean = torch.as_tensor(mean, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)  # no copy if already there
    std = torch.as_tensor(std, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
    return (x.float() / 255 - mean) / std
