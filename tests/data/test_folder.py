"""folder:PATH with ImageFolder semantics, checked against torchvision's ImageFolder."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from convscope.data import get_dataset, prepare_image


def make_folder(root: Path, counts: dict[str, int], mode: str = "RGB", size=(40, 30), seed=0) -> Path:
    rng = np.random.default_rng(seed)
    for cls, n in counts.items():
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
            Image.fromarray(rng.integers(0, 256, size=shape, dtype=np.uint8)).convert(mode).save(
                root / cls / f"{i:03d}.png")
    return root


def test_classes_sorted_like_imagefolder(tmp_path):
    from torchvision.datasets import ImageFolder

    make_folder(tmp_path, {"zebra": 10, "ant": 10, "Moose": 10})
    ds = get_dataset(f"folder:{tmp_path}")
    ref = ImageFolder(str(tmp_path))
    assert ds.classes == ref.classes == ["Moose", "ant", "zebra"]
    assert ds.input_size == (3, 32, 32) and ds.kind == "natural"
    # 20% test and 10% of the rest as val, per class; every image used once
    assert np.bincount(ds.test.labels.numpy()).tolist() == [2, 2, 2]
    assert np.bincount(ds.val.labels.numpy()).tolist() == [1, 1, 1]
    assert len(ds.train) + len(ds.val) + len(ds.test) == len(ref) == 30
    labels = torch.cat([ds.train.labels, ds.val.labels, ds.test.labels]).sort().values
    assert labels.tolist() == sorted(ref.targets)


def test_images_resized_as_predict_resizes_them(tmp_path):
    """A training image and the same file through prepare_image are the same pixels."""
    make_folder(tmp_path, {"a": 3, "b": 3}, size=(64, 48))
    ds = get_dataset(f"folder:{tmp_path}", image_size=24, val_fraction=0.0)
    cfg = {"preprocessing": {"kind": "resize", "size": [24, 24], "channels": 3},
           "normalization": {"mean": [0.0] * 3, "std": [1 / 255] * 3}}
    all_images = torch.cat([ds.train.images, ds.test.images]).reshape(6, -1)
    for path in sorted(tmp_path.rglob("*.png")):
        x = prepare_image(path, cfg).round().to(torch.uint8).reshape(1, -1)
        assert (all_images == x).all(dim=1).any(), path
    # and PIL's own bilinear resize is the oracle for one of them
    path = sorted(tmp_path.rglob("*.png"))[0]
    ref = np.asarray(Image.open(path).convert("RGB").resize((24, 24), Image.Resampling.BILINEAR))
    x = prepare_image(path, cfg)[0].permute(1, 2, 0).round().numpy()
    np.testing.assert_array_equal(x, ref)


def test_grey_majority_and_channel_option(tmp_path):
    make_folder(tmp_path / "g", {"a": 4}, mode="L")
    make_folder(tmp_path / "g", {"b": 3}, mode="RGB")
    assert get_dataset(f"folder:{tmp_path / 'g'}").input_size == (1, 32, 32)
    assert get_dataset(f"folder:{tmp_path / 'g'}", channels=3).input_size == (3, 32, 32)


def test_train_test_subfolders_are_used(tmp_path):
    make_folder(tmp_path / "train", {"cat": 10, "dog": 10})
    make_folder(tmp_path / "test", {"cat": 3, "dog": 2}, seed=1)
    ds = get_dataset(f"folder:{tmp_path}", image_size=16)
    assert len(ds.test) == 5 and len(ds.train) + len(ds.val) == 20 and len(ds.val) == 2
    assert ds.test.labels.tolist() == [0, 0, 0, 1, 1]


def test_train_val_subfolders_val_is_also_test(tmp_path):
    make_folder(tmp_path / "train", {"ants": 4, "bees": 4})
    make_folder(tmp_path / "val", {"ants": 2, "bees": 2}, seed=1)
    ds = get_dataset(f"folder:{tmp_path}")
    assert len(ds.train) == 8 and len(ds.val) == 4 and torch.equal(ds.val.images, ds.test.images)


def test_test_class_missing_from_train(tmp_path):
    make_folder(tmp_path / "train", {"cat": 3})
    make_folder(tmp_path / "test", {"cat": 1, "emu": 1})
    with pytest.raises(ValueError, match="emu"):
        get_dataset(f"folder:{tmp_path}")


def test_empty_class_folder_is_named(tmp_path):
    make_folder(tmp_path, {"cat": 3})
    (tmp_path / "dog").mkdir()
    (tmp_path / "dog" / "notes.txt").write_text("no images here")
    with pytest.raises(ValueError, match=r"class folder .*dog is empty"):
        get_dataset(f"folder:{tmp_path}")


def test_unreadable_image_is_named(tmp_path):
    make_folder(tmp_path, {"cat": 3, "dog": 3})
    (tmp_path / "dog" / "broken.jpg").write_bytes(b"\xff\xd8 this is not really a jpeg")
    with pytest.raises(ValueError, match=r"broken\.jpg"):
        get_dataset(f"folder:{tmp_path}")


def test_no_class_subfolders(tmp_path):
    Image.new("L", (8, 8)).save(tmp_path / "lonely.png")
    with pytest.raises(FileNotFoundError, match="no class subfolders"):
        get_dataset(f"folder:{tmp_path}")


def test_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such folder"):
        get_dataset(f"folder:{tmp_path / 'nope'}")
