"""Class names are checked where sets are read, and label export never writes a path out of
its class folder (#27 item 15)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
from PIL import Image

from models.data import load_labelled_set
from models.data.class_names import class_name_problem
from models.data.feedback import LabelledPhoto, write_feedback_set
from models.inference import make_grid
from tests.models.test_zip_damage import png

BAD_NAMES = [
    "../../../tmp/x<script>alert(1)</script>",
    "..",
    ".",
    "a/b",
    "a\\b",
    "crack\x00",
    "line\nbreak",
    "x" * 101,
    " crack",
    "",
]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_unusable_class_names_have_a_reason(name: str):
    assert class_name_problem(name) is not None


@pytest.mark.parametrize("name", ["crack", "no_crack", "Riss (breit)", "ひび割れ", "x" * 100])
def test_ordinary_class_names_pass(name: str):
    assert class_name_problem(name) is None


def csv_set(path: Path, bad_label: str) -> None:
    rows = ["path,label"]
    with zipfile.ZipFile(path, "w") as archive:
        for i, label in enumerate(["no_crack", "no_crack", bad_label, bad_label]):
            archive.writestr(f"img/{i}.png", png(i))
            rows.append(f'img/{i}.png,"{label}"')
        archive.writestr("labels.csv", "\n".join(rows) + "\n")


@pytest.mark.parametrize("name", ["../../../tmp/x<script>", "..", "crack\x07"])
def test_a_csv_set_naming_a_path_as_class_is_refused(tmp_path: Path, name: str):
    csv_set(tmp_path / "set.zip", name)
    with pytest.raises(ValueError, match="class name"):
        load_labelled_set(tmp_path / "set.zip")


def test_a_folder_named_dot_dot_is_not_a_class(tmp_path: Path):
    """Its members are left out as dot-files, so the set has one class left."""
    with zipfile.ZipFile(tmp_path / "set.zip", "w") as archive:
        for i, name in enumerate(["crack/a.png", "crack/b.png", "../c.png", "../d.png"]):
            archive.writestr(name, png(i))
    with pytest.raises(ValueError, match=r"single class \['crack'\]"):
        load_labelled_set(tmp_path / "set.zip")


def test_label_export_refuses_a_label_that_is_a_path(tmp_path: Path):
    grid = make_grid(64, 64, 32)
    photo = Image.new("RGB", (64, 64))
    labels = LabelledPhoto("p1", grid, [(0, 0, "crack"), (0, 1, "../../evil")])
    with pytest.raises(ValueError, match="class name"):
        write_feedback_set(tmp_path / "out.zip", [(labels, photo)], {"p1": "train"})
    if (tmp_path / "out.zip").exists():
        names = zipfile.ZipFile(tmp_path / "out.zip").namelist()
        assert not any(".." in n for n in names)
    ok = LabelledPhoto("p1", grid, [(0, 0, "crack"), (1, 1, "no_crack")])
    write_feedback_set(tmp_path / "ok.zip", [(ok, photo)], {"p1": "train"})
    assert sorted(zipfile.ZipFile(tmp_path / "ok.zip").namelist()) == [
        "train/crack/p1_r0_c0.png",
        "train/no_crack/p1_r1_c1.png",
    ]
