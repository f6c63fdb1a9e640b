"""Decoding what users send: every bad input gets a typed error with a sentence fit for a chat."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from model.decode import (
    DecodeLimits,
    FileTooLarge,
    ImageError,
    ImageTooSmall,
    NotAnImage,
    TooManyPixels,
    TruncatedImage,
    decode_image,
)
from testkit.imagery import encode, face_crop, jpeg, scene


def png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG that declares a huge size: a decompression bomb's calling card."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def assert_user_message(error: ImageError) -> None:
    message = str(error)
    assert message[0].isupper() and message.endswith(".") and "Traceback" not in message


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"hello, this is a text file\n" * 20, NotAnImage),
        (b"", NotAnImage),
        (b"%PDF-1.4\n" + bytes(500), NotAnImage),
        (png_header_only(30000, 30000), TooManyPixels),  # past Pillow's own bomb limit
        (png_header_only(8000, 6000), TooManyPixels),  # under Pillow's limit, over ours
        (encode(Image.new("RGB", (10, 10), "white"), "PNG"), ImageTooSmall),
    ],
    ids=["text", "empty", "pdf", "bomb-huge", "bomb-over-cap", "10x10"],
)
def test_bad_inputs_are_refused_with_a_message(data: bytes, error: type[ImageError]) -> None:
    with pytest.raises(error) as caught:
        decode_image(data)
    assert_user_message(caught.value)


def test_a_50_mb_file_is_refused_before_it_is_opened() -> None:
    data = jpeg(face_crop()) + bytes(50 * 1024 * 1024)
    with pytest.raises(FileTooLarge, match="50 MB") as caught:
        decode_image(data)
    assert_user_message(caught.value)


def test_truncated_jpeg_and_png_are_refused() -> None:
    for data in (jpeg(scene(1)), encode(scene(1), "PNG")):
        with pytest.raises(TruncatedImage) as caught:
            decode_image(data[: len(data) // 2])
        assert_user_message(caught.value)


def test_large_photo_is_decoded_at_working_size_with_its_true_size_kept() -> None:
    big = scene(2, width=4000, height=3000)
    image = decode_image(jpeg(big), DecodeLimits(work_side=1600))
    assert image.original_size == (4000, 3000)
    assert max(image.pixels.shape[:2]) <= 1600
    assert image.scale == pytest.approx(image.pixels.shape[1] / 4000)


def test_exif_orientation_is_applied() -> None:
    upright = scene(1, width=600, height=400)
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # as a phone held sideways stores it
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to display"
    image = decode_image(jpeg_with_exif(stored, exif))
    assert image.original_size == (600, 400)
    assert np.abs(image.pixels.astype(int) - np.asarray(upright, dtype=int)).mean() < 8


def jpeg_with_exif(im: Image.Image, exif: Image.Exif) -> bytes:
    out = io.BytesIO()
    im.save(out, "JPEG", quality=95, exif=exif)
    return out.getvalue()


def reference_grey() -> np.ndarray:
    return np.asarray(face_crop().convert("L"), dtype=float)


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "CMYK", "LA", "I;16", "1"])
def test_every_mode_becomes_rgb_with_its_picture_kept(mode: str) -> None:
    face = face_crop()
    if mode == "I;16":
        grey = np.asarray(face.convert("L"), dtype=np.uint16) * 257
        im = Image.fromarray(grey)
        assert im.mode == "I;16"
    else:
        im = face.convert(mode)
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    image = decode_image(encode(im, fmt))
    assert image.pixels.dtype == np.uint8 and image.pixels.shape == (face.height, face.width, 3)
    grey = image.pixels.astype(float).mean(axis=2)
    assert np.abs(blur(grey) - blur(reference_grey())).mean() < 12


def blur(grey: np.ndarray, block: int = 5) -> np.ndarray:
    """Block means, so a dithered 1-bit picture compares with the grey one it came from."""
    h, w = (s - s % block for s in grey.shape)
    return grey[:h, :w].reshape(h // block, block, w // block, block).mean(axis=(1, 3))


def test_transparent_background_becomes_white() -> None:
    im = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    image = decode_image(encode(im, "PNG"))
    assert (image.pixels == 255).all()


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_animations_give_their_first_frame(fmt: str) -> None:
    first = scene(1, width=400, height=300)
    second = Image.new("RGB", first.size, (255, 0, 0))
    data = encode(first, fmt, save_all=True, append_images=[second], duration=100, loop=0)
    assert Image.open(io.BytesIO(data)).n_frames == 2
    image = decode_image(data)
    assert np.abs(image.pixels.astype(int) - np.asarray(first, dtype=int)).mean() < 12


def test_an_animated_gif_cut_short_after_its_first_frame_is_damaged_not_an_internal_error(finder) -> None:
    """Found by `bench.fuzz`: Pillow's `is_animated` raises IndexError reading such a file's second frame."""
    from model.search import search_photo

    frames = [scene(1, width=400, height=300), Image.new("RGB", (400, 300), (255, 0, 0))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)

    def pillow_fails(cut: bytes) -> bool:
        try:
            Image.open(io.BytesIO(cut)).is_animated  # noqa: B018
        except IndexError:
            return True
        return False

    cut = next(data[:n] for n in range(len(data) // 2, len(data)) if pillow_fails(data[:n]))
    with pytest.raises(TruncatedImage, match="cut short or damaged") as caught:
        decode_image(cut)
    assert_user_message(caught.value)
    found = search_photo(cut, finder, DecodeLimits()).found  # as the bot and the service answer it
    assert found.outcome == "error" and found.error_kind == "TruncatedImage"
    assert found.note == "This image file is cut short or damaged, so I can't read it."


def test_corrupt_bytes_give_an_image_or_a_clear_error() -> None:
    rng = np.random.default_rng(1)
    good = bytearray(jpeg(scene(1, width=320, height=240)))
    for _ in range(40):
        data = bytearray(good)
        for pos in rng.integers(20, len(data), 12):
            data[pos] = int(rng.integers(0, 256))
        try:
            image = decode_image(bytes(data))
        except ImageError as e:
            assert_user_message(e)
        else:
            assert image.pixels.shape[2] == 3


def test_a_large_jpeg_is_decoded_reduced_for_a_first_look_and_whole_only_when_asked() -> None:
    """The detector's first look needs 512 px: a 2400 px JPEG comes at 1/4 scale, its full decode waits."""
    photo = scene(1, width=2400, height=1600)
    data = jpeg(photo)
    image = decode_image(data, DecodeLimits(work_side=1600), first_side=512)
    reduced, scale = image.reduced(512)
    assert reduced.shape == (400, 600, 3) and scale == 0.25
    small = np.asarray(photo.resize((600, 400), Image.Resampling.BOX), dtype=int)
    assert np.abs(reduced.astype(int) - small).mean() < 3  # the same picture, only smaller
    whole = decode_image(data, DecodeLimits(work_side=1600))
    assert image.original_size == whole.original_size == (2400, 1600)
    assert image.scale == whole.scale and np.array_equal(image.pixels, whole.pixels)


def test_a_reduced_jpeg_keeps_its_exif_orientation() -> None:
    upright = scene(1, width=1200, height=1800)
    exif = Image.Exif()
    exif[0x0112] = 6
    image = decode_image(jpeg_with_exif(upright.transpose(Image.Transpose.ROTATE_90), exif), first_side=512)
    reduced, scale = image.reduced(512)
    assert image.original_size == (1200, 1800) and reduced.shape == (900, 600, 3) and scale == 0.5
    small = np.asarray(upright.resize((600, 900), Image.Resampling.BOX), dtype=int)
    assert np.abs(reduced.astype(int) - small).mean() < 8


def test_a_truncated_large_jpeg_is_refused_even_when_decoded_reduced() -> None:
    data = jpeg(scene(1, width=2400, height=1600))
    with pytest.raises(TruncatedImage) as caught:
        decode_image(data[: len(data) // 2], first_side=512)
    assert_user_message(caught.value)


def test_an_image_sent_to_another_process_travels_at_working_resolution() -> None:
    import pickle

    image = decode_image(jpeg(scene(1, width=2400, height=1600)), DecodeLimits(work_side=1600), first_side=512)
    travelled = pickle.loads(pickle.dumps(image))
    assert travelled.pixels.shape == (1067, 1600, 3) and travelled.scale == image.scale
    assert np.array_equal(travelled.pixels, image.pixels)


def test_working_pixels_decoded_ahead_on_another_thread_are_the_same_pixels() -> None:
    """While the detector looks at the reduced decode, a thread decodes the working pixels the chips need."""
    import pickle
    from concurrent.futures import ThreadPoolExecutor

    class Counting(ThreadPoolExecutor):
        submitted = 0

        def submit(self, fn, /, *args, **kwargs):
            self.submitted += 1
            return super().submit(fn, *args, **kwargs)

    data = jpeg(scene(1, width=2400, height=1600))
    whole = decode_image(data, DecodeLimits(work_side=1600)).pixels
    with Counting(1) as executor:
        for read in ("pixels", "pickled"):
            image = decode_image(data, DecodeLimits(work_side=1600), first_side=512)
            image.decode_ahead(executor)
            image.decode_ahead(executor)  # once is enough: no second decode
            pixels = image.pixels if read == "pixels" else pickle.loads(pickle.dumps(image)).pixels
            assert np.array_equal(pixels, whole)
            image.decode_ahead(executor)  # decoded already: nothing more to do
    assert executor.submitted == 2


def pillow_pixels(data: bytes, reduction: int = 1) -> np.ndarray:
    """What Pillow alone makes of a JPEG: first frame, turned by EXIF, in RGB, reduced by its draft."""
    from PIL import ImageOps

    im = Image.open(io.BytesIO(data))
    if reduction > 1:
        im.draft("RGB", (im.width // reduction, im.height // reduction))
    return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_gives_pillows_own_pixels(orientation: int) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = jpeg_with_exif(scene(1, width=1100, height=700), exif)
    assert np.array_equal(decode_image(data).pixels, pillow_pixels(data))
    reduced, _ = decode_image(data, first_side=512).reduced(512)
    assert np.array_equal(reduced, pillow_pixels(data, 2))


def test_grey_and_progressive_jpegs_give_pillows_own_pixels() -> None:
    for data in (
        encode(scene(1, width=900, height=600).convert("L"), "JPEG"),
        encode(scene(2), "JPEG", progressive=True),
    ):
        assert np.array_equal(decode_image(data).pixels, pillow_pixels(data))


def test_a_jpeg_that_libjpeg_complains_about_is_decoded_as_pillow_decodes_it() -> None:
    """Stray bytes before the end marker: libjpeg warns; the photo is still whole, and answered."""
    data = jpeg(scene(1, width=800, height=600))
    assert data.endswith(b"\xff\xd9")
    stray = data[:-2] + b"\x00" * 7 + b"\xff\xd9"
    assert np.array_equal(decode_image(stray).pixels, pillow_pixels(stray))
