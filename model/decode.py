"""Turn the bytes a user sent into an upright RGB image, refusing anything unsafe or unusable.

Every refusal is an `ImageError` whose message can be shown to a chat user as it is.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

__all__ = [
    "ACCEPTED_FORMATS",
    "DecodeLimits",
    "DecodedImage",
    "FileTooLarge",
    "ImageError",
    "ImageTooSmall",
    "NotAnImage",
    "TooManyPixels",
    "TruncatedImage",
    "decode_image",
]

# Pillow opens many more formats; these are the ones people send, and fewer parsers is less attack surface.
ACCEPTED_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF")  # JPEG also opens MPO


class ImageError(ValueError):
    """A photo we cannot answer; `str(error)` is a sentence fit to show the user."""


class NotAnImage(ImageError):
    """The bytes are not an image in a format we read."""


class FileTooLarge(ImageError):
    """The file has more bytes than the configured cap."""


class TooManyPixels(ImageError):
    """The image declares more pixels than the cap (a decompression bomb, or simply huge)."""


class TruncatedImage(ImageError):
    """The file is cut short or damaged inside."""


class ImageTooSmall(ImageError):
    """The image is too small to hold a face we could recognise."""


@dataclass(frozen=True)
class DecodeLimits:
    """Caps applied before and while decoding."""

    max_bytes: int = 20 * 1024 * 1024  # Telegram's Bot API serves files up to 20 MB
    max_pixels: int = 40_000_000  # a 50 MP phone photo is about 8200x6150; bombs declare far more
    min_side: int = 32
    # Larger photos are decoded at a reduced scale: faces stay big enough, and it is much faster.
    work_side: int = 1600


@dataclass(frozen=True)
class DecodedImage:
    """An upright RGB image and how it maps back to the photo the user sent."""

    pixels: np.ndarray  # (H, W, 3) uint8, at working resolution
    original_size: tuple[int, int]  # (width, height) of the upright original
    scale: float  # working pixels per original pixel (<= 1)


def _megabytes(n: int) -> str:
    return f"{n / (1024 * 1024):.0f} MB"


def _open(data: bytes) -> Image.Image:
    try:
        with warnings.catch_warnings():
            # Pillow warns on large images and raises on very large ones; we apply our own cap below.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise TooManyPixels("This image has far too many pixels for me to open.") from e
    except UnidentifiedImageError as e:
        raise NotAnImage("That file isn't an image I can read (I take JPEG, PNG, GIF, WebP, BMP, TIFF).") from e
    except (OSError, SyntaxError, ValueError) as e:
        raise TruncatedImage("This image file is damaged and can't be opened.") from e


def _upright_size(im: Image.Image) -> tuple[int, int]:
    """The size after EXIF orientation, read without decoding the pixels."""
    try:
        orientation = im.getexif().get(0x0112, 1)
    except Exception:  # a broken EXIF block is ignored, as viewers do
        orientation = 1
    return (im.height, im.width) if orientation in (5, 6, 7, 8) else (im.width, im.height)


def _load_first_frame(im: Image.Image, work_side: int) -> Image.Image:
    if getattr(im, "is_animated", False):
        im.seek(0)
    if im.format in ("JPEG", "MPO") and max(im.size) > work_side:
        # Let libjpeg decode at 1/2, 1/4 or 1/8 scale: it skips most of the work.
        im.draft("RGB", (work_side, work_side))
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        raise RuntimeError("PIL.ImageFile.LOAD_TRUNCATED_IMAGES is set: truncated photos would pass as whole")
    try:
        im.load()
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, MemoryError) as e:
        raise TruncatedImage("This image file is cut short or damaged, so I can't read it.") from e
    return im


def _to_rgb(im: Image.Image) -> Image.Image:
    if im.mode == "RGB":
        return im
    if im.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        # Pillow's own conversion clips 16-bit values at 255, which turns most photos white.
        values = np.asarray(im, dtype=np.float64)
        top = 65535.0 if values.max(initial=0) > 255 else 255.0
        grey = np.clip(values * (255.0 / top), 0, 255).round().astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return im.convert("RGB")


def decode_image(data: bytes, limits: DecodeLimits | None = None) -> DecodedImage:
    """Decode a user's photo: size caps first, then EXIF orientation, first frame only, RGB."""
    limits = limits or DecodeLimits()
    if len(data) > limits.max_bytes:
        raise FileTooLarge(
            f"This file is {_megabytes(len(data))}; I can take files up to {_megabytes(limits.max_bytes)}."
        )
    if not data:
        raise NotAnImage("That file is empty.")
    im = _open(data)
    width, height = _upright_size(im)
    if width * height > limits.max_pixels:
        raise TooManyPixels(
            f"This image is {width}x{height} pixels; I can take up to {limits.max_pixels / 1e6:.0f} megapixels."
        )
    if min(width, height) < limits.min_side:
        raise ImageTooSmall(f"This image is only {width}x{height} pixels, too small to recognise a face in.")
    im = _load_first_frame(im, limits.work_side)
    with contextlib.suppress(Exception):
        im = ImageOps.exif_transpose(im)
    im = _to_rgb(im)
    if max(im.size) > limits.work_side:
        im.thumbnail((limits.work_side, limits.work_side), Image.Resampling.BILINEAR)
    scale = im.width / width
    return DecodedImage(pixels=np.asarray(im), original_size=(width, height), scale=scale)
