"""Tests of lpnb.data on small data written here in each real format, plus the real CIFAR-10 copy (slow)."""
import errno
import gzip
import io
import json
import os
import pickle
import re
import shutil
import tarfile
import threading
import time
import urllib.error
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from lpnb import data, sweep
from lpnb.data import ImageData, augment, labeled_indices, load_dataset, normalize, to_device

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "data"


def random_images(n, h=32, w=32, c=3, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, c), dtype=np.uint8)


def png_bytes(image):
    buf = io.BytesIO()
    Image.fromarray(image.squeeze(-1) if image.shape[-1] == 1 else image).save(buf, format="PNG")
    return buf.getvalue()


# --- CIFAR in torchvision's pickle format ------------------------------------------------------

TV_CLASSES = ["plane", "car", "bird"]
TV_TRAIN_LABELS, TV_TEST_LABELS = [0, 2, 1, 1, 0, 2, 2, 0, 1, 0], [2, 0, 1, 1]


def write_torchvision_cifar(root, name):
    """Write 10 training and 4 test images as torchvision stores CIFAR-10/100; return (train, test) images."""
    classes, train_labels, test_labels = TV_CLASSES, TV_TRAIN_LABELS, TV_TEST_LABELS
    train, test = random_images(10, seed=1), random_images(4, seed=2)
    label_key = "labels" if name == "cifar10" else "fine_labels"

    def dump(fname, images, labels):
        rows = images.transpose(0, 3, 1, 2).reshape(len(images), -1)  # CIFAR stores rows of R, G, B planes
        with open(folder / fname, "wb") as f:
            pickle.dump({"data": rows, label_key: labels}, f)

    if name == "cifar10":
        folder = root / "cifar-10-batches-py"
        folder.mkdir(exist_ok=True)
        for b in range(5):
            dump(f"data_batch_{b + 1}", train[2 * b:2 * b + 2], train_labels[2 * b:2 * b + 2])
        dump("test_batch", test, test_labels)
        meta = ("batches.meta", {"label_names": classes})
    else:
        folder = root / "cifar-100-python"
        folder.mkdir(exist_ok=True)
        dump("train", train, train_labels)
        dump("test", test, test_labels)
        meta = ("meta", {"fine_label_names": classes})
    with open(folder / meta[0], "wb") as f:
        pickle.dump(meta[1], f)
    return train, test


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_torchvision_cifar_format(tmp_path, monkeypatch, name):
    # torchvision checks the md5 of the official files; accept any existing file instead
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda f, md5=None: os.path.isfile(f))
    train, test = write_torchvision_cifar(tmp_path, name)
    d = load_dataset(name, tmp_path, cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(d.train_images, train)
    np.testing.assert_array_equal(d.test_images, test)
    np.testing.assert_array_equal(d.train_labels, TV_TRAIN_LABELS)
    np.testing.assert_array_equal(d.test_labels, TV_TEST_LABELS)
    assert d.train_labels.dtype == np.int64 and d.classes == TV_CLASSES
    assert d.mean == data.CIFAR_STATS[name][0] and d.std == data.CIFAR_STATS[name][1]


class FakeCIFAR10(torchvision.datasets.CIFAR10):
    """torchvision's CIFAR10 whose download writes `self.fetch(root)` instead and records the call in `calls`."""
    calls, fetch = [], None

    def __init__(self, root, train=True, download=False):
        if download:
            self.calls.append((root, download))
            self.fetch(root)
        else:
            super().__init__(root, train=train)


def fake_cifar10(monkeypatch, fetch):
    monkeypatch.setattr(FakeCIFAR10, "calls", [])
    monkeypatch.setattr(FakeCIFAR10, "fetch", staticmethod(fetch))
    monkeypatch.setitem(data.TORCHVISION, "cifar10", FakeCIFAR10)
    return FakeCIFAR10.calls


def test_an_empty_or_partial_torchvision_folder_is_no_source(tmp_path, monkeypatch):
    train, *_ = write_class_folders(tmp_path, "cifar10", as_tar=False)
    (tmp_path / "cifar-10-batches-py").mkdir()  # an interrupted download or unpack
    (tmp_path / "cifar-10-batches-py" / "batches.meta").write_bytes(b"")
    d = load_dataset("cifar10", tmp_path, cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(d.train_images, train)  # the good class-folder copy beside it
    # and download=True still downloads
    (tmp_path / "other" / "cifar-10-batches-py").mkdir(parents=True)
    calls = fake_cifar10(monkeypatch, lambda root: write_class_folders(root, "cifar10", as_tar=True))
    load_dataset("cifar10", tmp_path / "other", download=True, cache_dir=tmp_path / "cache")
    assert calls == [(tmp_path / "other", True)]
    with pytest.raises(ValueError, match="download must be True or False, got 'no'"):  # `papermill -p download no`
        load_dataset("cifar10", tmp_path / "other", download="no", cache_dir=tmp_path / "cache")
    assert len(calls) == 1  # nothing fetched


def test_a_corrupt_torchvision_copy_is_named_with_the_remedy(tmp_path, monkeypatch):
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda f, md5=None: os.path.isfile(f))
    train, _ = write_torchvision_cifar(tmp_path, "cifar10")
    folder = tmp_path / "cifar-10-batches-py"
    (folder / "data_batch_3").write_bytes(b"truncated")
    with pytest.raises(ValueError, match=f"{folder} is not a complete copy .*delete that folder, or load with "
                                         "download=True"):
        load_dataset("cifar10", tmp_path, cache_dir=tmp_path / "cache")
    # download=True hands the copy to torchvision, which checks it and downloads it again
    calls = fake_cifar10(monkeypatch, lambda root: write_torchvision_cifar(root, "cifar10"))
    d = load_dataset("cifar10", tmp_path, download=True, cache_dir=tmp_path / "cache")
    assert calls == [(tmp_path, True)]
    np.testing.assert_array_equal(d.train_images, train)


# --- class folders: directory tree and tar.gz ---------------------------------------------------

FOLDER_CLASSES = ["dog", "airplane", "cat"]  # written in this order; class index follows sorted names


def write_class_folders(root, name, as_tar, train_stems=None):
    """Write train/<class>/<stem>.png and test/<class>/<nnnn>.png; return what was written."""
    train = random_images(9, seed=3)
    train_cls = np.array([2, 0, 1, 1, 2, 0, 0, 1, 2])  # index into FOLDER_CLASSES
    stems = train_stems or [f"{i:05d}" for i in range(9)]
    test = random_images(5, seed=4)
    test_cls = np.array([1, 0, 2, 0, 1])
    files = {f"train/{FOLDER_CLASSES[c]}/{s}.png": png_bytes(im) for im, c, s in zip(train, train_cls, stems)}
    counters = {}
    for im, c in zip(test, test_cls):
        k = counters[c] = counters.get(c, -1) + 1
        files[f"test/{FOLDER_CLASSES[c]}/{k:04d}.png"] = png_bytes(im)
    if as_tar:
        with tarfile.open(root / f"{name}.tar.gz", "w:gz") as tar:
            for path, content in reversed(files.items()):  # an archive order unrelated to the indices
                info = tarfile.TarInfo(path)
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    else:
        for path, content in files.items():
            (root / name / path).parent.mkdir(parents=True, exist_ok=True)
            (root / name / path).write_bytes(content)
    return train, train_cls, stems, test, test_cls


def sorted_label(cls_positions):
    names = sorted(FOLDER_CLASSES)
    return np.array([names.index(FOLDER_CLASSES[c]) for c in cls_positions])


@pytest.mark.parametrize("as_tar", [False, True])
def test_class_folders_place_train_images_at_their_index(tmp_path, as_tar):
    train, train_cls, _, test, test_cls = write_class_folders(tmp_path, "cifar10", as_tar)
    d = load_dataset("cifar10", tmp_path, cache_dir=tmp_path / "cache")
    assert d.classes == ["airplane", "cat", "dog"]
    np.testing.assert_array_equal(d.train_images, train)  # file 0000k.png -> index k
    np.testing.assert_array_equal(d.train_labels, sorted_label(train_cls))
    # test set: ordered by (class name, file name)
    order = sorted(range(len(test)), key=lambda k: (FOLDER_CLASSES[test_cls[k]], k))
    np.testing.assert_array_equal(d.test_images, test[order])
    np.testing.assert_array_equal(d.test_labels, sorted_label(test_cls[order]))
    assert d.mean == data.CIFAR_STATS["cifar10"][0]


def test_class_folders_numbered_with_a_gap_are_refused(tmp_path):
    """A missing image would shift the index of every later one, and split files name images by index."""
    stems = ["00000", "00001", "00002", "00003", "00004", "00005", "00006", "00007", "00009"]  # 8 missing
    write_class_folders(tmp_path, "cifar100", True, stems)
    with pytest.raises(ValueError, match=r"named by their index, but \[8\] of 0..9 are missing.*complete copy"):
        load_dataset("cifar100", tmp_path, cache_dir=tmp_path / "cache")


def test_a_data_root_that_is_the_dataset_folder_itself_is_named(tmp_path):
    write_class_folders(tmp_path, "cifar10", False)
    with pytest.raises(FileNotFoundError, match=f"{tmp_path / 'cifar10'} holds train/ and test/ itself: give the "
                                                "folder above it as the data root, with this folder named cifar10/"):
        load_dataset("cifar10", tmp_path / "cifar10", cache_dir=tmp_path / "cache")


def test_a_data_root_that_does_not_exist_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(f"{tmp_path / 'datta'} does not exist (a typo?)")):
        load_dataset("cifar10", tmp_path / "datta", cache_dir=tmp_path / "cache")
    with pytest.raises(FileNotFoundError) as error:  # one that exists is not said not to
        load_dataset("cifar10", tmp_path, cache_dir=tmp_path / "cache")
    assert "does not exist" not in str(error.value)


def test_a_stray_file_among_images_named_by_their_index_is_named(tmp_path):
    """Ordered by class and file name instead, the images would no longer be at the indices split files name."""
    stems = ["00000", "00001", "00002", "00003", "00004", "00005", "00006", "00007", "00007 (copy)"]
    write_class_folders(tmp_path, "cifar100", False, stems)
    with pytest.raises(ValueError, match=r"named by their index except train/\w+/00007 \(copy\).png: remove those"):
        load_dataset("cifar100", tmp_path, cache_dir=tmp_path / "cache")


def test_an_index_that_names_two_images_is_refused(tmp_path):
    """Two 00003.png in two class folders (a copy): the images can be placed at no index, and ordered by class and
    file name instead they would silently no longer be at the indices split files name."""
    stems = ["00000", "00001", "00002", "00003", "00004", "00005", "00006", "00007", "00003"]
    write_class_folders(tmp_path, "cifar100", False, stems)
    with pytest.raises(ValueError, match=r"named by their index, but \[3\] name two images or more \(train/airplane/"
                                         r"00003.png, train/cat/00003.png\): remove the copies"):
        load_dataset("cifar100", tmp_path, cache_dir=tmp_path / "cache")


@pytest.mark.parametrize("stems", [["a", "b", "c", "d", "e", "f", "g", "h", "i"],  # not numbers
                                   ["a", "b", "c", "d", "e", "f", "g", "h", "²7"],  # a digit that is no decimal
                                   ["1000", "1037", "1042", "1100", "1203", "1500", "1501", "1777", "cover"],
                                   ["1000", "1037", "1042", "1100", "1203", "1500", "1501", "1777", "1999"],  # ids
                                   ["0", "0", "0", "1", "1", "1", "2", "2", "2"]])  # numbered within each class
def test_class_folders_without_an_index_are_ordered_by_class_and_name(tmp_path, stems):
    train, train_cls, stems, _, _ = write_class_folders(tmp_path, "cifar100", True, stems)
    d = load_dataset("cifar100", tmp_path, cache_dir=tmp_path / "cache")
    order = sorted(range(len(train)), key=lambda k: (FOLDER_CLASSES[train_cls[k]], stems[k]))
    np.testing.assert_array_equal(d.train_images, train[order])
    np.testing.assert_array_equal(d.train_labels, sorted_label(train_cls[order]))


def test_class_folders_decode_jpeg(tmp_path):
    image = np.full((32, 32, 3), (200, 30, 90), np.uint8)
    for split in ("train", "test"):
        for k, cls in enumerate(("cat", "frog")):
            (tmp_path / "cifar10" / split / cls).mkdir(parents=True)
            Image.fromarray(image).save(tmp_path / "cifar10" / split / cls / f"{k}.jpg", quality=95)
    d = load_dataset("cifar10", tmp_path, cache_dir=tmp_path / "cache")
    assert d.train_images.shape == (2, 32, 32, 3) and d.train_images.dtype == np.uint8
    assert np.abs(d.train_images.astype(int) - image).max() <= 3


def test_the_fingerprint_follows_the_pixels_not_the_container(tmp_path):
    for folder, as_tar in (("a", True), ("b", False)):
        (tmp_path / folder).mkdir()
        write_class_folders(tmp_path / folder, "cifar10", as_tar=as_tar)
    a = load_dataset("cifar10", tmp_path / "a", cache_dir=tmp_path / "cache")
    b = load_dataset("cifar10", tmp_path / "b", cache_dir=tmp_path / "cache")
    assert len(a.fingerprint) == 16 and a.fingerprint == b.fingerprint
    image = tmp_path / "b" / "cifar10" / "test" / "cat" / "0000.png"
    image.write_bytes(png_bytes(255 - np.asarray(Image.open(image))))
    assert load_dataset("cifar10", tmp_path / "b", cache_dir=tmp_path / "cache").fingerprint != a.fingerprint


def test_a_corrupt_image_is_named_with_the_remedy(tmp_path):
    write_class_folders(tmp_path, "cifar10", as_tar=False)
    bad = tmp_path / "cifar10" / "train" / "cat" / "00000.png"
    good = bad.read_bytes()
    bad.write_bytes(good[:40])  # truncated
    with pytest.raises(ValueError, match=f"{bad} is not a.* image.*: replace it with a good copy "
                                         r"\(removing it would shift the numbers of the images after it\)"):
        load_dataset("cifar10", tmp_path, cache_dir=tmp_path / "cache")
    bad.write_bytes(good)
    bad = tmp_path / "cifar10" / "test" / "cat" / "0000.png"
    bad.write_bytes(bad.read_bytes()[:40])
    with pytest.raises(ValueError, match=f"{bad} is not a.* image.*: remove it or replace it with a good"):
        load_dataset("cifar10", tmp_path, cache_dir=tmp_path / "cache")
    bad.write_bytes(good)
    notes = tmp_path / "cifar10" / "train" / "cat" / "notes.txt"  # not named by a number: removing shifts nothing
    notes.write_text("where the images came from")
    with pytest.raises(ValueError, match=f"^{notes} is not an image PIL can read: remove it or replace it"):
        load_dataset("cifar10", tmp_path, cache_dir=tmp_path / "cache")


def test_an_image_of_more_than_8_bits_is_refused_not_clipped_white(tmp_path):
    write_class_folders(tmp_path, "cifar10", as_tar=False)
    deep = tmp_path / "cifar10" / "train" / "cat" / "00000.png"
    Image.fromarray(np.full((32, 32), 1000, np.uint16)).save(deep)  # convert("RGB") made this 255: white
    with pytest.raises(ValueError, match=f"^{deep} is a I;16 image .*convert them to 8 bits"):
        load_dataset("cifar10", tmp_path, cache_dir=tmp_path / "cache")


@pytest.mark.parametrize("as_tar", [False, True])
def test_images_outside_the_class_folder_layout_are_named_not_dropped(tmp_path, as_tar):
    write_class_folders(tmp_path, "cifar10", as_tar=False)
    nested = tmp_path / "cifar10" / "train" / "cat" / "sub" / "x.png"
    nested.parent.mkdir()
    nested.write_bytes((tmp_path / "cifar10" / "test" / "cat" / "0000.png").read_bytes())
    (tmp_path / "cifar10" / "train" / "cat" / ".DS_Store").write_text("hidden: skipped")
    if as_tar:
        with tarfile.open(tmp_path / "cifar10.tar.gz", "w:gz") as tar:
            tar.add(tmp_path / "cifar10", "cifar10")
        shutil.rmtree(tmp_path / "cifar10")
    where = f"{tmp_path / 'cifar10.tar.gz'}:cifar10/train/cat/sub/x.png" if as_tar else str(nested)
    with pytest.raises(ValueError, match=f"^{re.escape(where)} is not at train/<class>/<file> or test/<class>"):
        load_dataset("cifar10", tmp_path, cache_dir=tmp_path / "cache")
    if not as_tar:  # a class folder that cannot be listed (as root, chmod cannot make one)
        shutil.rmtree(nested.parent)
        walk = os.walk
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(data.os, "walk", lambda top, onerror=None, **kw: (onerror and onerror(PermissionError(
                13, "Permission denied", str(Path(top) / "cat")))) or walk(top, onerror=onerror, **kw))
            with pytest.raises(PermissionError, match=r"cannot read .*train/cat \(Permission denied\): make it"):
                load_dataset("cifar10", tmp_path, cache_dir=tmp_path / "cache")


@pytest.mark.parametrize("link", ["symbolic", "hard"])
def test_a_link_in_a_tarball_is_named_not_dropped(tmp_path, link):
    """The same tree as a folder reads the linked file; a streamed tar.gz cannot: it would lose an image."""
    write_class_folders(tmp_path, "cifar10", as_tar=False)
    cat = tmp_path / "cifar10" / "test" / "cat"
    (cat / "copy.png").unlink(missing_ok=True)
    (os.symlink if link == "symbolic" else os.link)("0000.png" if link == "symbolic" else cat / "0000.png",
                                                    cat / "copy.png")
    tests = len(load_dataset("cifar10", tmp_path, cache_dir=tmp_path / "cache").test_labels)
    with tarfile.open(tmp_path / "cifar10.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "cifar10", ".")
    (tmp_path / "elsewhere").mkdir()
    os.rename(tmp_path / "cifar10", tmp_path / "elsewhere" / "cifar10")
    with pytest.raises(ValueError, match=r"cifar10.tar.gz:./test/cat/(copy|0000).png is a link, which lpnb cannot "
                                         r"follow in a tar.gz: make the archive again .*--hard-dereference"):
        load_dataset("cifar10", tmp_path, cache_dir=tmp_path / "cache")
    assert tests == len(load_dataset("cifar10", tmp_path / "elsewhere", cache_dir=tmp_path / "cache").test_labels)


def test_a_data_root_that_is_a_file_names_its_folder(tmp_path):
    (tmp_path / "cifar10.tar.gz").write_bytes(b"")
    with pytest.raises(ValueError, match=f"the data root {tmp_path / 'cifar10.tar.gz'} is a file: give the folder "
                                         f"that holds it \\({tmp_path}\\)"):
        load_dataset("cifar10", tmp_path / "cifar10.tar.gz")


def test_a_tarball_with_two_copies_or_beside_a_folder_is_not_read_silently(tmp_path):
    write_class_folders(tmp_path, "cifar10", as_tar=False)
    with tarfile.open(tmp_path / "cifar10.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "cifar10", "cifar10")
    with pytest.warns(UserWarning, match=r"cifar10.tar.gz and .*cifar10/ are both there: reading cifar10.tar.gz"):
        load_dataset("cifar10", tmp_path, cache_dir=tmp_path / "cache")
    with tarfile.open(tmp_path / "cifar10.tar.gz", "w:gz") as tar:  # as `tar czf cifar10.tar.gz .` in cifar10/
        tar.add(tmp_path / "cifar10", ".")
    os.rename(tmp_path / "cifar10", tmp_path / "elsewhere")
    assert load_dataset("cifar10", tmp_path, cache_dir=tmp_path / "cache").train_images.shape == (9, 32, 32, 3)
    os.rename(tmp_path / "elsewhere", tmp_path / "cifar10")
    with tarfile.open(tmp_path / "cifar10.tar.gz", "w:gz") as tar:  # its test images would be trained on
        tar.add(tmp_path / "cifar10", "cifar10")
        tar.add(tmp_path / "cifar10", "old/cifar10")
    shutil.rmtree(tmp_path / "cifar10")
    with pytest.raises(ValueError, match=r"holds more than one train/ and test/ tree \(\['cifar10', 'old/cifar10'\]"):
        load_dataset("cifar10", tmp_path, cache_dir=tmp_path / "cache")


def test_class_folders_one_class_odd_sizes_or_names_a_split_cannot_hold_are_refused(tmp_path):
    write_class_folders(tmp_path, "cifar10", as_tar=False)
    odd = tmp_path / "cifar10" / "test" / "dog" / "0000.png"
    odd.write_bytes(png_bytes(random_images(1, 40, 40, 3)[0]))
    with pytest.raises(ValueError, match=re.escape("images differ in size ((32, 32, 3) e.g. ") + r".*"
                       + re.escape(f"; (40, 40, 3) e.g. {odd}); resize them")):
        load_dataset("cifar10", tmp_path, cache_dir=tmp_path / "cache")
    odd.unlink()
    for split in ("train", "test"):
        (tmp_path / "cifar10" / split / "cat").rename(tmp_path / "cifar10" / split / "cat ")
    with pytest.raises(ValueError, match="the class folder name 'cat ' has spaces at an end"):
        load_dataset("cifar10", tmp_path, cache_dir=tmp_path / "cache")
    for split in ("train", "test"):
        for cls in ("cat ", "airplane"):
            shutil.rmtree(tmp_path / "cifar10" / split / cls)
    with pytest.raises(ValueError, match=r"one class folder \('dog'\): classification needs two classes or more"):
        load_dataset("cifar10", tmp_path, cache_dir=tmp_path / "cache")


def test_class_folders_named_differently_in_train_and_test_are_an_error(tmp_path):
    write_class_folders(tmp_path, "cifar10", as_tar=False)
    (tmp_path / "cifar10" / "test" / "cat").rename(tmp_path / "cifar10" / "test" / "kat")  # a typo
    with pytest.raises(ValueError, match=r"only in train/: \['cat'\], only in test/: \['kat'\]"):
        load_dataset("cifar10", tmp_path, cache_dir=tmp_path / "cache")
    (tmp_path / "cifar10" / "test" / "kat").rename(tmp_path / "cifar10" / "test" / "cat")
    for image in (tmp_path / "cifar10" / "test" / "cat").iterdir():
        image.unlink()  # an empty class folder
    with pytest.raises(ValueError, match=r"only in train/: \['cat'\], only in test/: \[\]; a class folder without "
                                         r"images counts as absent\): each class needs images in both"):
        load_dataset("cifar10", tmp_path, cache_dir=tmp_path / "cache")


def test_an_image_changed_behind_a_symlinked_folder_is_decoded_again(tmp_path):
    write_class_folders(tmp_path / "store", "cifar10", as_tar=False)  # data kept on another disk
    (tmp_path / "root" / "cifar10").mkdir(parents=True)
    for split in ("train", "test"):
        (tmp_path / "root" / "cifar10" / split).symlink_to(tmp_path / "store" / "cifar10" / split)
    first = load_dataset("cifar10", tmp_path / "root", cache_dir=tmp_path / "cache")
    assert first.train_images[0].max() > 0
    image = tmp_path / "store" / "cifar10" / "train" / "cat" / "00000.png"  # training image 0
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(image)
    again = load_dataset("cifar10", tmp_path / "root", cache_dir=tmp_path / "cache")
    assert again.train_images[0].max() == 0


def test_a_fresh_copy_of_a_tarball_finds_its_cache_and_another_tarball_does_not(tmp_path, monkeypatch):
    import lpnb.data
    (tmp_path / "a").mkdir()
    write_class_folders(tmp_path / "a", "cifar10", as_tar=True)
    first = load_dataset("cifar10", tmp_path / "a", cache_dir=tmp_path / "cache")
    copy = tmp_path / "b" / "cifar10.tar.gz"  # the same bytes elsewhere, with a new mtime (a GPU job's carried copy)
    copy.parent.mkdir()
    copy.write_bytes((tmp_path / "a" / "cifar10.tar.gz").read_bytes())
    os.utime(copy, (1e9, 1e9))
    decoded = []
    read = lpnb.data._read_class_folders
    monkeypatch.setattr(lpnb.data, "_read_class_folders", lambda *a: decoded.append(a) or read(*a))
    again = load_dataset("cifar10", tmp_path / "b", cache_dir=tmp_path / "cache")
    assert not decoded and again.fingerprint == first.fingerprint and again.source == str(copy)
    with open(copy, "r+b") as f:  # other bytes of the same size, the mtime kept: decoded again
        f.seek(copy.stat().st_size - 1)
        f.write(b"\x00" if f.read(1) != b"\x00" else b"\x01")
    os.utime(copy, (1e9, 1e9))
    try:
        load_dataset("cifar10", tmp_path / "b", cache_dir=tmp_path / "cache")
    except ValueError:  # the damaged gzip trailer: what matters is that it was read again
        pass
    assert len(decoded) == 1


def test_a_truncated_tarball_is_named_with_the_remedy(tmp_path):
    write_class_folders(tmp_path, "cifar10", as_tar=True)
    tar = tmp_path / "cifar10.tar.gz"
    tar.write_bytes(tar.read_bytes()[: tar.stat().st_size // 2])
    with pytest.raises(ValueError, match=f"{tar} is not a complete tar.gz archive .*copy or download it again"):
        load_dataset("cifar10", tmp_path, cache_dir=tmp_path / "cache")
    assert not list((tmp_path / "cache").iterdir())  # no empty cache entry left behind


def test_a_tarball_without_gzip_is_named_as_such(tmp_path):
    write_class_folders(tmp_path, "cifar10", as_tar=True)
    tar = tmp_path / "cifar10.tar.gz"
    tar.write_bytes(gzip.decompress(tar.read_bytes()))  # a plain tar under the name
    with pytest.raises(ValueError, match=f"{tar} is a tar archive without gzip compression: compress it"):
        load_dataset("cifar10", tmp_path, cache_dir=tmp_path / "cache")


@pytest.mark.parametrize("name, folder, files, as_tar", [
    ("cifar10", "cifar-10-batches-py", ["data_batch_1", "test_batch"], True),
    *[("cifar100", "cifar-100-python", ["train", "test", "meta"], as_tar) for as_tar in (True, False)]])
def test_torchvisions_copy_under_the_class_folders_name_says_where_it_belongs(tmp_path, name, folder, files, as_tar):
    if as_tar:  # torchvision's download, renamed
        with tarfile.open(tmp_path / f"{name}.tar.gz", "w:gz") as tar:
            for file in files:
                member = tarfile.TarInfo(f"{folder}/{file}")
                member.size = 1
                tar.addfile(member, io.BytesIO(b"x"))
        remedy = f"unpack it in the data root .* and remove {name}.tar.gz"
    else:  # its folder, renamed
        (tmp_path / name).mkdir()
        for file in files:
            (tmp_path / name / file).write_bytes(b"x")
        remedy = f"rename {name}/ to {folder}/"
    with pytest.raises(ValueError, match=rf"is torchvision's copy of CIFAR \({folder}/\), not class folders: {remedy}"):
        load_dataset(name, tmp_path, cache_dir=tmp_path / "cache")


@pytest.mark.parametrize("damage, why", [
    ("truncate_images", "ValueError"), ("meta_not_json", "JSONDecodeError"), ("meta_without_fingerprint", "KeyError"),
    ("zeroed_pixels", "do not match the fingerprint"), ("labels_swapped", "do not match the fingerprint"),
    ("fewer_classes", "labels are not all among its")])
def test_a_corrupt_cache_is_named_with_the_remedy(tmp_path, damage, why):
    write_class_folders(tmp_path, "cifar10", as_tar=True)
    load_dataset("cifar10", tmp_path, cache_dir=tmp_path / "cache")
    [entry] = (tmp_path / "cache").iterdir()
    meta = json.loads((entry / "meta.json").read_text())
    if damage == "truncate_images":
        (entry / "train_images.npy").write_bytes((entry / "train_images.npy").read_bytes()[:100])
    elif damage == "meta_not_json":
        (entry / "meta.json").write_text("{")
    elif damage == "meta_without_fingerprint":
        (entry / "meta.json").write_text('{"classes": [], "mean": [0], "std": [1], "source": "x"}')
    elif damage == "zeroed_pixels":  # a disk error: the same size, other bytes
        with open(entry / "train_images.npy", "r+b") as f:
            f.seek(-1000, os.SEEK_END)
            f.write(bytes(1000))
    elif damage == "labels_swapped":
        labels = np.load(entry / "train_labels.npy")
        np.save(entry / "train_labels.npy", labels[::-1])
    else:  # meta.json edited by hand
        (entry / "meta.json").write_text(json.dumps({**meta, "classes": meta["classes"][:-1]}))
    with pytest.raises(RuntimeError, match=f"cache {entry} is corrupt \\(.*{why}.*Delete that folder"):
        load_dataset("cifar10", tmp_path, cache_dir=tmp_path / "cache")


def test_an_unwritable_cache_is_named_before_anything_is_decoded(tmp_path, monkeypatch):
    write_class_folders(tmp_path, "cifar10", as_tar=True)
    (tmp_path / "a_file").write_text("not a folder")
    monkeypatch.setattr(data, "_read_class_folders", lambda *a: pytest.fail("decoded before the cache was checked"))
    with pytest.raises(OSError, match=r"cannot write the decoded-data cache .*a_file/cifar10-\w+ .*\$LPNB_CACHE_DIR"):
        load_dataset("cifar10", tmp_path, cache_dir=tmp_path / "a_file")


def test_the_cache_is_read_in_full_once_per_process_while_unchanged(tmp_path, monkeypatch):
    write_class_folders(tmp_path, "cifar10", as_tar=True)
    hashed = []
    fingerprint = data.content_fingerprint
    monkeypatch.setattr(data, "content_fingerprint", lambda arrays: hashed.append(1) or fingerprint(arrays))
    for _ in range(3):
        load_dataset("cifar10", tmp_path, cache_dir=tmp_path / "cache")
    assert len(hashed) == 1  # when it was written
    monkeypatch.setattr(data, "_VERIFIED", set())  # another process
    for _ in range(2):
        load_dataset("cifar10", tmp_path, cache_dir=tmp_path / "cache")
    assert len(hashed) == 2


def test_a_killed_cache_write_leaves_no_temporary_files_for_long(tmp_path):
    write_class_folders(tmp_path, "cifar10", as_tar=True)
    load_dataset("cifar10", tmp_path, cache_dir=tmp_path / "cache")
    [entry] = (tmp_path / "cache").iterdir()
    old, recent = entry / ".train_images.npy.abc.tmp", entry / ".test_images.npy.def.tmp"  # killed; under way
    for tmp in (old, recent):
        tmp.write_bytes(b"partial")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    load_dataset("cifar10", tmp_path, cache_dir=tmp_path / "cache")
    assert not old.exists() and recent.exists()



@pytest.mark.parametrize("error", [OSError(28, "No space left on device"), OSError("Not enough free space"),
                                   OSError("9216000 requested and 5242752 written"),  # numpy's short write
                                   RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos")])
def test_a_failed_write_names_the_file_and_keeps_the_old_one(tmp_path, error):
    path = tmp_path / "record.json"
    path.write_text("old")

    def write(f):  # a full disk: numpy raises OSError, torch.save RuntimeError
        f.write(b"new, partly")
        raise error
    with pytest.raises(type(error), match=f"writing {path} failed .*If the disk is full, free space, then run the "
                                          "same command again"):
        data.atomic_write(path, write)
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["record.json"]
    for other in (PermissionError(13, "Permission denied", str(path)), NotImplementedError("no")):  # not a full disk
        with pytest.raises(type(other)) as raised:
            data.atomic_write(path, lambda f, e=other: (_ for _ in ()).throw(e))
        assert raised.value is other  # as it was: its type, errno and file name (the CLI's path hint needs it)
    with pytest.raises(KeyboardInterrupt):  # not an error of the write: passed on as it is
        data.atomic_write(path, lambda f: (_ for _ in ()).throw(KeyboardInterrupt))


@pytest.mark.parametrize("stop", [KeyboardInterrupt(), SystemExit(-1), sweep.JobOutOfTime("SLURM's time limit")])
def test_a_signal_during_torch_save_is_passed_on_not_taken_for_a_full_disk(tmp_path, stop):
    """torch.save turns an exception raised in its file's write (a signal handler's) into a plain RuntimeError."""
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(b"old")

    class Interrupted:
        def __init__(self, f):
            self.f, self.writes = f, 0

        def write(self, b):
            self.writes += 1
            if self.writes == 2:
                raise stop
            return self.f.write(b)

        def flush(self):
            self.f.flush()
    with pytest.raises(type(stop)) as raised:
        data.atomic_write(path, lambda f: torch.save({"w": torch.zeros(1000)}, Interrupted(f)))
    assert raised.value is stop and path.read_bytes() == b"old" and len(list(tmp_path.iterdir())) == 1


def test_a_write_syncs_the_file_then_the_folder_that_names_it(tmp_path, monkeypatch):
    synced, fsync = [], os.fsync
    monkeypatch.setattr(data.os, "fsync", lambda fd: synced.append(os.readlink(f"/proc/self/fd/{fd}")) or fsync(fd))
    data.write_text(tmp_path / "a.txt", "x")
    assert synced[0].startswith(str(tmp_path / ".a.txt.")) and synced[1:] == [str(tmp_path)]


def test_a_signal_just_after_the_rename_is_passed_on_and_the_new_file_kept(tmp_path, monkeypatch):
    path, replace = tmp_path / "record.json", os.replace

    def replace_then_signal(src, dst):  # SIGTERM (lpnb's handler raises) between the rename and its return
        replace(src, dst)
        raise KeyboardInterrupt
    monkeypatch.setattr(data.os, "replace", replace_then_signal)
    with pytest.raises(KeyboardInterrupt):
        data.write_text(path, "new")
    assert path.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["record.json"]


def test_a_folder_not_writable_is_named_by_the_file_to_write(tmp_path, monkeypatch):
    def read_only(**kwargs):  # as mkstemp fails there (for a user other than root)
        raise PermissionError(13, "Permission denied", str(Path(kwargs["dir"]) / ".table2.csv.x1y2.tmp"))
    monkeypatch.setattr(data.tempfile, "mkstemp", read_only)
    with pytest.raises(PermissionError, match="Permission denied: the folder is not writable, so table2.csv cannot "
                                              "be written there; make it writable or choose another folder") as raised:
        data.atomic_write(tmp_path / "table2.csv", lambda f: f.write(b"x"))
    assert raised.value.filename == str(tmp_path / "table2.csv") and raised.value.errno == 13

def test_a_folder_on_a_read_only_file_system_is_named_with_the_remedy(tmp_path, monkeypatch):
    """A results folder on a read-only file system (root writes anywhere else): the folder to be made, or the
    file to be written, named with the remedy, not a bare OSError."""
    mkdir, mkstemp = Path.mkdir, data.tempfile.mkstemp

    def read_only(self, *args, **kwargs):
        if self == tmp_path / "ro" or tmp_path / "ro" in self.parents:
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return mkdir(self, *args, **kwargs)
    monkeypatch.setattr(Path, "mkdir", read_only)
    for folder in (tmp_path / "ro", tmp_path / "ro" / "runs" / "r"):
        with pytest.raises(PermissionError, match=re.escape(f"Read-only file system: the folder {folder} cannot be "
                                                            "made there; make its parent writable or choose another")):
            data.make_folder(folder)
    with pytest.raises(PermissionError, match="the folder .*ro cannot be made there"):
        data.atomic_write(tmp_path / "ro" / "table2.csv", lambda f: f.write(b"x"))
    monkeypatch.setattr(data.tempfile, "mkstemp", lambda **kw: (_ for _ in ()).throw(
        OSError(errno.EROFS, "Read-only file system", kw["dir"])) if kw["dir"] == tmp_path else mkstemp(**kw))
    with pytest.raises(PermissionError, match="Read-only file system: the folder is not writable, so table2.csv "):
        data.atomic_write(tmp_path / "table2.csv", lambda f: f.write(b"x"))  # it exists, but cannot be written in
    data.make_folder(tmp_path / "rw")  # elsewhere: made
    assert (tmp_path / "rw").is_dir()


# --- Mini-ImageNet stand-in: Ravi & Larochelle csv files + images ------------------------------

@pytest.mark.parametrize("layout", ["images", "class_folders"])
def test_miniimagenet_csv_format(tmp_path, layout):
    folder = tmp_path / "miniimagenet"
    folder.mkdir()
    written = {}  # file name -> (wnid, expected 84x84 image)
    rng = np.random.default_rng(5)
    # one class per csv file; n03 has the real 600 images per class, of another size (resized)
    for csv, wnid, count in (("train", "n02", 12), ("val", "n01", 12), ("test", "n03", 600)):
        lines = ["filename,label"]
        for k in range(count):
            fname = f"{wnid}{k:08d}.jpg"
            if count == 600:
                colour = rng.integers(0, 256, 3, dtype=np.uint8)
                image, expected = np.empty((10, 14, 3), np.uint8), np.empty((84, 84, 3), np.uint8)
                image[:], expected[:] = colour, colour  # a constant image stays constant when resized
            else:
                image = expected = rng.integers(0, 256, (84, 84, 3), dtype=np.uint8)
            path = folder / ("images" if layout == "images" else wnid) / fname
            path.parent.mkdir(exist_ok=True)
            Image.fromarray(image).save(path, format="PNG")  # lossless, whatever the name says
            written[fname] = (wnid, expected)
            lines.append(f"{fname},{wnid}")
        bom = "\ufeff" * (csv == "train")  # a byte-order mark, as Excel writes: not part of the header
        (folder / f"{csv}.csv").write_text(bom + "\n".join(lines) + "\n", encoding="utf-8")

    d = load_dataset("miniimagenet", tmp_path, cache_dir=tmp_path / "cache")
    assert d.classes == ["n01", "n02", "n03"]
    assert d.train_images.shape == (520, 84, 84, 3) and d.test_images.shape == (104, 84, 84, 3)
    np.testing.assert_array_equal(np.bincount(d.train_labels), [10, 10, 500])
    np.testing.assert_array_equal(np.bincount(d.test_labels), [2, 2, 100])
    # every image written is in exactly one of train and test, with its class
    unseen = {}
    for fname, (wnid, expected) in written.items():
        unseen.setdefault((wnid, expected.tobytes()), []).append(fname)
    test_files = []
    for split, images, labels in (("train", d.train_images, d.train_labels),
                                  ("test", d.test_images, d.test_labels)):
        for image, label in zip(images, labels):
            fname = unseen[d.classes[label], image.tobytes()].pop()
            if split == "test" and fname.startswith("n03"):
                test_files.append(fname)
    assert not any(unseen.values())
    assert test_files != [f"n03{k:08d}.jpg" for k in range(500, 600)]  # drawn at random, not the last 100
    again = load_dataset("miniimagenet", tmp_path, cache_dir=tmp_path / "cache2")
    np.testing.assert_array_equal(again.train_images, d.train_images)
    # mean/std are those of the training images
    pixels = d.train_images.reshape(-1, 3) / 255
    np.testing.assert_allclose(d.mean, pixels.mean(0), atol=1e-9)
    np.testing.assert_allclose(d.std, pixels.std(0), atol=1e-9)


def test_miniimagenet_missing_image_names_both_places(tmp_path):
    folder = tmp_path / "miniimagenet"
    folder.mkdir()
    for csv in ("train", "val", "test"):
        (folder / f"{csv}.csv").write_text("filename,label\nn0100000001.jpg,n01\n")
    with pytest.raises(FileNotFoundError, match="n0100000001.jpg.*images.*n01"):
        load_dataset("miniimagenet", tmp_path, cache_dir=tmp_path / "cache")


@pytest.mark.parametrize("line", ["n0100000001.jpg,n01,", "n0100000001.jpg n01"])
def test_a_malformed_miniimagenet_csv_line_is_named(tmp_path, line):
    (tmp_path / "miniimagenet").mkdir()
    for csv in ("train", "val", "test"):
        (tmp_path / "miniimagenet" / f"{csv}.csv").write_text(f"filename,label\nn0100000000.jpg,n01\n{line}\n")
    with pytest.raises(ValueError, match=f"train.csv:3: expected 'filename,label', got '{line}'"):
        load_dataset("miniimagenet", tmp_path, cache_dir=tmp_path / "cache")


# --- Fashion-MNIST idx files ------------------------------------------------------------------------

def idx_bytes(array):
    header = bytes([0, 0, 8, array.ndim]) + np.array(array.shape, ">i4").tobytes()
    return header + array.astype(np.uint8).tobytes()


def write_fashion_mnist(folder, gz):
    """The four idx files of a 7 + 3 image Fashion-MNIST in folder; returns their arrays."""
    rng = np.random.default_rng(6)
    arrays = {"train-images-idx3-ubyte": rng.integers(0, 256, (7, 28, 28), dtype=np.uint8),
              "train-labels-idx1-ubyte": rng.integers(0, 10, 7, dtype=np.uint8),
              "t10k-images-idx3-ubyte": rng.integers(0, 256, (3, 28, 28), dtype=np.uint8),
              "t10k-labels-idx1-ubyte": rng.integers(0, 10, 3, dtype=np.uint8)}
    folder.mkdir(parents=True)
    for stem, array in arrays.items():
        if gz:
            (folder / f"{stem}.gz").write_bytes(gzip.compress(idx_bytes(array)))
        else:
            (folder / stem).write_bytes(idx_bytes(array))
    return arrays


@pytest.mark.parametrize("folder,gz", [("fashion-mnist", False), ("FashionMNIST/raw", True)])
def test_fashion_mnist_idx_files(tmp_path, monkeypatch, folder, gz):
    monkeypatch.setattr(data, "FASHION_MNIST_SYSTEM", tmp_path / "absent")
    arrays = write_fashion_mnist(tmp_path / folder, gz)
    d = load_dataset("fashion-mnist", tmp_path, cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(d.train_images, arrays["train-images-idx3-ubyte"][..., None])
    np.testing.assert_array_equal(d.test_images, arrays["t10k-images-idx3-ubyte"][..., None])
    np.testing.assert_array_equal(d.train_labels, arrays["train-labels-idx1-ubyte"])
    np.testing.assert_array_equal(d.test_labels, arrays["t10k-labels-idx1-ubyte"])
    assert d.train_labels.dtype == np.int64 and len(d.classes) == 10
    x = arrays["train-images-idx3-ubyte"] / 255
    np.testing.assert_allclose(d.mean, [x.mean()], atol=1e-9)
    np.testing.assert_allclose(d.std, [x.std()], atol=1e-9)


@pytest.mark.filterwarnings("ignore:no fashion-mnist under")  # the "system" copy: the root holds none
@pytest.mark.parametrize("where,damage", [("fashion-mnist", "truncate"), ("fashion-mnist", "truncate_gz"),
                                          ("fashion-mnist", "not_gzip"), ("system", "truncate_gz")])
def test_a_damaged_idx_file_is_named_with_the_remedy(tmp_path, monkeypatch, where, damage):
    monkeypatch.setattr(data, "FASHION_MNIST_SYSTEM", tmp_path / "system")
    write_fashion_mnist(tmp_path / where, gz=damage != "truncate")
    bad = tmp_path / where / ("train-images-idx3-ubyte" + ("" if damage == "truncate" else ".gz"))
    bad.write_bytes(b"not gzip" if damage == "not_gzip" else bad.read_bytes()[:500])
    remedy = ("apt-get install --reinstall dataset-fashion-mnist" if where == "system"
              else f"download it again into {tmp_path / where}")
    with pytest.raises(ValueError, match=f"{bad} is truncated or corrupt .*{remedy}"):
        load_dataset("fashion-mnist", tmp_path, cache_dir=tmp_path / "cache")


@pytest.mark.parametrize("stem, array", [("train-labels-idx1-ubyte", np.zeros(6)),  # 7 images
                                          ("t10k-labels-idx1-ubyte", np.full(3, 200))])  # no such class
def test_idx_files_that_disagree_are_refused(tmp_path, monkeypatch, stem, array):
    monkeypatch.setattr(data, "FASHION_MNIST_SYSTEM", tmp_path / "absent")
    write_fashion_mnist(tmp_path / "fashion-mnist", gz=False)
    (tmp_path / "fashion-mnist" / stem).write_bytes(idx_bytes(array))
    with pytest.raises(ValueError, match=f"labels of shape \\({len(array)},\\), the largest {int(array.max())}; "
                                         "Fashion-MNIST has one label in 0..9 per 28x28 image"):
        load_dataset("fashion-mnist", tmp_path, cache_dir=tmp_path / "cache")


def test_a_missing_idx_file_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "FASHION_MNIST_SYSTEM", tmp_path / "absent")
    write_fashion_mnist(tmp_path / "fashion-mnist", gz=True)
    (tmp_path / "fashion-mnist" / "t10k-labels-idx1-ubyte.gz").unlink()
    remedy = f"download it again into {tmp_path / 'fashion-mnist'}"
    with pytest.raises(FileNotFoundError, match=r"t10k-labels-idx1-ubyte\[.gz\] is missing: Fashion-MNIST needs "
                                                f"the four idx files .*{remedy}"):
        load_dataset("fashion-mnist", tmp_path, cache_dir=tmp_path / "cache")


def test_a_root_that_holds_debians_fashion_mnist_is_read_without_a_warning(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "FASHION_MNIST_SYSTEM", tmp_path / "datasets" / "fashion-mnist")
    write_fashion_mnist(data.FASHION_MNIST_SYSTEM, gz=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_dataset("fashion-mnist", tmp_path / "datasets", cache_dir=tmp_path / "cache")
    with pytest.warns(UserWarning, match=f"no fashion-mnist under {tmp_path / 'empty'}: reading Debian's copy"):
        load_dataset("fashion-mnist", tmp_path / "empty", cache_dir=tmp_path / "cache")


@pytest.mark.skipif(not (data.FASHION_MNIST_SYSTEM / "train-images-idx3-ubyte.gz").exists(),
                    reason="Debian package dataset-fashion-mnist not installed")
def test_fashion_mnist_debian_package(tmp_path):
    with pytest.warns(UserWarning, match=f"no fashion-mnist under {tmp_path}: reading Debian's copy in "):
        d = load_dataset("fashion-mnist", tmp_path, cache_dir=tmp_path / "cache")  # a root without it
    assert d.train_images.shape == (60000, 28, 28, 1) and d.test_images.shape == (10000, 28, 28, 1)
    np.testing.assert_array_equal(np.bincount(d.train_labels), [6000] * 10)
    np.testing.assert_array_equal(np.bincount(d.test_labels), [1000] * 10)


# --- the cache --------------------------------------------------------------------------------------

def test_second_load_comes_from_the_cache(tmp_path, monkeypatch):
    write_class_folders(tmp_path, "cifar10", as_tar=True)
    first = load_dataset("cifar10", tmp_path, cache_dir=tmp_path / "cache")

    def fail(*_, **__):
        raise AssertionError("the source was decoded again")
    monkeypatch.setattr(data, "_decode_image", fail)
    second = load_dataset("cifar10", tmp_path, cache_dir=tmp_path / "cache")
    assert isinstance(second.train_images, np.memmap) and not second.train_images.flags.writeable
    for key in ("train_images", "train_labels", "test_images", "test_labels"):
        np.testing.assert_array_equal(getattr(first, key), getattr(second, key))
    assert (second.classes, second.mean, second.std) == (first.classes, first.mean, first.std)
    assert not list((tmp_path / "cache").rglob("*.tmp"))  # a changed tarball: test_a_fresh_copy_of_a_tarball...


def test_interrupted_cache_write_leaves_no_entry(tmp_path, monkeypatch):
    write_class_folders(tmp_path, "cifar10", as_tar=False)
    save, calls = np.save, []

    def save_then_fail(f, a):
        calls.append(1)
        if len(calls) == 3:
            f.write(b"partial")
            raise KeyboardInterrupt
        save(f, a)
    monkeypatch.setattr(np, "save", save_then_fail)
    with pytest.raises(KeyboardInterrupt):
        load_dataset("cifar10", tmp_path, cache_dir=tmp_path / "cache")
    monkeypatch.setattr(np, "save", save)
    [entry] = (tmp_path / "cache").iterdir()
    assert sorted(p.name for p in entry.iterdir()) == ["train_images.npy", "train_labels.npy"]  # no tmp, no meta
    d = load_dataset("cifar10", tmp_path, cache_dir=tmp_path / "cache")
    assert d.test_images.shape == (5, 32, 32, 3)


# --- missing data and defaults ----------------------------------------------------------------------

def test_missing_data_says_what_to_get_and_where(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError) as err:
        load_dataset("cifar10", tmp_path, cache_dir=tmp_path / "cache")
    message = str(err.value)
    for text in (str(tmp_path), "torchvision.datasets.CIFAR10(", "download=True",
                 "cifar-10-python.tar.gz", "cifar10.tar.gz", "train/<class>/",
                 "--data-root", "$LPNB_DATA_ROOT", f"python -c \"import lpnb.data; lpnb.data.load_dataset('cifar10', "
                 f"'{tmp_path}', download=True)\"; in notebook 09_figure7: -p download True"):
        assert text in message
    with pytest.raises(FileNotFoundError, match="(?s)train.csv.*meta-learning-lstm.*miniimagenet/images"):
        load_dataset("miniimagenet", tmp_path)
    monkeypatch.setattr(data, "FASHION_MNIST_SYSTEM", tmp_path / "absent")
    with pytest.raises(FileNotFoundError, match="(?s)apt-get install dataset-fashion-mnist.*FashionMNIST"):
        load_dataset("fashion-mnist", tmp_path)
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset("mnist", tmp_path)


def test_download_goes_through_torchvision_when_nothing_is_found(tmp_path, monkeypatch):
    calls = fake_cifar10(monkeypatch, lambda root: write_class_folders(root, "cifar10", as_tar=True))
    d = load_dataset("cifar10", tmp_path, download=True, cache_dir=tmp_path / "cache")
    assert calls == [(tmp_path, True)] and len(d.train_images) == 9
    load_dataset("cifar10", tmp_path, download=True, cache_dir=tmp_path / "cache")
    assert len(calls) == 1  # a local copy is not fetched again


def test_a_failed_download_says_so_and_where_to_put_the_data(tmp_path, monkeypatch):
    def offline(root):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    fake_cifar10(monkeypatch, offline)
    with pytest.raises(FileNotFoundError, match=r"(?s)downloading cifar10 failed \(URLError: .*name resolution.*"
                                                "class folders") as error:
        load_dataset("cifar10", tmp_path, download=True, cache_dir=tmp_path / "cache")
    assert "download True" not in str(error.value) and "download=True)\"" not in str(error.value)  # it was tried


def test_a_download_that_is_no_archive_says_so_and_where_to_put_the_data(tmp_path, monkeypatch):
    def portal_page(root):
        raise RuntimeError("File not found or corrupted.")  # torchvision's words for a failed md5 check

    fake_cifar10(monkeypatch, portal_page)
    with pytest.raises(FileNotFoundError, match=r"(?s)downloading cifar10 failed \(RuntimeError: File not found .*"
                                                "class folders"):
        load_dataset("cifar10", tmp_path, download=True, cache_dir=tmp_path / "cache")


def test_a_root_is_read_from_where_it_is_given(tmp_path, monkeypatch):
    """~ is the home folder (a download goes there too); a relative root is named absolute in the data."""
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "data").mkdir()
    write_class_folders(tmp_path / "data", "cifar10", as_tar=True)
    monkeypatch.chdir(tmp_path)
    for root in ("~/data", "data"):
        d = load_dataset("cifar10", root, cache_dir=tmp_path / "cache")
        assert d.source == str(tmp_path / "data" / "cifar10.tar.gz")
    monkeypatch.setenv("LPNB_DATA_ROOT", "~/data")
    assert data.find_dataset("cifar10") == ("folders", tmp_path / "data" / "cifar10.tar.gz")


def test_a_killed_cache_writes_leftovers_are_removed_by_the_next_decode(tmp_path):
    write_class_folders(tmp_path, "cifar10", as_tar=True)
    entry = tmp_path / "cache" / f"cifar10-{data._fingerprint(tmp_path / 'cifar10.tar.gz')}"
    entry.mkdir(parents=True)
    old, recent = entry / ".train_images.npy.x1.tmp", entry / ".train_images.npy.x2.tmp"  # killed; under way
    for f in (old, recent):
        f.write_bytes(b"partial")
    os.utime(old, (time.time() - 7200,) * 2)
    load_dataset("cifar10", tmp_path, cache_dir=tmp_path / "cache")
    assert not old.exists() and recent.exists()


def test_default_paths_follow_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("LPNB_DATA_ROOT", str(tmp_path / "d"))
    monkeypatch.setenv("LPNB_CACHE_DIR", str(tmp_path / "c"))
    assert data.default_data_root() == tmp_path / "d" and data.default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("LPNB_DATA_ROOT")
    monkeypatch.delenv("LPNB_CACHE_DIR")
    expected = next((p for p in (REPO / "data", SHARED) if p.is_dir()), REPO / "data")
    assert data.default_data_root() == expected
    assert data.default_cache_dir() == Path.home() / ".cache" / "lpnb"


def test_each_dataset_and_its_split_files_are_looked_for_in_every_data_root(tmp_path, monkeypatch):
    repo, shared = tmp_path / "repo", tmp_path / "shared" / "data"
    monkeypatch.setattr(data, "REPO", repo)
    monkeypatch.delenv("LPNB_DATA_ROOT", raising=False)
    shared.mkdir(parents=True)
    write_class_folders(shared, "cifar10", as_tar=True)
    (repo / "data" / "miniimagenet").mkdir(parents=True)  # another dataset put beside the repository
    write_class_folders(repo / "data", "cifar100", as_tar=True)
    assert data.find_dataset("cifar10") == ("folders", shared / "cifar10.tar.gz")
    d10 = load_dataset("cifar10", cache_dir=tmp_path / "cache")
    d100 = load_dataset("cifar100", cache_dir=tmp_path / "cache")
    papers = {}
    for root, name in ((shared, "cifar10"), (repo / "data", "cifar10"), (shared, "cifar100")):
        papers[root, name] = root / "labels" / name / "3_balanced_labels" / "10.txt"
        papers[root, name].parent.mkdir(parents=True)
        papers[root, name].touch()
    results = tmp_path / "results"
    assert data.split_file(d10, 3, 0, results_dir=results) == papers[shared, "cifar10"]  # its own root's first
    # then the others', for the official training set only: those of other data index another set
    assert data.split_file(d100, 3, 0, results_dir=results).is_relative_to(results)
    (results / "splits").rename(tmp_path / "drawn")
    monkeypatch.setattr(data, "OFFICIAL_TRAIN_IMAGES", len(d100.train_labels))
    assert data.split_file(d100, 3, 0, results_dir=results) == papers[shared, "cifar100"]
    # a data root given is that folder only
    assert data.find_dataset("cifar10", repo / "data") is None
    assert data.split_file(d100, 3, 0, root=repo / "data", results_dir=results).is_relative_to(results)
    monkeypatch.setenv("LPNB_DATA_ROOT", str(repo / "data"))
    assert data.find_dataset("cifar10") is None
    d10_here = load_dataset("cifar10", shared, cache_dir=tmp_path / "cache")
    assert data.split_file(d10_here, 3, 0, results_dir=results) == papers[shared, "cifar10"]  # beside its data
    own = tmp_path / "own"  # a user's own copy elsewhere: never the paper's splits of another copy
    own.mkdir()
    write_class_folders(own, "cifar10", as_tar=True)
    d_own = load_dataset("cifar10", own, cache_dir=tmp_path / "cache")
    monkeypatch.delenv("LPNB_DATA_ROOT")
    assert data.split_file(d_own, 3, 0, results_dir=results).is_relative_to(results)
    (own / "labels" / "cifar10" / "3_balanced_labels").mkdir(parents=True)
    (own / "labels" / "cifar10" / "3_balanced_labels" / "11.txt").touch()  # its own split files: found
    assert data.split_file(d_own, 3, 1, results_dir=results) == own / "labels/cifar10/3_balanced_labels/11.txt"


# --- labeled splits ---------------------------------------------------------------------------------

def toy_data(labels, classes=("a_b", "c", "d e")):
    labels = np.asarray(labels, np.int64)
    images = np.zeros((len(labels), 4, 4, 3), np.uint8)
    return ImageData("toy", images, labels, images[:1], labels[:1], list(classes), (0.5,) * 3, (0.25,) * 3)


def test_paper_split_file_is_read(tmp_path):
    d = toy_data([0, 1, 2, 0, 1, 2, 0, 1, 2])
    folder = tmp_path / "labels" / "toy" / "3_balanced_labels"
    folder.mkdir(parents=True)
    (folder / "11.txt").write_text("7_c.png c\n3_a_b.png a_b\n2_d e.png d e\n")
    idx = labeled_indices(d, 3, 1, root=tmp_path, results_dir=tmp_path / "results")
    np.testing.assert_array_equal(idx, [2, 3, 7])
    assert idx.dtype == np.int64 and not (tmp_path / "results").exists()


def test_a_split_past_the_papers_files_is_drawn_with_a_warning(tmp_path):
    d = toy_data([0, 1, 2, 0, 1, 2, 0, 1, 2])
    folder = tmp_path / "labels" / "toy" / "3_balanced_labels"
    folder.mkdir(parents=True)
    for name in ("10.txt", "11.txt"):  # the paper's splits 0 and 1
        (folder / name).write_text("7_c.png c\n3_a_b.png a_b\n2_d e.png d e\n")
    with pytest.warns(UserWarning, match="split 2: the paper's split files for 3 labels are splits 0..1; this one is "
                                         "a seeded draw of our own"):
        labeled_indices(d, 3, 2, root=tmp_path, results_dir=tmp_path / "results")
    assert (tmp_path / "results" / "splits" / "toy" / "3" / "2.txt").is_file()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # without paper files for the label count: drawn as usual, no warning
        labeled_indices(d, 6, 2, root=tmp_path, results_dir=tmp_path / "results")


def test_paper_split_with_wrong_class_is_an_error(tmp_path, monkeypatch):
    d = toy_data([0, 1, 2, 0, 1, 2])
    folder = tmp_path / "labels" / "toy" / "2_balanced_labels"
    folder.mkdir(parents=True)
    (folder / "10.txt").write_text("0_a_b.png a_b\n1_d e.png d e\n")
    with pytest.raises(ValueError, match="image 1 is labeled 'd e'.*is 'c' in toy: this file does not fit .*'s "
                                         "training images; a split file of your own names .*: correct it, or delete "
                                         "it .*If it is one of the paper's files .*give your own data a root"):
        labeled_indices(d, 2, 0, root=tmp_path)  # data of another size than CIFAR's: the file may be the user's own
    monkeypatch.setattr(data, "OFFICIAL_TRAIN_IMAGES", len(d.train_labels))  # CIFAR's size: the paper's file
    with pytest.raises(ValueError, match="image 1 is labeled 'd e'.*is 'c' in toy: the paper's split files index the "
                                         "official toy training set, and .* is not it. Give your own data a root of "
                                         "its own"):
        labeled_indices(d, 2, 0, root=tmp_path)
    (folder / "10.txt").write_text("0_a_b.png a_b\n1_a_b.png c\n")  # the class in the file name is checked too
    with pytest.raises(ValueError, match="10.txt:2: image 1 is labeled 'a_b' in its file name but is 'c' in toy"):
        labeled_indices(d, 2, 0, root=tmp_path)
    (folder / "10.txt").write_text("0_a_b.png a_b\n6_c.png c\n")  # one past the last image
    with pytest.raises(ValueError, match="10.txt:2: index 6 is outside the 6 training images"):
        labeled_indices(d, 2, 0, root=tmp_path)


@pytest.mark.parametrize("n_train, split, warned", [(50_000, 0, True), (600, 0, False), (50_000, 12, False)])
def test_the_official_cifar10_without_the_papers_split_files_is_drawn_with_a_warning(tmp_path, n_train, split,
                                                                                   warned):
    """The official set's size, without the paper's file for its split: warned; your own data, or a split past
    the paper's ten: drawn without a word."""
    labels = np.arange(n_train) % 10
    images = np.zeros((n_train, 1, 1, 3), np.uint8)
    d = ImageData("cifar10", images, labels, images[:1], labels[:1], [str(c) for c in range(10)], (0.5,) * 3,
                  (0.25,) * 3, source=str(tmp_path / "cifar10.tar.gz"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data.split_file(d, 500, split, root=tmp_path, results_dir=tmp_path / "results")
    messages = [str(w.message) for w in caught]
    assert any("no labels/cifar10/500_balanced_labels/10.txt (the paper's split) in" in m and "its runs are not the "
               "paper's cells. Copy the paper's labels/ folder beside the data" in m for m in messages) == warned
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # drawn once, then read: no warning again
        data.split_file(d, 500, split, root=tmp_path, results_dir=tmp_path / "results")


def test_an_unreadable_data_root_is_named(tmp_path, monkeypatch):
    exists, unreadable = Path.exists, tmp_path / "other"

    def denied(path):  # as chmod 000 does for a user other than root (the tests may run as root)
        if path.is_relative_to(unreadable):
            raise PermissionError(13, "Permission denied", str(path))
        return exists(path)
    monkeypatch.setattr(Path, "exists", denied)
    (tmp_path / "cifar10" / "train").mkdir(parents=True)  # found in the first root: the second is not read
    assert data._find_source("cifar10", [tmp_path, unreadable]) == ("folders", tmp_path / "cifar10")
    tmp_path = unreadable
    with pytest.raises(PermissionError, match=f"cannot read {tmp_path / 'cifar-10-batches-py'}/data_batch_1 \\("
                                              f"Permission denied\\) in {tmp_path}, where lpnb looks for cifar10: "
                                              "make it readable, or give another"):
        data.find_dataset("cifar10", tmp_path)


def test_torchvisions_copy_beside_your_own_class_folders_is_not_read_silently(tmp_path):
    tv = torchvision.datasets.CIFAR10
    (tmp_path / tv.base_folder).mkdir()
    for name in [f for f, _ in tv.train_list + tv.test_list] + [tv.meta["filename"]]:
        (tmp_path / tv.base_folder / name).touch()
    assert data.find_dataset("cifar10", tmp_path)[0] == "torchvision"
    (tmp_path / "cifar10" / "train").mkdir(parents=True)
    with pytest.warns(UserWarning, match="cifar-10-batches-py/ and .*cifar10/ are both there: reading "
                                         "cifar-10-batches-py, not cifar10; move one away to read the other"):
        assert data.find_dataset("cifar10", tmp_path)[0] == "torchvision"


def test_seeded_balanced_split_is_written_and_reloaded(tmp_path):
    labels = np.random.default_rng(7).integers(0, 3, 60)
    d = toy_data(labels)
    results = tmp_path / "results"
    idx = labeled_indices(d, 9, 2, root=tmp_path, results_dir=results)
    assert idx.dtype == np.int64 and np.all(np.diff(idx) > 0)
    np.testing.assert_array_equal(np.bincount(labels[idx]), [3, 3, 3])
    path = results / "splits" / "toy" / "9" / "2.txt"
    lines = path.read_text().splitlines()
    assert sorted(lines) == sorted(f"{i}_{d.classes[labels[i]]}.png {d.classes[labels[i]]}" for i in idx)
    # the file is what later runs read, and the draw itself is seeded
    np.testing.assert_array_equal(labeled_indices(d, 9, 2, root=tmp_path, results_dir=results), idx)
    path.write_text("\n".join(lines[::-1]) + "\n")
    np.testing.assert_array_equal(labeled_indices(d, 9, 2, root=tmp_path, results_dir=results), idx)
    path.unlink()
    np.testing.assert_array_equal(labeled_indices(d, 9, 2, root=tmp_path, results_dir=results), idx)
    other = labeled_indices(d, 9, 3, root=tmp_path, results_dir=results)
    assert not np.array_equal(other, idx)


def test_a_split_drawn_for_other_data_says_it_can_be_deleted(tmp_path):
    results = tmp_path / "results"
    labeled_indices(toy_data([0, 1, 2] * 4), 3, 0, root=tmp_path, results_dir=results)
    other = toy_data([2, 1, 0] * 4)  # new data of the same name
    with pytest.raises(ValueError, match="lpnb drew this split for other toy data; delete the file and the next run"):
        labeled_indices(other, 3, 0, root=tmp_path, results_dir=results)
    (results / "splits" / "toy" / "3" / "0.txt").unlink()
    labeled_indices(other, 3, 0, root=tmp_path, results_dir=results)


@pytest.mark.parametrize("content, why", [(b"\xf1\x00\xff", " is not a text file of split lines"),
                                          (b"3 a\n", ":1: expected '<index>_<class>.png <class>', got '3 a'"),
                                          ("\u00b2_a.png a\n".encode(), ":1: expected '<index>_<class>.png <class>'")])
def test_an_unreadable_split_file_is_named_with_the_remedy(tmp_path, content, why):
    results, d = tmp_path / "results", toy_data([0, 1, 2] * 4)
    labeled_indices(d, 3, 0, root=tmp_path, results_dir=results)
    drawn = results / "splits" / "toy" / "3" / "0.txt"
    paper = tmp_path / "labels" / "toy" / "3_balanced_labels" / "10.txt"
    paper.parent.mkdir(parents=True)
    for path, remedy in ((drawn, "delete it, and the next run draws this split again"),
                         (paper, "correct it, or delete it and the next run draws a seeded split")):
        path.write_bytes(content)
        with pytest.raises(ValueError, match=re.escape(f"{path}{why}") + ".*" + re.escape(remedy)):
            labeled_indices(d, 3, 0, root=tmp_path, results_dir=results)


def test_a_split_file_cut_short_is_named_with_the_remedy(tmp_path):
    results, d = tmp_path / "results", toy_data([0, 1, 2] * 4)
    labeled_indices(d, 3, 0, root=tmp_path, results_dir=results)
    drawn = results / "splits" / "toy" / "3" / "0.txt"
    first, second, _ = drawn.read_text().splitlines()
    drawn.write_text(first + "\n")
    with pytest.raises(ValueError, match=re.escape(f"{drawn}: expected 3 distinct images, found 1 distinct in 1 "
                                                   "lines: delete it, and the next run draws this split again")):
        labeled_indices(d, 3, 0, root=tmp_path, results_dir=results)
    drawn.write_text(f"{first}\n{second}\n{first}\n")  # as many lines as labels, one image twice
    with pytest.raises(ValueError, match=re.escape(f"{drawn}: expected 3 distinct images, found 2 distinct in 3 ")):
        labeled_indices(d, 3, 0, root=tmp_path, results_dir=results)


def test_unbalanced_split_request_is_an_error(tmp_path):
    d = toy_data([0, 1, 2] * 5)
    with pytest.raises(ValueError, match="multiple of the number of classes"):
        labeled_indices(d, 7, 0, root=tmp_path, results_dir=tmp_path)
    with pytest.raises(ValueError, match="fewer than"):
        labeled_indices(d, 18, 0, root=tmp_path, results_dir=tmp_path)


# --- device, augmentation, normalisation ------------------------------------------------------------

def test_to_device_gives_channels_last_nchw_from_a_readonly_memmap(tmp_path):
    images = random_images(4, 5, 6, 3)
    np.save(tmp_path / "x.npy", images)
    mm = np.load(tmp_path / "x.npy", mmap_mode="r")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        x = to_device(mm, "cpu")
    assert x.shape == (4, 3, 5, 6) and x.dtype == torch.uint8
    assert x.is_contiguous(memory_format=torch.channels_last)
    np.testing.assert_array_equal(x.numpy(), images.transpose(0, 3, 1, 2))
    with pytest.raises(ValueError, match="uint8"):
        to_device(images.astype(np.float32), "cpu")


def shifted_copies(image, pad=4):
    """All 9 x 9 x 2 translations (reflect padding) and flips of one HWC image, by numpy."""
    h, w, _ = image.shape
    padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode="reflect")
    out = []
    for dy in range(-pad, pad + 1):
        for dx in range(-pad, pad + 1):
            moved = padded[pad - dy:pad - dy + h, pad - dx:pad - dx + w]
            out += [(dy, dx, False, moved), (dy, dx, True, moved[:, ::-1])]
    return out


def test_cifar_augmentation_is_a_reflect_translation_and_flip():
    image = random_images(1, 12, 12, 3, seed=8)[0]
    x = to_device(np.repeat(image[None], 300, axis=0), "cpu")
    out = augment(x, "cifar", torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == torch.uint8
    candidates = shifted_copies(image)
    found = []
    for o in out.permute(0, 2, 3, 1).numpy():
        matches = [c[:3] for c in candidates if np.array_equal(c[3], o)]
        assert len(matches) == 1
        found.append(matches[0])
    assert len(set(found)) > 100  # 162 possibilities, 300 draws
    assert {f[0] for f in found} == {f[1] for f in found} == set(range(-4, 5))  # every shift of 4 x 4 translations
    flips = np.mean([f[2] for f in found])
    assert 0.35 < flips < 0.65


def test_augmentation_is_reproducible_with_a_generator():
    x = to_device(random_images(16, 84, 84, 3, seed=9), "cpu")
    for kind in ("cifar", "miniimagenet"):
        a = augment(x, kind, torch.Generator().manual_seed(1))
        b = augment(x.contiguous(), kind, torch.Generator().manual_seed(1))  # memory format does not matter
        c = augment(x, kind, torch.Generator().manual_seed(2))
        assert torch.equal(a, b) and not torch.equal(a, c)
    assert augment(x, "none") is x
    with pytest.raises(ValueError, match="unknown augmentation"):
        augment(x, "autoaugment")


def test_miniimagenet_augmentation_is_a_small_rotation_crop_and_flip():
    # encode each pixel's position: channel 0 = row, 1 = column, 2 = 255 (0 marks zero fill)
    rows, cols = np.meshgrid(np.arange(84), np.arange(84), indexing="ij")
    image = np.stack([rows, cols, np.full_like(rows, 255)], -1).astype(np.uint8)
    x = to_device(np.repeat(image[None], 40, axis=0), "cpu")
    out = augment(x, "miniimagenet", torch.Generator().manual_seed(3))
    assert out.shape == (40, 3, 84, 84) and out.dtype == torch.uint8
    out = out.permute(0, 2, 3, 1).numpy().astype(float)
    dets, angles, shifts, filled = [], [], [], 0
    for o in out:
        valid = o[..., 2] == 255
        assert np.all(o[~valid] == 0)
        filled += (~valid).sum()
        # source position ~ A @ (row, col) + t: a rotation (maybe mirrored) by <= 10 degrees
        design = np.column_stack([rows[valid], cols[valid], np.ones(valid.sum())])
        coef, *_ = np.linalg.lstsq(design, o[valid][:, :2], rcond=None)
        A, t = coef[:2].T, coef[2]
        np.testing.assert_allclose(A.T @ A, np.eye(2), atol=0.03)
        assert np.abs(design @ coef - o[valid][:, :2]).max() <= 1.0  # nearest neighbour
        angle = np.degrees(np.arctan2(abs(A[0, 1]), abs(A[0, 0])))
        centre = np.array([41.5, 41.5])
        shift = np.linalg.norm(A @ centre + t - centre)  # from the crop offset, up to 8 px per axis
        assert angle <= 10.5 and shift <= 8 * np.sqrt(2) + 1
        dets.append(np.linalg.det(A))
        angles.append(angle)
        shifts.append(shift)
    assert filled > 0 and min(dets) < 0 < max(dets)  # zero fill and both flip states occur
    assert max(angles) > 5 and max(shifts) > 5


def test_normalize_matches_the_formula():
    images = random_images(3, 5, 5, 3, seed=10)
    x = to_device(images, "cpu")
    mean, std = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
    y = normalize(x, mean, std)
    assert y.dtype == torch.float32 and y.shape == x.shape
    expected = (images / 255 - np.array(mean)) / np.array(std)
    np.testing.assert_allclose(y.permute(0, 2, 3, 1).numpy(), expected, atol=1e-5)
    with pytest.raises(ValueError, match="one value per channel"):
        normalize(x, (0.5,), (0.25,))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_augment_on_gpu_matches_cpu():
    x = to_device(random_images(8, 84, 84, 3, seed=11), "cuda")
    for kind in ("cifar", "miniimagenet"):
        gpu = augment(x, kind, torch.Generator().manual_seed(4))  # CPU generator drives the GPU batch
        cpu = augment(x.cpu(), kind, torch.Generator().manual_seed(4))
        assert gpu.device.type == "cuda" and torch.equal(gpu.cpu(), cpu)


# --- the real CIFAR-10 copy -------------------------------------------------------------------------

@pytest.fixture(scope="session")
def session_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("lpnb-cache")


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED / "cifar10.tar.gz").is_file(), reason="../shared/data/cifar10.tar.gz not present")
def test_real_cifar10_tar_and_paper_split(session_cache):
    d = load_dataset("cifar10", SHARED, cache_dir=session_cache)
    assert d.train_images.shape == (50000, 32, 32, 3) and d.test_images.shape == (10000, 32, 32, 3)
    np.testing.assert_array_equal(np.bincount(d.train_labels), [5000] * 10)
    np.testing.assert_array_equal(np.bincount(d.test_labels), [1000] * 10)
    assert d.classes[0] == "airplane" and d.classes[9] == "truck"
    mean = np.array([d.train_images[..., c].mean() for c in range(3)]) / 255
    np.testing.assert_allclose(mean, [0.4914, 0.4822, 0.4465], atol=0.002)
    idx = labeled_indices(d, 4000, 0, root=SHARED)  # the paper's file: classes checked against the images' labels
    assert len(idx) == 4000
    np.testing.assert_array_equal(np.bincount(d.train_labels[idx]), [400] * 10)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_the_committed_records_name_the_pixels_decoded_here(name, session_cache, tmp_path, monkeypatch):
    """Each committed record holds the fingerprint of the pixels, labels and labeled split it was trained on
    (GPU machines' records included): decoding our copy here gives the same, so a decoder that moves one
    pixel fails."""
    from lpnb.config import make_config
    from lpnb.experiment import load_run_data

    if not (SHARED / f"{name}.tar.gz").is_file():
        pytest.skip(f"../shared/data/{name}.tar.gz not present")
    monkeypatch.setenv("LPNB_CACHE_DIR", str(session_cache))
    records = [json.loads(p.read_text()) for p in sorted((REPO / "results" / "runs").glob(f"{name}-*/record.json"))]
    assert records, f"no committed {name} record"
    fingerprints = {}
    for r in records:  # one fingerprint per labeled split
        if (r["labels"], r["split"]) not in fingerprints:
            cfg = make_config("cpu", dataset=name, labels=r["labels"], split=r["split"], method="supervised")
            run_data = load_run_data(cfg, SHARED, tmp_path)
            fingerprints[r["labels"], r["split"]] = run_data.fingerprint
        assert r["data_fingerprint"] == fingerprints[r["labels"], r["split"]], r["run_id"]
        assert r["data_content"] == run_data.data.fingerprint, r["run_id"]
    assert data.PROJECT_COPIES[run_data.data.fingerprint] == name  # how records say they used our JPEG copy


def test_a_split_asked_for_wrongly_is_refused_by_name(tmp_path):
    d = toy_data([0, 0, 0, 1, 1, 1, 2, 2])
    for n_labels, split, message in ((3, True, "split must be an integer >= 0, got True"),
                                     (3, -1, "split must be an integer >= 0, got -1"),
                                     ("3", 0, "n_labels must be an integer >= 1, got '3'"),
                                     (3.0, 0, "n_labels must be an integer >= 1, got 3.0")):
        with pytest.raises(ValueError, match=re.escape(message)):
            labeled_indices(d, n_labels, split, root=tmp_path, results_dir=tmp_path)
    with pytest.raises(ValueError, match="class 'd e' has 2 training images, fewer than the 3 per class"):
        labeled_indices(d, 9, 0, root=tmp_path, results_dir=tmp_path)
    assert not (tmp_path / "splits").exists()


def test_locked_gives_up_at_its_timeout(tmp_path):
    path, holding, release = tmp_path / ".lock", threading.Event(), threading.Event()

    def hold():
        with data.locked(path):
            holding.set()
            release.wait(60)
    holder = threading.Thread(target=hold)
    holder.start()
    holding.wait(60)
    for timeout in (0, 0.2):
        with pytest.raises(TimeoutError, match=f"{path} is still locked by another process"):
            with data.locked(path, timeout=timeout):
                pytest.fail("locked while another holds it")
    threading.Timer(0.3, release.set).start()
    with data.locked(path, timeout=60) as waited:  # let go before the timeout: taken
        assert waited is True
    holder.join(10)
    with data.locked(path, timeout=0) as waited:  # free: taken at once
        assert waited is False


def test_locked_says_whether_it_waited_for_another_holder(tmp_path):
    path, got = tmp_path / ".lock", []

    def take():
        with data.locked(path) as waited:
            got.append(waited)
    with data.locked(path) as waited:
        assert waited is False
        other = threading.Thread(target=take)
        other.start()
        other.join(0.5)
        assert other.is_alive()  # flock: waits for this holder
    other.join(10)
    assert got == [True]


def test_a_file_system_without_locks_is_named_with_the_lock_it_could_not_take(tmp_path, monkeypatch):
    """Lustre mounted without -o flock, or NFS without its lock service: flock fails with ENOSYS or ENOLCK."""
    import errno
    import fcntl

    def no_locks(f, flags):
        raise OSError(errno.ENOSYS, os.strerror(errno.ENOSYS))
    monkeypatch.setattr(fcntl, "flock", no_locks)
    with pytest.raises(OSError, match=f"cannot lock {tmp_path / '.lock'} \\(Function not implemented\\): .* a file "
                                      "system with flock locks") as error:
        with data.locked(tmp_path / ".lock"):
            pytest.fail("went on without the lock")
    assert error.value.errno == errno.ENOSYS
