"""Reading a registered dataset from disk, in one of three layouts, or any class-folder tree.

(a) manifest: ``<root>/<name>/classes.txt`` + ``manifest.csv`` (``path,label,split``), as in the
    project's shared data; (b) class folders: ``<root>/<name>/<split>/<class name>/<image>``
    (ImageNet: ``val/<wnid>/`` is the test split);
(c) torchvision's own layout of the dataset under ``<root>/<name>``, downloadable with
    ``download=True`` by users who are online.

A dataset that is not registered is named by its folder (a name with a ``/``: ``--dataset-dir``):
``PATH/<class name>/<images>`` is its test split, or ``PATH/test/`` (or ``val/``) and ``PATH/train/``
hold the class folders of each split. Its name is the folder's absolute path, so that a run's
results.json names where its images are; its prompt template is the generic one.
"""
from __future__ import annotations

import csv
import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from ..errors import DataError, UnknownNameError, suggest
from .registry import DatasetSpec, get_dataset_spec

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
SPLITS = ("train", "test")
ENV_DATA_ROOT = "CLIPUNLEARN_DATA"


def resolve_data_root(data_root: str | os.PathLike[str] | None) -> Path:
    """The data root from the argument, else from ``$CLIPUNLEARN_DATA``; it must exist. Returned
    resolved (absolute, links followed), so that two spellings of one root give the same images the
    same fingerprint, and so the same feature-cache entries."""
    value = data_root if data_root not in (None, "") else os.environ.get(ENV_DATA_ROOT)
    if not value:
        raise DataError(
            f"No data root given. Pass --data-root DIR (data_root=...) or set {ENV_DATA_ROOT}=DIR, "
            "where DIR holds one folder per dataset (e.g. DIR/caltech101)."
        )
    root = Path(value).expanduser()
    if not root.is_dir():
        raise DataError(f"The data root {str(root)!r} does not exist or is not a folder. "
                        f"Pass --data-root with the folder that holds the dataset folders.")
    return root.resolve()


@dataclass
class ImageSet:
    """The labelled images of one split of one dataset, not yet decoded."""

    name: str
    split: str
    classnames: list[str]
    labels: list[int]
    source: str
    paths: list[Path] | None = None
    tv_dataset: Any = None  # torchvision dataset: item i -> (PIL image, label)
    indices: list[int] | None = None  # rows of tv_dataset when this is a subset
    spec: DatasetSpec | None = field(default=None, repr=False)
    styles: list[str | None] | None = None  # per image: a style (data.styles) applied as it is loaded

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def templates(self) -> tuple[str, ...]:
        from .registry import DEFAULT_TEMPLATE

        return self.spec.templates if self.spec else (DEFAULT_TEMPLATE,)

    def with_templates(self, templates: Sequence[str] | None) -> ImageSet:
        """The same images prompted with ``templates`` instead of the dataset's own (None: unchanged);
        each template must hold ``{}`` where the class name goes."""
        if templates is None:
            return self
        templates = tuple(templates)
        if not templates:
            raise DataError("The template list is empty. Pass at least one, e.g. --templates 'a photo of a {}.'.")
        for t in templates:
            if "{}" not in t:
                raise DataError(f"Template {t!r} has no '{{}}' where the class name goes, e.g. 'a photo of a {{}}.'.")
        from dataclasses import replace

        spec = self.spec or DatasetSpec(self.name, self.name)
        return replace(self, spec=replace(spec, templates=templates))

    def load(self, i: int) -> Image.Image:
        """Image ``i`` as RGB (in its style, if :attr:`styles` gives one); raises ``OSError``/``ValueError``
        if it cannot be decoded."""
        if self.paths is not None:
            with Image.open(self.paths[i]) as im:
                image = im.convert("RGB")
        else:
            row = self.indices[i] if self.indices is not None else i
            image = self.tv_dataset[row][0].convert("RGB")
        style = self.styles[i] if self.styles is not None else None
        if style is None:
            return image
        from .styles import apply_style

        return apply_style(style, image)

    def describe(self, i: int) -> str:
        return str(self.paths[i]) if self.paths is not None else f"{self.source}[{i}]"

    def class_index(self, classname: str) -> int:
        """Index of a class, matched exactly; a miss suggests close names."""
        try:
            return self.classnames.index(classname)
        except ValueError:
            hint = suggest(classname, self.classnames)
            raise UnknownNameError(
                f"Class {classname!r} is not in {self.name} ({len(self.classnames)} classes).{hint} "
                "Class names are matched exactly, as written in the dataset's classes.txt."
            ) from None

    def class_indices(self, classnames: Sequence[str]) -> list[int]:
        """Indices of ``classnames`` (matched exactly), refusing an empty list and repeats."""
        if not classnames:
            raise DataError("The class list is empty. Pass one or more class names, e.g. --classes \"motorbike\".")
        indices = [self.class_index(c) for c in classnames]
        if len(set(indices)) != len(indices):
            raise DataError(f"A class is named twice in {list(classnames)}. Name each class once.")
        return indices

    def subset(self, classes: Sequence[int] | None = None, exclude: Sequence[int] = ()) -> ImageSet:
        """The images whose label is in ``classes`` (all if None) and not in ``exclude``."""
        keep_labels = set(range(len(self.classnames))) if classes is None else set(classes)
        keep_labels -= set(exclude)
        rows = [i for i, y in enumerate(self.labels) if y in keep_labels]
        return ImageSet(
            name=self.name,
            split=self.split,
            classnames=self.classnames,
            labels=[self.labels[i] for i in rows],
            source=self.source,
            paths=[self.paths[i] for i in rows] if self.paths is not None else None,
            tv_dataset=self.tv_dataset,
            indices=[(self.indices[i] if self.indices is not None else i) for i in rows]
            if self.paths is None else None,
            spec=self.spec,
            styles=[self.styles[i] for i in rows] if self.styles is not None else None,
        )

    def fingerprint(self) -> str:
        """A key that changes when the images, labels or their order change."""
        h = hashlib.sha1()
        h.update(f"{self.source}|{self.split}|{len(self)}".encode())
        if self.styles is not None and any(self.styles):
            h.update(repr(self.styles).encode())
        if self.paths is not None:
            for p, y in zip(self.paths, self.labels):
                st = p.stat()
                h.update(f"{p}|{y}|{st.st_size}|{st.st_mtime_ns};".encode())
        else:
            h.update(repr((self.indices, self.labels)).encode())
        return h.hexdigest()[:16]


def load_image_set(
    name: str | os.PathLike[str],
    data_root: str | os.PathLike[str] | None = None,
    split: str = "test",
    download: bool = False,
) -> ImageSet:
    """Find dataset ``name`` under the data root and read its ``split``; a name with a ``/`` is a
    class-folder tree of its own (:func:`folder_dataset`), read without the data root."""
    if split not in SPLITS:
        raise DataError(f"Unknown split {split!r}. Use one of: {', '.join(SPLITS)}.")
    if is_folder_dataset(name):
        return _read_folder_dataset(Path(folder_dataset(name)), split)
    try:
        spec = get_dataset_spec(name)
    except UnknownNameError as e:
        if Path(name).is_dir():
            raise UnknownNameError(f"{e} {name!r} is a folder here: read it with --dataset-dir {name} "
                                   f"(or as ./{name}).") from None
        raise
    root = resolve_data_root(data_root)
    folder = root / spec.name
    split_folder = folder / _split_folder(spec, split)
    if (folder / "manifest.csv").exists():
        return _read_manifest(spec, folder, split)
    if split_folder.is_dir():
        return _read_class_folders(spec, folder, split)
    if spec.torchvision is not None and (folder.is_dir() or download):
        return _read_torchvision(spec, folder, split, download)
    if (folder / "classes.txt").exists():
        return _read_manifest(spec, folder, split)  # says that manifest.csv is missing
    if not folder.exists():
        others = [p.name for p in root.iterdir() if p.is_dir()]
        hint = suggest(spec.name, others)
        how = (" or pass --download to fetch it with torchvision" if spec.torchvision else "")
        raise DataError(
            f"No folder for dataset {spec.name!r} under the data root {str(root)!r}.{hint} "
            f"Put it at {str(folder)!r} (classes.txt + manifest.csv, or {_layout_hint(spec)}){how}."
        )
    raise DataError(
        f"{str(folder)!r} has neither manifest.csv nor a {split_folder.name}/ folder of class folders"
        + (" nor torchvision's layout" if spec.torchvision else "")
        + ". See the docs on dataset layouts."
    )


def _read_classes(path: Path) -> list[str]:
    if not path.exists():
        raise DataError(f"{str(path)!r} is missing: write one class name a line (line i is label i).")
    names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not names:
        raise DataError(f"{str(path)!r} lists no class names.")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise DataError(f"{str(path)!r} lists these class names twice: {dupes[:5]}. Names must be unique.")
    return names


def _read_manifest(spec: DatasetSpec, folder: Path, split: str) -> ImageSet:
    classnames = _read_classes(folder / "classes.txt")
    manifest = folder / "manifest.csv"
    if not manifest.exists():
        raise DataError(f"{str(manifest)!r} is missing: it lists path,label,split for every image.")
    with manifest.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing_cols = {"path", "label", "split"} - set(reader.fieldnames or [])
        if missing_cols:
            raise DataError(
                f"{str(manifest)!r} lacks the column(s) {sorted(missing_cols)}; its header must be "
                f"'path,label,split' (found {reader.fieldnames})."
            )
        rows = list(reader)
    paths: list[Path] = []
    labels: list[int] = []
    bad_labels: list[str] = []
    short = [str(n) for n, row in enumerate(rows, start=2) if None in (row["path"], row["label"], row["split"])]
    if short:
        raise DataError(f"{str(manifest)!r} has rows with too few fields (lines {', '.join(short[:5])}); "
                        "every row needs path,label,split.")
    for line_no, row in enumerate(rows, start=2):
        if row["split"].strip() != split:
            continue
        try:
            label = int(row["label"])
        except ValueError:
            bad_labels.append(f"line {line_no}: {row['label']!r}")
            continue
        if not 0 <= label < len(classnames):
            bad_labels.append(f"line {line_no}: {label}")
            continue
        paths.append(folder / row["path"].strip())
        labels.append(label)
    if bad_labels:
        raise DataError(
            f"{str(manifest)!r} has {len(bad_labels)} label(s) that are not integers in "
            f"[0, {len(classnames) - 1}] (classes.txt has {len(classnames)} names): "
            f"{', '.join(bad_labels[:5])}. Fix those rows."
        )
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise DataError(
            f"{len(missing)} image path(s) in {str(manifest)!r} do not exist, e.g. "
            f"{', '.join(str(p) for p in missing[:3])}. Paths are relative to the dataset folder."
        )
    if not paths:
        splits = sorted({r['split'] for r in rows})
        raise DataError(f"{str(manifest)!r} has no rows with split {split!r} (splits there: {splits}).")
    return ImageSet(spec.name, split, classnames, labels, f"manifest:{folder}", paths=paths, spec=spec)


def _split_folder(spec: DatasetSpec, split: str) -> str:
    """The class-folder layout's folder of ``split`` (ImageNet's test split is ``val``)."""
    return spec.test_folder if split == "test" else split


def _layout_hint(spec: DatasetSpec) -> str:
    return f"{spec.test_folder}/<wnid>/<images>" if spec.classnames is not None else "<split>/<class>/<images>"


def _read_class_folders(spec: DatasetSpec, folder: Path, split: str) -> ImageSet:
    return _read_split_dir(spec, folder / _split_folder(spec, split), split, folder / "classes.txt",
                           f"folders:{folder}")


def _read_split_dir(spec: DatasetSpec, split_dir: Path, split: str, classes_file: Path, source: str) -> ImageSet:
    """The images of ``split_dir``/<class folder>/, labelled by the spec's class names, else by
    ``classes_file`` (if it exists), else by the sorted folder names ("_" read as " ")."""
    class_dirs = sorted(p for p in split_dir.iterdir() if p.is_dir())
    if not class_dirs:
        raise DataError(f"{str(split_dir)!r} holds no class folders (<class name>/<images>).")
    if spec.classnames is not None:
        classnames = spec.classnames([d.name for d in class_dirs], split_dir)
        index = {d.name: i for i, d in enumerate(class_dirs)}
    elif classes_file.exists():
        classnames = _read_classes(classes_file)
        strays = [d.name for d in class_dirs if d.name not in classnames and d.name.replace("_", " ") not in classnames]
        if strays:
            raise DataError(f"Folders {strays[:5]} in {str(split_dir)!r} are not in classes.txt.")
        index = {n: i for i, n in enumerate(classnames)}
    else:
        classnames = [d.name.replace("_", " ") for d in class_dirs]
        index = {n: i for i, n in enumerate(classnames)}
    paths: list[Path] = []
    labels: list[int] = []
    empty: list[Path] = []
    for d in class_dirs:
        label = index.get(d.name, index.get(d.name.replace("_", " ")))
        found = [p for p in sorted(d.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES]
        if not found:
            empty.append(d)
        paths += found
        labels += [label] * len(found)
    if empty:
        more = f" (and {len(empty) - 1} other class folder(s))" if len(empty) > 1 else ""
        raise DataError(f"No images ({', '.join(sorted(IMAGE_SUFFIXES))}) in the class folder {str(empty[0])!r}{more}. "
                        "Add its images, or remove the folder.")
    return ImageSet(spec.name, split, classnames, labels, source, paths=paths, spec=spec)


# --- a class-folder tree of its own (--dataset-dir) ----------------------------------------------

def is_folder_dataset(name: str | os.PathLike[str]) -> bool:
    """True when ``name`` names a folder rather than a registered dataset: a path, or text with a ``/``
    (registered names never hold one)."""
    return isinstance(name, os.PathLike) or "/" in name or os.sep in name


def folder_dataset(path: str | os.PathLike[str]) -> str:
    """The dataset name of the class-folder tree at ``path``: its absolute path, once it is a folder."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise DataError(f"The dataset folder {str(folder)!r} does not exist or is not a folder. Pass a folder with one "
                        "folder of images per class (PATH/<class name>/<images>).")
    return str(folder.resolve())


#: split folders of a class-folder tree; without any, its class folders are the test split
TREE_SPLITS = {"test": ("test", "val"), "train": ("train",)}


def _read_folder_dataset(folder: Path, split: str) -> ImageSet:
    """``folder``/<class>/<images> as the test split, or ``folder``/{test|val,train}/<class>/<images>."""
    spec = DatasetSpec(str(folder), folder.name)
    split_dirs = {n for names in TREE_SPLITS.values() for n in names if (folder / n).is_dir()}
    if not split_dirs:
        if split != "test":
            raise DataError(f"{str(folder)!r} holds class folders without splits, read as the test split; a {split} "
                            f"split needs {folder / split}/<class name>/<images> (and test/ beside it).")
        if not any(p.is_dir() for p in folder.iterdir()):
            raise DataError(f"{str(folder)!r} holds no class folders: put the images of each class in "
                            f"{folder}/<class name>/ (the folder's name, '_' read as ' ', is the class name).")
        return _read_split_dir(spec, folder, split, folder / "classes.txt", f"folder:{folder}")
    found = [n for n in TREE_SPLITS[split] if n in split_dirs]
    if not found:
        raise DataError(f"{str(folder)!r} has split folders ({', '.join(sorted(split_dirs))}) but no "
                        f"{'/'.join(TREE_SPLITS[split])}/ for the {split} split. Add "
                        f"{folder / TREE_SPLITS[split][0]}/<class name>/<images>.")
    return _read_split_dir(spec, folder / found[0], split, folder / "classes.txt", f"folder:{folder}")


def _read_torchvision(spec: DatasetSpec, folder: Path, split: str, download: bool) -> ImageSet:
    assert spec.torchvision is not None
    try:
        ds, classnames = spec.torchvision(str(folder), split, download)
    except (RuntimeError, FileNotFoundError, OSError) as e:
        raise DataError(
            f"torchvision could not read {spec.title} under {str(folder)!r}: {e}. "
            + ("" if download else "Pass --download (download=True) to fetch it, or use the manifest layout "
               "(classes.txt + manifest.csv).")
        ) from None
    if (folder / "classes.txt").exists():
        classnames = _read_classes(folder / "classes.txt")
    labels = _torchvision_labels(ds)
    return ImageSet(spec.name, split, classnames, labels, f"torchvision:{folder}", tv_dataset=ds, spec=spec)


def _torchvision_labels(ds: Any) -> list[int]:
    for attr in ("targets", "_labels", "y"):
        value = getattr(ds, attr, None)
        if value is not None:
            return [int(v) for v in value]
    samples = getattr(ds, "_samples", None) or getattr(ds, "samples", None)
    if samples is not None:
        return [int(s[1]) for s in samples]
    return [int(ds[i][1]) for i in range(len(ds))]
