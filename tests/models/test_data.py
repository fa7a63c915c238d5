"""Labelled sets: every layout, splits, corrupt files, duplicates and clear errors."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from models.data import is_defect_name, load_labelled_set, stratified_split
from models.synthetic import make_tile, write_tile_set
from tests.conftest import shared_data


def _tiles(folder: Path, n: int, kind: str, seed: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        make_tile(rng, 32, kind).save(folder / f"{kind}_{i}.png")


def test_class_per_folder_layout_and_stratified_split(tiny_set):
    data = load_labelled_set(tiny_set, seed=0)
    assert data.layout == "folders"
    assert data.classes == ["crack", "no_crack"] and data.defect_classes == ["crack"]
    assert data.counts() == {
        "train": {"crack": 36, "no_crack": 36},
        "val": {"crack": 12, "no_crack": 12},
        "test": {"crack": 12, "no_crack": 12},
    }
    again = load_labelled_set(tiny_set, seed=0)
    assert again.splits == data.splits
    other = load_labelled_set(tiny_set, seed=1)
    assert other.splits["test"] != data.splits["test"]
    names = [{s.name for s in v} for v in data.splits.values()]
    assert not (names[0] & names[1] or names[0] & names[2] or names[1] & names[2])


def test_split_is_3_1_1_per_class_for_uneven_classes():
    labels = [0] * 50 + [1] * 11 + [2] * 3
    parts = stratified_split(labels, seed=5)
    for c, n in ((0, 50), (1, 11), (2, 3)):
        got = [sum(1 for i in parts[s] if labels[i] == c) for s in ("train", "val", "test")]
        assert sum(got) == n and min(got) >= 1
    assert [sum(1 for i in parts[s] if labels[i] == 0) for s in ("train", "val", "test")] == [
        30,
        10,
        10,
    ]


def test_zip_with_a_wrapping_folder(tiny_set, tmp_path):
    archive = tmp_path / "set.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(tiny_set.rglob("*.png")):
            zf.write(path, f"my_tiles/{path.relative_to(tiny_set).as_posix()}")
        zf.writestr("__MACOSX/my_tiles/._junk.png", b"junk")
    data = load_labelled_set(archive)
    assert data.layout == "folders" and data.classes == ["crack", "no_crack"]
    assert sum(len(v) for v in data.splits.values()) == 120 and not data.skipped


def test_split_folders_layout(tmp_path):
    for split, n in (("train", 6), ("val", 2), ("test", 3)):
        _tiles(tmp_path / split / "crack", n, "crack", seed=n)
        _tiles(tmp_path / split / "no_crack", n, "no_crack", seed=n + 10)
    data = load_labelled_set(tmp_path)
    assert data.layout == "split" and data.split_given
    assert data.counts()["test"] == {"crack": 3, "no_crack": 3}


def test_sdnet_layout(tmp_path):
    for group, (cracked, uncracked) in {
        "D": ("CD", "UD"),
        "P": ("CP", "UP"),
        "W": ("CW", "UW"),
    }.items():
        _tiles(tmp_path / group / cracked, 3, "crack", seed=ord(group))
        _tiles(tmp_path / group / uncracked, 4, "no_crack", seed=ord(group) + 1)
    data = load_labelled_set(tmp_path)
    assert data.layout == "sdnet"
    assert data.classes == ["crack", "no_crack"] and data.defect_classes == ["crack"]
    assert sum(len(v) for v in data.splits.values()) == 21


def test_csv_manifest_with_and_without_split(tmp_path):
    _tiles(tmp_path / "imgs", 5, "crack", seed=1)
    _tiles(tmp_path / "imgs", 5, "no_crack", seed=2)
    rows = ["path,label"] + [f"imgs/crack_{i}.png,crack" for i in range(5)]
    rows += [f"imgs/no_crack_{i}.png,intact" for i in range(5)]
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    data = load_labelled_set(tmp_path)
    assert data.layout == "csv" and data.classes == ["crack", "intact"]
    assert not data.split_given
    rows = ["path,label,split"] + [
        f"imgs/{k}_{i}.png,{k},{'train' if i < 3 else 'test'}"
        for k in ("crack", "no_crack")
        for i in range(5)
    ]
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    data = load_labelled_set(tmp_path)
    assert data.split_given and data.counts()["test"] == {"crack": 2, "no_crack": 2}


def test_three_classes_with_explicit_defects(tmp_path):
    write_tile_set(tmp_path, 5, size=32, classes=("crack", "no_crack", "scratch"), seed=2)
    data = load_labelled_set(tmp_path)
    assert data.classes == ["crack", "no_crack", "scratch"] and data.defect_classes == ["crack"]
    data = load_labelled_set(tmp_path, defect_classes=["crack", "scratch"])
    assert data.defect_classes == ["crack", "scratch"]
    with pytest.raises(ValueError, match="not among the classes"):
        load_labelled_set(tmp_path, defect_classes=["pothole"])


def test_corrupt_images_are_skipped_and_counted(tiny_set, tmp_path):
    root = tmp_path / "set"
    shutil.copytree(tiny_set, root)
    (root / "crack" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    good = (root / "crack" / "00000.png").read_bytes()
    (root / "no_crack" / "truncated.png").write_bytes(good[: len(good) // 2])
    (root / "crack" / "notes.jpg").write_text("hello")
    data = load_labelled_set(root)
    assert len(data.skipped) == 3
    assert sum(len(v) for v in data.splits.values()) == 120


def test_exact_duplicates_are_removed_before_splitting(tiny_set, tmp_path):
    root = tmp_path / "set"
    shutil.copytree(tiny_set, root)
    for i in range(5):
        shutil.copy(root / "crack" / f"{i:05d}.png", root / "crack" / f"copy_{i}.png")
    data = load_labelled_set(root)
    assert data.duplicates_removed == 5
    assert sum(len(v) for v in data.splits.values()) == 120


def test_empty_single_class_and_loose_sets_are_clear_errors(tmp_path, tiny_set):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images"):
        load_labelled_set(tmp_path / "empty")
    single = tmp_path / "single"
    shutil.copytree(tiny_set / "crack", single / "crack")
    with pytest.raises(ValueError, match="single class"):
        load_labelled_set(single)
    loose = tmp_path / "loose"
    loose.mkdir()
    shutil.copy(tiny_set / "crack" / "00000.png", loose / "a.png")
    with pytest.raises(ValueError, match="one folder per class"):
        load_labelled_set(loose)
    with pytest.raises(FileNotFoundError):
        load_labelled_set(tmp_path / "missing")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(ValueError, match="neither a folder nor a .zip"):
        load_labelled_set(tmp_path / "file.txt")
    odd = tmp_path / "odd"
    shutil.copytree(tiny_set / "crack", odd / "a")
    shutil.copytree(tiny_set / "no_crack", odd / "b")
    with pytest.raises(ValueError, match="naming rule"):
        load_labelled_set(odd)


def test_defect_naming_rule():
    assert all(map(is_defect_name, ["crack", "Cracked", "Positive", "hairline_crack", "defect"]))
    assert not any(
        map(is_defect_name, ["no_crack", "Negative", "uncracked", "non-crack", "scratch"])
    )


@pytest.mark.shared_data
@pytest.mark.slow
def test_reads_the_crack2019_sample():
    data = load_labelled_set(shared_data("ccic-dev"))
    assert data.classes == ["Negative", "Positive"] and data.defect_classes == ["Positive"]
    total = sum(len(v) for v in data.splits.values())
    assert total + data.duplicates_removed + len(data.skipped) == 5000
    assert data.counts()["test"]["Positive"] == pytest.approx(500, abs=2)


def test_zip_bombs_are_refused_before_decompression(tmp_path, monkeypatch):
    """#13 item 9: member size, total size, ratio and member count are capped."""
    import zipfile

    from models.data import sources

    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("crack/a.png", bytes(8 << 20))  # 8 MiB of zeros: ~1000:1
    with pytest.raises(ValueError, match="compressed .*:1"):
        sources.open_source(bomb)
    many = tmp_path / "many.zip"
    with zipfile.ZipFile(many, "w") as zf:
        for i in range(5):
            zf.writestr(f"crack/{i}.png", b"x")
    monkeypatch.setattr(sources, "ZIP_MAX_MEMBERS", 4)
    with pytest.raises(ValueError, match="5 members"):
        sources.open_source(many)
    monkeypatch.setattr(sources, "ZIP_MAX_MEMBERS", 10)
    monkeypatch.setattr(sources, "ZIP_MAX_TOTAL_BYTES", 4)
    with pytest.raises(ValueError, match="unpacks to"):
        sources.open_source(many)
    monkeypatch.setattr(sources, "ZIP_MAX_TOTAL_BYTES", 1 << 30)
    monkeypatch.setattr(sources, "ZIP_MAX_MEMBER_BYTES", 0)
    with pytest.raises(ValueError, match="per file"):
        sources.open_source(many)
