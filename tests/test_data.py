"""Tests of clipunlearn.data: the dataset registry and the manifest / class-folder loaders.

Every fixture is built in pytest's tmp_path from a few tiny random JPEGs; one test reads the
project's shared data in place and is skipped where that folder is absent.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clipunlearn.data import (
    DEFAULT_TEMPLATE,
    ENV_DATA_ROOT,
    ImageSet,
    dataset_names,
    get_dataset_spec,
    load_image_set,
    paper_datasets,
    resolve_data_root,
)
from clipunlearn.errors import ClipUnlearnError, DataError, UnknownNameError

CLASSES = ["face", "leopard", "motorbike"]
PER_SPLIT = {"train": 3, "test": 2}  # images per class and split
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


# --- helpers -----------------------------------------------------------------------------------

def _jpeg(path: Path, seed: int, size: int = 8) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
    Image.fromarray(pixels, "RGB").save(path, format="JPEG")


def _write_manifest(folder: Path, rows: list[str], header: str = "path,label,split") -> Path:
    path = folder / "manifest.csv"
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def data_root(tmp_path: Path) -> Path:
    """<root>/caltech101 in the manifest layout: 3 classes, 3 train + 2 test images each."""
    root = tmp_path / "data"
    folder = root / "caltech101"
    folder.mkdir(parents=True)
    (folder / "classes.txt").write_text("\n".join(CLASSES) + "\n", encoding="utf-8")
    rows = []
    seed = 0
    for label in range(len(CLASSES)):
        for split, n in PER_SPLIT.items():
            for i in range(n):
                rel = f"images/{label}/{split}_{i}.jpg"
                _jpeg(folder / rel, seed)
                seed += 1
                rows.append(f"{rel},{label},{split}")
    _write_manifest(folder, rows)
    return root


@pytest.fixture(autouse=True)
def _no_env_data_root(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test depends on the CLIPUNLEARN_DATA of the shell that runs pytest."""
    monkeypatch.delenv(ENV_DATA_ROOT, raising=False)


# --- manifest layout ---------------------------------------------------------------------------

def test_manifest_layout_parses(data_root: Path) -> None:
    test = load_image_set("caltech101", data_root, "test")
    assert isinstance(test, ImageSet)
    assert test.name == "caltech101" and test.split == "test"
    assert test.classnames == CLASSES
    assert len(test) == len(CLASSES) * PER_SPLIT["test"] == len(test.paths)
    assert test.labels == [0, 0, 1, 1, 2, 2]
    assert all(p.name.startswith("test_") for p in test.paths)
    assert all(p.parent.name == str(y) for p, y in zip(test.paths, test.labels))
    assert test.source.startswith("manifest:")
    assert test.templates == (DEFAULT_TEMPLATE,)

    train = load_image_set("caltech101", data_root, "train")
    assert len(train) == len(CLASSES) * PER_SPLIT["train"]
    assert sorted(set(train.labels)) == [0, 1, 2]
    assert all(p.name.startswith("train_") for p in train.paths)
    assert set(train.paths).isdisjoint(test.paths)


def test_load_decodes_rgb_image(data_root: Path) -> None:
    images = load_image_set("caltech101", data_root, "test")
    im = images.load(0)
    assert im.mode == "RGB" and im.size == (8, 8)
    assert images.describe(0) == str(images.paths[0])


def test_unknown_split_is_refused(data_root: Path) -> None:
    with pytest.raises(DataError, match="Unknown split 'val'"):
        load_image_set("caltech101", data_root, "val")


def test_subset_keeps_and_excludes_classes(data_root: Path) -> None:
    images = load_image_set("caltech101", data_root, "train")
    kept = images.subset(classes=[0, 2])
    assert set(kept.labels) == {0, 2} and len(kept) == 2 * PER_SPLIT["train"]
    assert kept.classnames == CLASSES  # labels keep their meaning
    assert all(images.labels[images.paths.index(p)] == y for p, y in zip(kept.paths, kept.labels))

    rest = images.subset(exclude=[1])
    assert rest.labels == kept.labels and rest.paths == kept.paths
    only_two = images.subset(classes=[1, 2], exclude=[1])
    assert set(only_two.labels) == {2}
    assert len(images.subset(classes=[])) == 0
    assert images.subset().paths == images.paths
    assert len(images) == len(CLASSES) * PER_SPLIT["train"]  # the original is untouched


def test_class_index_exact_match(data_root: Path) -> None:
    images = load_image_set("caltech101", data_root, "test")
    assert [images.class_index(c) for c in CLASSES] == [0, 1, 2]


def test_class_index_suggests_close_name(data_root: Path) -> None:
    images = load_image_set("caltech101", data_root, "test")
    with pytest.raises(UnknownNameError, match="'leopard'") as info:
        images.class_index("leopards")
    assert "Did you mean" in str(info.value)
    assert isinstance(info.value, ClipUnlearnError)


def test_class_index_is_case_sensitive(data_root: Path) -> None:
    images = load_image_set("caltech101", data_root, "test")
    with pytest.raises(UnknownNameError, match="'leopard'"):
        images.class_index("Leopard")
    with pytest.raises(UnknownNameError):
        images.class_index(" face")


def test_fingerprint_is_stable_and_tracks_changes(data_root: Path) -> None:
    first = load_image_set("caltech101", data_root, "test")
    again = load_image_set("caltech101", data_root, "test")
    assert first.fingerprint() == again.fingerprint()
    assert first.fingerprint() != load_image_set("caltech101", data_root, "train").fingerprint()
    assert first.fingerprint() != first.subset(classes=[0, 1]).fingerprint()
    # another spelling of the same root (relative, through a link) finds the same images
    link = data_root.parent / "root-link"
    link.symlink_to(data_root, target_is_directory=True)
    relative = os.path.relpath(link, Path.cwd())
    assert load_image_set("caltech101", relative, "test").fingerprint() == first.fingerprint()

    before = first.fingerprint()
    changed = first.paths[0]
    _jpeg(changed, seed=999, size=16)  # another image in the same place
    st = changed.stat()
    os.utime(changed, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert load_image_set("caltech101", data_root, "test").fingerprint() != before


# --- data root ---------------------------------------------------------------------------------

def test_data_root_from_argument(data_root: Path) -> None:
    assert resolve_data_root(data_root) == data_root
    assert resolve_data_root(str(data_root)) == data_root
    assert len(load_image_set("caltech101", str(data_root), "test")) == 6


def test_data_root_from_env(data_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_DATA_ROOT, str(data_root))
    assert resolve_data_root(None) == data_root
    assert resolve_data_root("") == data_root
    assert len(load_image_set("caltech101", split="test")) == 6


def test_argument_wins_over_env(data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_DATA_ROOT, str(tmp_path / "elsewhere"))
    assert resolve_data_root(data_root) == data_root


def test_missing_data_root_names_the_option() -> None:
    with pytest.raises(DataError, match="--data-root") as info:
        resolve_data_root(None)
    assert ENV_DATA_ROOT in str(info.value)
    with pytest.raises(DataError, match="--data-root"):
        load_image_set("caltech101", None, "test")


def test_data_root_that_does_not_exist(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-folder"
    with pytest.raises(DataError, match="does not exist") as info:
        load_image_set("caltech101", missing, "test")
    assert str(missing) in str(info.value)
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    with pytest.raises(DataError, match="not a folder"):
        resolve_data_root(a_file)


# --- registry ----------------------------------------------------------------------------------

def test_unknown_dataset_suggests_close_name(data_root: Path) -> None:
    with pytest.raises(UnknownNameError, match="'caltech101'") as info:
        load_image_set("caltech10", data_root, "test")
    assert "Did you mean" in str(info.value)
    assert "Unknown dataset 'caltech10'" in str(info.value)
    with pytest.raises(UnknownNameError):
        get_dataset_spec("mnist")


@pytest.mark.parametrize("alias, name", [
    ("flowers", "oxford_flowers"),
    ("flowers102", "oxford_flowers"),
    ("Oxford-Flowers", "oxford_flowers"),
    ("oxfordflowers", "oxford_flowers"),
    ("caltech", "caltech101"),
    ("dogs", "stanford_dogs"),
    ("cars", "stanford_cars"),
    ("faces", "pins_faces"),
    ("food", "food101"),
    (" CIFAR10 ", "cifar10"),
])
def test_aliases(alias: str, name: str) -> None:
    assert get_dataset_spec(alias).name == name


def test_alias_reads_the_canonical_folder(data_root: Path) -> None:
    assert load_image_set("caltech", data_root, "test").name == "caltech101"


def test_every_dataset_is_registered() -> None:
    expected = {"stanford_dogs", "stanford_cars", "caltech101", "oxford_flowers", "pins_faces",
                "cifar10", "imagenette", "food101", "imagenet"}
    assert set(dataset_names()) == expected
    for name in expected:
        assert get_dataset_spec(name).name == name
    assert set(paper_datasets()) == {"stanford_dogs", "stanford_cars", "caltech101", "oxford_flowers"}


def test_dataset_templates() -> None:
    assert get_dataset_spec("oxford_flowers").templates == ("a photo of a {}, a type of flower.",)
    assert get_dataset_spec("flowers").templates[0].format("rose") == "a photo of a rose, a type of flower."
    assert get_dataset_spec("caltech101").templates == (DEFAULT_TEMPLATE,)
    assert DEFAULT_TEMPLATE == "a photo of a {}."


def test_missing_dataset_folder_is_named(data_root: Path) -> None:
    with pytest.raises(DataError, match="No folder for dataset 'pins_faces'") as info:
        load_image_set("pins_faces", data_root, "test")
    assert str(data_root / "pins_faces") in str(info.value)


def test_missing_dataset_folder_suggests_similar_folder(data_root: Path) -> None:
    (data_root / "stanford-dogs").mkdir()
    with pytest.raises(DataError, match="'stanford-dogs'"):
        load_image_set("stanford_dogs", data_root, "test")


def test_empty_dataset_folder(data_root: Path) -> None:
    (data_root / "stanford_dogs").mkdir()
    with pytest.raises(DataError, match="neither manifest.csv nor a test/ folder"):
        load_image_set("stanford_dogs", data_root, "test")


# --- malformed manifests -----------------------------------------------------------------------

def test_manifest_missing_column(data_root: Path) -> None:
    folder = data_root / "caltech101"
    _write_manifest(folder, ["images/0/test_0.jpg,0"], header="path,label")
    with pytest.raises(DataError, match=r"lacks the column\(s\) \['split'\]") as info:
        load_image_set("caltech101", data_root, "test")
    assert "path,label,split" in str(info.value)


def test_manifest_label_out_of_range(data_root: Path) -> None:
    folder = data_root / "caltech101"
    _write_manifest(folder, ["images/0/test_0.jpg,0,test", "images/0/test_1.jpg,3,test",
                             "images/1/test_0.jpg,-1,test"])
    with pytest.raises(DataError, match=r"has 2 label\(s\)") as info:
        load_image_set("caltech101", data_root, "test")
    message = str(info.value)
    assert "[0, 2]" in message and "line 3: 3" in message and "line 4: -1" in message


def test_manifest_non_integer_label(data_root: Path) -> None:
    folder = data_root / "caltech101"
    _write_manifest(folder, ["images/0/test_0.jpg,face,test", "images/0/test_1.jpg,0,test"])
    with pytest.raises(DataError, match="not integers") as info:
        load_image_set("caltech101", data_root, "test")
    assert "line 2: 'face'" in str(info.value)


def test_manifest_bad_label_in_other_split_is_not_read(data_root: Path) -> None:
    folder = data_root / "caltech101"
    _write_manifest(folder, ["images/0/test_0.jpg,0,test", "images/0/train_0.jpg,9,train"])
    assert load_image_set("caltech101", data_root, "test").labels == [0]
    with pytest.raises(DataError, match="not integers"):
        load_image_set("caltech101", data_root, "train")


def test_manifest_short_row_is_a_data_error(data_root: Path) -> None:
    folder = data_root / "caltech101"
    _write_manifest(folder, ["images/0/test_0.jpg,0,test", "images/0/test_1.jpg,0"])
    with pytest.raises(DataError, match="lines 3"):
        load_image_set("caltech101", data_root, "test")


def test_manifest_missing_images_are_counted(data_root: Path) -> None:
    folder = data_root / "caltech101"
    _write_manifest(folder, ["images/0/test_0.jpg,0,test", "images/0/gone_1.jpg,0,test",
                             "images/2/gone_2.jpg,2,test"])
    with pytest.raises(DataError, match=r"^2 image path\(s\)") as info:
        load_image_set("caltech101", data_root, "test")
    assert "gone_1.jpg" in str(info.value) and "relative to the dataset folder" in str(info.value)


def test_manifest_without_rows_for_split(data_root: Path) -> None:
    folder = data_root / "caltech101"
    _write_manifest(folder, ["images/0/train_0.jpg,0,train"])
    with pytest.raises(DataError, match="no rows with split 'test'") as info:
        load_image_set("caltech101", data_root, "test")
    assert "['train']" in str(info.value)


def test_classes_with_duplicates(data_root: Path) -> None:
    (data_root / "caltech101" / "classes.txt").write_text("face\nleopard\nface\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"twice: \['face'\]"):
        load_image_set("caltech101", data_root, "test")


def test_classes_file_empty(data_root: Path) -> None:
    (data_root / "caltech101" / "classes.txt").write_text("\n  \n", encoding="utf-8")
    with pytest.raises(DataError, match="lists no class names"):
        load_image_set("caltech101", data_root, "test")


def test_manifest_without_classes_file(data_root: Path) -> None:
    (data_root / "caltech101" / "classes.txt").unlink()
    with pytest.raises(DataError, match="classes.txt' is missing"):
        load_image_set("caltech101", data_root, "test")


def test_classes_file_without_manifest(data_root: Path) -> None:
    (data_root / "caltech101" / "manifest.csv").unlink()
    with pytest.raises(DataError, match="manifest"):
        load_image_set("caltech101", data_root, "test")


# --- class-folder layout -----------------------------------------------------------------------

def _class_folders(root: Path, name: str, split: str, folders: dict[str, int]) -> Path:
    seed = 100
    for cls, n in folders.items():
        for i in range(n):
            _jpeg(root / name / split / cls / f"{i}.jpg", seed)
            seed += 1
    return root / name


def test_class_folder_layout(tmp_path: Path) -> None:
    folder = _class_folders(tmp_path, "pins_faces", "test", {"tom_hanks": 2, "emma_watson": 3, "zendaya": 1})
    (folder / "test" / "zendaya" / "notes.txt").write_text("not an image")
    images = load_image_set("faces", tmp_path, "test")
    assert images.name == "pins_faces" and images.source.startswith("folders:")
    assert images.classnames == ["emma watson", "tom hanks", "zendaya"]  # sorted folders, "_" -> " "
    assert images.labels == [0, 0, 0, 1, 1, 2]
    assert all(p.suffix == ".jpg" for p in images.paths)
    assert images.class_index("tom hanks") == 1
    with pytest.raises(UnknownNameError, match="'tom hanks'"):
        images.class_index("tom_hanks")
    assert images.load(5).mode == "RGB"


def test_class_folder_layout_follows_classes_file(tmp_path: Path) -> None:
    folder = _class_folders(tmp_path, "pins_faces", "test", {"tom_hanks": 1, "emma_watson": 2})
    (folder / "classes.txt").write_text("tom hanks\nemma watson\n", encoding="utf-8")
    images = load_image_set("pins_faces", tmp_path, "test")
    assert images.classnames == ["tom hanks", "emma watson"]
    assert sorted(images.labels) == [0, 1, 1]
    assert all(("tom_hanks" in str(p)) == (y == 0) for p, y in zip(images.paths, images.labels))


def test_class_folder_not_in_classes_file(tmp_path: Path) -> None:
    folder = _class_folders(tmp_path, "pins_faces", "test", {"tom_hanks": 1, "stranger": 1})
    (folder / "classes.txt").write_text("tom hanks\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"\['stranger'\]"):
        load_image_set("pins_faces", tmp_path, "test")


def test_class_folder_layout_without_classes_or_images(tmp_path: Path) -> None:
    (tmp_path / "pins_faces" / "test").mkdir(parents=True)
    with pytest.raises(DataError, match="holds no class folders"):
        load_image_set("pins_faces", tmp_path, "test")
    (tmp_path / "pins_faces" / "test" / "empty_class").mkdir()
    with pytest.raises(DataError, match="No images"):
        load_image_set("pins_faces", tmp_path, "test")


# --- the project's shared data, read in place --------------------------------------------------

@pytest.mark.skipif(not (SHARED_DATA / "caltech101").is_dir(), reason=f"{SHARED_DATA} is absent")
def test_shared_caltech101_test_split() -> None:
    images = load_image_set("caltech101", SHARED_DATA, "test")
    assert len(images.classnames) == 100
    assert len(images) == 1743
    assert set(images.labels) <= set(range(100))
