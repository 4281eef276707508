"""A folder of the user's images and an .npz file, read the way data.folder documents: every format rule,
every skipped file and every odd layout on files the tests write."""
import json
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from selfsup.cli import main
from selfsup.data import load_dataset, npz
from selfsup.data.folder import MAX_INFERRED_SIZE, read_image_folder
from selfsup.errors import SelfSupError


def grey(path: Path, value: int = 100, size: tuple[int, int] = (12, 12)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", size, value).save(path)
    return path


def read(root: Path, **kwargs):
    """read_image_folder with its warnings caught: (images, reading, warning texts)."""
    with pytest.warns() as caught:
        images, reading = read_image_folder(root, **kwargs)
    return images, reading, [str(w.message) for w in caught]


def read_quietly(root: Path, **kwargs):
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning fails the test
        return read_image_folder(root, **kwargs)


# --- size and colour ---------------------------------------------------------------------------------

def test_grey_images_of_one_size_keep_it_and_one_channel(tmp_path):
    for i in range(3):
        grey(tmp_path / f"{i}.png", size=(28, 28))
    images, reading = read_quietly(tmp_path)
    assert images.images.shape == (3, 1, 28, 28) and images.labels is None
    assert reading.size == (28, 28) and reading.channels == 1
    assert "own size" in reading.summary and "all images are grayscale" in reading.summary


def test_colour_photos_stay_colour_at_an_inferred_size_with_an_override(tmp_path):
    for i, (w, h) in enumerate([(120, 90), (100, 80), (200, 150)]):
        Image.new("RGB", (w, h), (200, 30, 10)).save(tmp_path / f"p{i}.jpg", quality=95)
    grey(tmp_path / "g.png", size=(90, 90))
    images, reading = read_quietly(tmp_path)
    assert reading.channels == 3 and "3 of 4 images are colour" in reading.channels_rule
    assert reading.size == (MAX_INFERRED_SIZE, MAX_INFERRED_SIZE)  # median shorter side 90, capped at 64
    assert images.images.shape == (4, 3, 64, 64)
    red = images.images[1, :, 32, 32].int()  # g.png sorts first
    assert red[0] > 180 and red[1] < 60 and red[2] < 40  # not turned grey
    small, reading = read_quietly(tmp_path, size=30, channels=1)
    assert small.images.shape == (4, 1, 30, 30) and reading.size_rule == reading.channels_rule == "given"


def test_small_mixed_sizes_use_the_median_shorter_side_rounded_to_4(tmp_path):
    for i, (w, h) in enumerate([(30, 41), (35, 38), (50, 60)]):
        grey(tmp_path / f"{i}.png", size=(w, h))
    images, reading = read_quietly(tmp_path)
    assert reading.size == (32, 32) and "median shorter side 35" in reading.size_rule


def test_non_square_images_are_centre_cropped_not_squashed(tmp_path):
    a = np.zeros((10, 30), np.uint8)
    a[:, 10:20] = 255  # a white middle third
    Image.fromarray(a).save(tmp_path / "wide.png")
    images, _ = read_quietly(tmp_path, size=10)
    assert images.images[0, 0].unique().tolist() == [255]  # only the middle survives the crop


# --- formats -----------------------------------------------------------------------------------------

def test_cmyk_becomes_rgb(tmp_path):
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(tmp_path / "red.tif")  # no cyan, full magenta+yellow
    images, reading = read_quietly(tmp_path)
    assert reading.channels == 3 and images.images[0, :, 0, 0].tolist() == [255, 0, 0]


def test_16_bit_png_is_scaled_not_clipped(tmp_path):
    a = np.array([[0, 32896, 65535, 1000]] * 4, dtype=np.uint16)
    Image.fromarray(a).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    images, reading = read_quietly(tmp_path, size=4)
    assert reading.channels == 1
    assert images.images[0, 0, 0].tolist() == [0, 128, 255, 4]  # was [0, 255, 255, 255]: clipped at 255


def test_palette_with_transparency_is_composited_over_white(tmp_path):
    im = Image.new("P", (4, 4), 0)
    im.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)  # index 0 red, index 1 blue...
    im.putpixel((0, 0), 1)
    im.save(tmp_path / "pal.png", transparency=1)  # ...and blue is transparent
    images, reading = read_quietly(tmp_path)
    assert reading.channels == 3
    assert images.images[0, :, 0, 0].tolist() == [255, 255, 255]  # transparent: white, not the stored blue
    assert images.images[0, :, 1, 1].tolist() == [255, 0, 0]


def test_la_alpha_follows_the_same_rule_and_a_grey_palette_is_grey(tmp_path):
    la = Image.new("LA", (4, 4), (0, 255))
    la.putpixel((0, 0), (0, 0))  # a black pixel, fully transparent
    la.save(tmp_path / "la.png")
    pal = Image.new("P", (4, 4), 0)
    pal.putpalette([v for g in range(256) for v in (g, g, g)])
    pal.save(tmp_path / "greypal.png")
    images, reading = read_quietly(tmp_path)
    assert reading.channels == 1
    assert images.images[1, 0, 0, 0] == 255 and images.images[1, 0, 1, 1] == 0  # la.png sorts second


def test_exif_orientation_is_applied(tmp_path):
    a = np.zeros((10, 20), np.uint8)
    a[:, 10:] = 255  # stored: left half black, right half white
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display": the left edge becomes the top
    Image.fromarray(a).save(tmp_path / "phone.png", exif=exif)
    images, _ = read_quietly(tmp_path, size=10)
    shown = images.images[0, 0]
    assert shown[0].tolist() == [0] * 10 and shown[9].tolist() == [255] * 10  # black on top, white below


# --- unreadable files, bombs, links, names -----------------------------------------------------------

def png_claiming(path: Path, width: int, height: int) -> Path:
    """A tiny valid PNG whose header claims `width` x `height` pixels (a decompression bomb's header)."""
    grey(path, size=(4, 4))
    data = bytearray(path.read_bytes())
    ihdr = data[12:29]  # b"IHDR" + 13 bytes of fields
    ihdr[4:12] = struct.pack(">II", width, height)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)))
    path.write_bytes(bytes(data))
    return path


def test_unreadable_files_are_skipped_counted_named_and_listed(tmp_path):
    grey(tmp_path / "a" / "ok1.png")
    grey(tmp_path / "a" / "ok2.png")
    grey(tmp_path / "b" / "ok3.png")
    (tmp_path / "a" / "empty.png").write_bytes(b"")
    jpeg = tmp_path / "b" / "cut.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)).save(jpeg)
    jpeg.write_bytes(jpeg.read_bytes()[:400])  # truncated: the header reads, the pixels do not
    png_claiming(tmp_path / "b" / "bomb.png", 50_000, 50_000)
    images, reading, warned = read(tmp_path)
    assert images.images.shape[0] == 3 and images.classes == ["a", "b"] and images.labels.tolist() == [0, 0, 1]
    assert reading.images == 3 and len(reading.skipped) == 3
    reasons = dict(line.split(": ", 1) for line in reading.skipped)
    assert "UnidentifiedImageError" in reasons[str(tmp_path / "a" / "empty.png")]
    assert "truncated" in reasons[str(jpeg)]
    assert "decompression bomb guard" in reasons[str(tmp_path / "b" / "bomb.png")]
    assert any(w.startswith("skipped 3 unreadable image(s)") and "cut.jpg" in w for w in warned)
    with pytest.raises(SelfSupError, match="cannot decode image"):
        read_image_folder(tmp_path, strict=True)


def test_the_bomb_guard_refuses_from_the_header_before_decoding(tmp_path):
    grey(tmp_path / "big.png", size=(100, 100))
    grey(tmp_path / "small.png", size=(10, 10))
    images, reading, warned = read(tmp_path, max_pixels=5_000)
    assert images.images.shape[0] == 1 and "100x100 = 10,000 pixels is more than 5,000" in reading.skipped[0]


def test_symlinks_are_followed_once_and_a_loop_is_reported(tmp_path):
    outside = tmp_path / "elsewhere"
    grey(outside / "x.png", 10)
    root = tmp_path / "data"
    grey(root / "cats" / "c.png", 20)
    os.symlink(outside, root / "dogs")  # a class folder that is a link: followed
    os.symlink(root, root / "cats" / "loop")  # a link back to the top: a loop
    images, reading, warned = read(root)
    assert images.classes == ["cats", "dogs"] and images.labels.tolist() == [0, 1]
    assert images.images[:, 0, 0, 0].tolist() == [20, 10]  # each image once
    assert any("symbolic link loop" in w and "loop" in w for w in warned)


def test_non_ascii_names(tmp_path):
    grey(tmp_path / "чай" / "café ☕.png", 30)
    grey(tmp_path / "茶" / "ñandú.png", 40)
    images, reading = read_quietly(tmp_path)
    assert images.classes == ["чай", "茶"] and images.images[:, 0, 0, 0].tolist() == [30, 40]


# --- layouts -----------------------------------------------------------------------------------------

def test_images_beside_class_folders_are_left_out_with_a_warning(tmp_path):
    grey(tmp_path / "a" / "1.png")
    grey(tmp_path / "b" / "2.png")
    grey(tmp_path / "stray.png")
    images, reading, warned = read(tmp_path)
    assert images.images.shape[0] == 2 and images.classes == ["a", "b"]
    assert any("1 file(s) lie at the top level" in w and "stray.png" in w for w in warned)


def test_a_class_folder_without_images_is_named_and_left_out(tmp_path):
    grey(tmp_path / "a" / "1.png")
    grey(tmp_path / "c" / "2.png")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "notes.txt").write_text("not an image")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "broken.png").write_bytes(b"junk")
    images, reading, warned = read(tmp_path)
    assert images.classes == ["a", "c"] and images.labels.tolist() == [0, 1]
    assert any("class folder 'b'" in w and "no image files (1 file(s) of other types)" in w for w in warned)
    assert any("class folder 'd'" in w and "none readable" in w for w in warned)


def test_empty_and_missing_folders_are_one_line_errors(tmp_path):
    with pytest.raises(SelfSupError, match="no images found in") as e:
        read_image_folder(tmp_path)
    assert "\n" not in str(e.value)
    with pytest.raises(SelfSupError, match="does not exist"):
        read_image_folder(tmp_path / "nope")
    with pytest.raises(SelfSupError, match="channels must be 1"):
        read_image_folder(tmp_path, channels=2)


# --- .npz ----------------------------------------------------------------------------------------------

def test_npz_says_which_keys_it_used_and_accepts_small_integers(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.full((4, 6, 6), 7, np.int64), y=np.array([0, 1, 0, 1]), extra=np.zeros(3))
    splits = load_dataset(str(tmp_path / "d.npz"))
    assert splits.train.images.dtype == torch.uint8 and splits.train.images.unique().tolist() == [7]
    assert "images from 'x', labels from 'y', ignored ['extra']" in splits.reading.summary


@pytest.mark.parametrize("arrays, message", [
    (dict(images=np.array([np.zeros((2, 2)), None], dtype=object)), "holds Python objects"),
    (dict(images=np.full((2, 4, 4), 300, np.int32)), "must lie in 0..255"),
    (dict(images=np.full((2, 4, 4), np.nan)), "32 NaN and 0 infinite pixel value"),
    (dict(images=np.zeros((2, 4, 4), bool)), "uint8 values, or floats"),
    (dict(images=np.zeros((0, 4, 4), np.uint8)), "at least one image"),
    (dict(images=np.zeros((2, 4, 4), np.uint8), labels=np.array([0.0, 1.0])), "non-negative integers"),
    (dict(images=np.zeros((2, 4, 4), np.uint8), labels=np.array([0, -1])), "minimum -1"),
    (dict(images=np.zeros((2, 4, 4), np.uint8), labels=np.array([0, 2]), classes=np.array(["a", "b"])),
     "names 2 classes but a label is 2"),
    (dict(pixels=np.zeros((2, 4, 4), np.uint8)), "no image array named 'images' or 'x'"),
])
def test_npz_refuses_bad_arrays_with_a_clear_message(tmp_path, arrays, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(SelfSupError, match=message):
        npz(tmp_path / "bad.npz")


# --- through the CLI -----------------------------------------------------------------------------------

def test_pretrain_on_a_colour_folder_records_what_it_read_and_evaluate_reads_it_the_same(tmp_path, capsys):
    rng = np.random.default_rng(0)
    for c in range(2):
        for i in range(12):
            a = rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)
            a[:, :, c] = 255
            Image.fromarray(a).save(grey(tmp_path / "data" / f"k{c}" / f"{i}.png"))
    (tmp_path / "data" / "k0" / "zero.png").write_bytes(b"")
    run = tmp_path / "run"
    with pytest.warns(UserWarning, match="skipped 1 unreadable"):
        code = main(["pretrain", "rotation", "--data", str(tmp_path / "data"), "--epochs", "1", "--batch-size", "8",
                     "--run-dir", str(run), "--image-size", "16", "--set", 'encoder_kwargs={"widths": [4, 4, 4]}',
                     "--train-set", "knn_every=0", "--no-progress"])
    assert code == 0
    out = capsys.readouterr().out
    assert "data: read 24 images" in out and "16x16 (given), 3 channels (inferred" in out and "skipped_files.txt" in out
    config = json.loads((run / "config.json").read_text())
    assert config["spec"]["channels"] == 3 and config["data"]["read"]["skipped"] == 1
    assert (run / "skipped_files.txt").read_text().startswith(str(tmp_path / "data" / "k0" / "zero.png"))
    with pytest.warns(UserWarning, match="skipped 1"):  # the run's size and channels, so the same test set
        assert main(["evaluate", str(run), "--data", str(tmp_path / "data"), "--protocol", "knn",
                     "--labels-per-class", "2"]) == 0
