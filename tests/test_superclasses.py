"""The shipped superclass table (data/superclasses.toml): every class of the shared data has its labels,
every label is declared and used, and a wrong file or lookup fails in one line naming the fix."""
from __future__ import annotations

import warnings
from collections import Counter

import pytest

from clipunlearn.data import load_image_set, zoo_datasets
from clipunlearn.data.superclasses import coarse_labels, label_vocabulary, parse_table, shipped_table, superclasses
from clipunlearn.errors import ClipUnlearnError, DataError


def test_every_class_of_the_shared_data_is_looked_up(shared_data):
    table = shipped_table()
    assert sorted(table.classes) == zoo_datasets()  # the eight datasets of the shared slices (not ImageNet)
    for dataset in zoo_datasets():
        classnames = load_image_set(dataset, shared_data, "test").classnames
        for c in classnames:
            superclasses(dataset, c)  # raises on a class missing from the table
        assert list(table.classes[dataset]) == classnames, f"{dataset}: the table's classes are not its classes.txt's"


def test_every_label_is_declared_and_used_and_the_rare_ones_are_listed():
    table = shipped_table()
    carriers: Counter[str] = Counter()
    for dataset, classes in table.classes.items():
        for c, listed in classes.items():
            assert set(listed) <= set(label_vocabulary()), f"{dataset}:{c} has undeclared labels"
            carriers.update(superclasses(dataset, c))
    unused = [label for label in label_vocabulary() if not carriers[label]]
    assert not unused, f"declared labels no class carries (typo'd or stale): {unused}"
    once = sorted(label for label, n in carriers.items() if n == 1)
    if once:  # not an error: listed in pytest's warnings summary for a reviewer
        owners = {label: f"{d}:{c}" for d, cs in table.classes.items() for c in cs for label in superclasses(d, c)}
        warnings.warn("labels carried by one class only (review): "
                      + ", ".join(f"{label} ({owners[label]})" for label in once), stacklevel=1)


def test_the_hierarchy_is_consistent_across_datasets():
    table = shipped_table()
    by_name: dict[str, set[tuple[str, ...]]] = {}
    for dataset, classes in table.classes.items():
        for c in classes:
            by_name.setdefault(c.lower(), set()).add(superclasses(dataset, c))
            if c in table.parents:  # a class named like a label (cifar10's dog) carries that label
                assert c in superclasses(dataset, c), f"{dataset}:{c}"
    assert {n: s for n, s in by_name.items() if len(s) > 1} == {}  # pizza, sunflower, English springer, ...


def test_lookups():
    assert superclasses("stanford_dogs", "Leonberg") == ("dog", "mammal", "animal")
    assert superclasses("dogs", "Leonberg") == ("dog", "mammal", "animal")  # a registered alias
    assert superclasses("stanford_cars", "2012 Toyota Camry Sedan") == ("sedan", "car", "vehicle")
    assert superclasses("food101", "ramen") == ("soup", "noodles", "food")
    assert superclasses("pins_faces", "Bill Gates") == ("person",)
    assert superclasses("caltech101", "yin yang") == ()
    dogs = coarse_labels("stanford_dogs")
    assert list(dogs) == ["animal", "mammal", "dog"] and len(dogs["dog"]) == 120
    cars = coarse_labels("stanford_cars")
    assert len(cars["car"]) == 196 and "2012 Toyota Camry Sedan" in cars["sedan"]
    assert "2010 Dodge Ram Pickup 3500 Crew Cab" in cars["pickup"]
    assert len(coarse_labels("oxford_flowers")["flower"]) == 102
    assert len(coarse_labels("pins_faces")["person"]) == 105


@pytest.mark.parametrize("call, pattern", [
    (lambda: superclasses("stl10", "cat"), r"no superclasses of dataset 'stl10'.*add a \[dataset\.stl10\] table"),
    (lambda: superclasses("stanford_dogs", "Leonburg"),
     r"Class 'Leonburg' of stanford_dogs is not in .*Did you mean 'Leonberg'.*\[dataset\.stanford_dogs\] table"),
    (lambda: coarse_labels("imagenet"), r"no superclasses of dataset 'imagenet'"),
])
def test_unknown_names_fail_in_one_line_naming_the_fix(call, pattern):
    with pytest.raises(ClipUnlearnError, match=pattern) as err:
        call()
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("text, pattern", [
    ('[labels]\n"dog" = []\n[dataset.d]\n"Leonberg" = ["dgo"]\n',
     r"\[dataset\.d\] 'Leonberg' has the label 'dgo', which \[labels\] does not declare\. Did you mean 'dog'"),
    ('[labels]\n"dog" = ["mamal"]\n"mammal" = []\n', r"parent 'mamal'.*Did you mean 'mammal'"),
    ('[labels]\n"a" = ["b"]\n"b" = ["a"]\n', r"cycle \(a -> b -> a\)"),
    ('[labels]\n"dog" = []\n[dataset.d]\n"x" = "dog"\n', r"must be a list of label names"),
    ('[labels]\n"dog" = []\n[dataset.d]\n"x" = ["dog", "dog"]\n', r"names a label twice"),
    ('[label]\n"dog" = []\n', r"unknown table\(s\) \['label'\]"),
    ('[labels]\n"dog" = []\n[dataset.d]\n"x" = ["dog"]\n"x" = []\n', r"not valid TOML"),
])
def test_a_broken_table_is_refused(text, pattern):
    with pytest.raises(DataError, match=pattern):
        parse_table(text, "t.toml")
