"""Turn the bytes a user sent into an upright RGB image, refusing anything unsafe or unusable.

Every refusal is an `ImageError` whose message can be shown to a chat user as it is.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Iterator
from concurrent.futures import Executor, Future
from dataclasses import dataclass

import numpy as np
import simplejpeg
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
    "file_too_large",
]

# Pillow opens many more formats; these are the ones people send, and fewer parsers is less attack surface.
ACCEPTED_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF")  # JPEG also opens MPO


class ImageError(ValueError):
    """A photo we cannot answer; `str(error)` is a sentence fit to show the user, `details` its numbers (so that a
    chat bot can say it again in the user's language)."""

    def __init__(self, message: str, **details: int) -> None:
        super().__init__(message)
        self.details = details


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


class DecodedImage:
    """An upright RGB image and how it maps back to the photo the user sent.

    A JPEG is decoded only as finely as each use needs: libjpeg scales it by 1/2, 1/4 or 1/8 while
    decoding (`reduced`), and its working resolution (`pixels`) is decoded on first use. Other
    formats are decoded once, at working resolution.
    """

    def __init__(
        self,
        original_size: tuple[int, int],
        pixels: np.ndarray | None = None,
        *,
        jpeg: bytes | None = None,
        work_side: int = DecodeLimits.work_side,
    ) -> None:
        if pixels is None and jpeg is None:
            raise ValueError("a DecodedImage needs its pixels or the JPEG to decode them from")
        self.original_size = original_size  # (width, height) of the upright original
        self.work_size = _fit(original_size, work_side)  # (width, height) of `pixels`
        self._pixels = pixels
        self._jpeg = jpeg
        self._reductions: dict[int, np.ndarray] = {}  # libjpeg's reduction (2, 4 or 8) -> pixels
        self._ahead: Future[np.ndarray] | None = None  # the working pixels, being decoded by `decode_ahead`

    @property
    def pixels(self) -> np.ndarray:
        """(H, W, 3) uint8 at working resolution: the photo's own, at most `work_side` on its long side."""
        if self._pixels is None:
            if self._ahead is not None:
                ahead, self._ahead = self._ahead, None
                self._pixels = ahead.result()
            else:
                self._pixels = _decode_jpeg(self._jpeg, size=self.work_size)
        return self._pixels

    def decode_ahead(self, executor: Executor) -> None:
        """Start decoding the working pixels on `executor`, for `pixels` to take when first asked.

        libjpeg-turbo decodes without Python's GIL, so a thread decodes them on the other core while dlib's
        detector looks at the reduced decode: a photo with a face needs them for its chips next.
        """
        if self._pixels is None and self._ahead is None and self._jpeg is not None:
            self._ahead = executor.submit(_decode_jpeg, self._jpeg, size=self.work_size)

    @property
    def scale(self) -> float:
        """Working pixels per original pixel (<= 1)."""
        return self.work_size[0] / self.original_size[0]

    def reduced(self, side: int) -> tuple[np.ndarray, float]:
        """The image at the coarsest libjpeg reduction whose long side is at least `side`, and its scale.

        The working pixels (and their scale) where no reduction is coarser than them: not a JPEG, or
        not that large. Scale: pixels per original pixel.
        """
        scale = side / max(self.original_size)
        reduction = next((r for r in (8, 4, 2) if 1 / r >= scale), 1) if self._jpeg is not None else 1
        if reduction == 1 or 1 / reduction >= self.scale:
            return self.pixels, self.scale
        if reduction not in self._reductions:
            self._reductions[reduction] = _decode_jpeg(self._jpeg, reduction=reduction)
        return self._reductions[reduction], 1 / reduction

    def __getstate__(self) -> dict:
        # Sent between processes at working resolution, as boxes are drawn on it: no JPEG, no reductions.
        return {**self.__dict__, "_pixels": self.pixels, "_jpeg": None, "_reductions": {}, "_ahead": None}


def _fit(size: tuple[int, int], side: int) -> tuple[int, int]:
    """`size` shrunk to a long side of `side`, if it is longer, keeping its aspect."""
    width, height = size
    if max(width, height) <= side:
        return size
    scale = side / max(width, height)
    return (max(1, round(width * scale)), max(1, round(height * scale)))


def _megabytes(n: int) -> str:
    return f"{n / (1024 * 1024):.0f} MB"


def file_too_large(size: int, max_bytes: int) -> FileTooLarge:
    """The refusal of a file of `size` bytes, over the cap: its sentence is the same wherever it is refused."""
    return FileTooLarge(
        f"This file is {_megabytes(size)}; I can take files up to {_megabytes(max_bytes)}.",
        size=size,
        max_bytes=max_bytes,
    )


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
    except Exception as e:  # whatever a parser raises on the file's bytes is the file's fault (see _reading)
        raise TruncatedImage("This image file is damaged and can't be opened.") from e


def _upright_size(im: Image.Image) -> tuple[int, int]:
    """The size after EXIF orientation, read without decoding the pixels."""
    return (im.height, im.width) if _orientation(im) in (5, 6, 7, 8) else (im.width, im.height)


@contextlib.contextmanager
def _reading() -> Iterator[None]:
    """Around Pillow reading a file's bytes: whatever it raises there is the file's fault, not ours.

    Pillow's parsers raise more than OSError on damage (an animated GIF cut short after its first
    frame makes `is_animated` raise IndexError), and a new Pillow may raise something else again: a
    list of types would let the next one through as an "internal" error. Only Pillow's calls go
    inside, so a bug of our own still shows as one.
    """
    try:
        yield
    except Exception as e:
        raise TruncatedImage("This image file is cut short or damaged, so I can't read it.") from e


def _load_first_frame(im: Image.Image, work_side: int, reduction: int = 1) -> Image.Image:
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        raise RuntimeError("PIL.ImageFile.LOAD_TRUNCATED_IMAGES is set: truncated photos would pass as whole")
    with _reading():
        # is_animated reads on through the file to count its frames: damage past the first shows here.
        if getattr(im, "is_animated", False):
            im.seek(0)
        if im.format in ("JPEG", "MPO"):
            if reduction > 1:
                im.draft("RGB", (im.width // reduction, im.height // reduction))
            elif max(im.size) > work_side:
                # Let libjpeg decode at 1/2, 1/4 or 1/8 scale: it skips most of the work.
                im.draft("RGB", (work_side, work_side))
        im.load()
    return im


def _upright_rgb(im: Image.Image, size: tuple[int, int] | None) -> np.ndarray:
    """A loaded image turned by its EXIF orientation, in RGB, resized to `size` when given."""
    with contextlib.suppress(Exception):
        im = ImageOps.exif_transpose(im)
    im = _to_rgb(im)
    if size is not None and im.size != size:
        im = im.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
    return np.asarray(im)


def _decode_jpeg(data: bytes, size: tuple[int, int] | None = None, reduction: int = 1) -> np.ndarray:
    """A JPEG that `decode_image` has already checked, decoded again: reduced by libjpeg, or at `size`.

    libjpeg-turbo decodes straight into an array (simplejpeg) when the file decodes without a
    complaint: 1 ms for a 1280x853 photo, where Pillow's decode and its copy into NumPy take 8.
    Anything it complains about goes to Pillow, which decides what a damaged file is, as for every
    other format; both give the same pixels.
    """
    im = _open(data)
    work_side = max(size) if size else 0
    fast = _turbo_decode(im, data, work_side, reduction)
    if fast is not None:
        if size is not None and fast.shape[1::-1] != size:
            fast = np.asarray(Image.fromarray(fast).resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0))
        return fast
    return _upright_rgb(_load_first_frame(im, work_side, reduction), size)


def _turbo_decode(im: Image.Image, data: bytes, work_side: int, reduction: int) -> np.ndarray | None:
    """The first frame upright in RGB, at Pillow's draft scale, by libjpeg-turbo; None when it complains."""
    if im.format not in ("JPEG", "MPO") or im.mode not in ("RGB", "L"):
        return None  # CMYK and YCCK: Pillow's conversions
    width, height = im.size
    if reduction == 1 and work_side and max(width, height) > work_side:
        # The scale Pillow's `draft` picks for the working size, so that both give the same pixels.
        fits = min(width // work_side, height // work_side)
        reduction = next((r for r in (8, 4, 2) if fits >= r), 1)
    wanted = (-(-width // reduction), -(-height // reduction))
    try:
        pixels = simplejpeg.decode_jpeg(data, colorspace="RGB", min_width=wanted[0], min_height=wanted[1])
    except ValueError:  # strict: a warning too (a truncated file, stray bytes); Pillow decides
        return None
    if pixels.shape[:2] != wanted[::-1]:
        return None
    return _turned(pixels, _orientation(im))


def _orientation(im: Image.Image) -> int:
    try:
        return int(im.getexif().get(0x0112, 1))
    except Exception:  # a broken EXIF block is ignored, as viewers do
        return 1


def _turned(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """`pixels` turned upright as EXIF orientation says, as `ImageOps.exif_transpose` turns an image."""
    turn = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.transpose(1, 0, 2),
        6: lambda a: np.rot90(a, -1),
        7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),
        8: lambda a: np.rot90(a, 1),
    }.get(orientation)
    return np.ascontiguousarray(turn(pixels)) if turn else pixels


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


def decode_image(data: bytes, limits: DecodeLimits | None = None, first_side: int | None = None) -> DecodedImage:
    """Decode a user's photo: size caps first, then EXIF orientation, first frame only, RGB.

    `first_side`: the long side the first use needs (the face detector's first look). A JPEG large
    enough is then decoded reduced to that, and at working resolution only if a later use asks.
    """
    limits = limits or DecodeLimits()
    if len(data) > limits.max_bytes:
        raise file_too_large(len(data), limits.max_bytes)
    if not data:
        raise NotAnImage("That file is empty.", size=0)
    im = _open(data)
    width, height = _upright_size(im)
    if width * height > limits.max_pixels:
        raise TooManyPixels(
            f"This image is {width}x{height} pixels; I can take up to {limits.max_pixels / 1e6:.0f} megapixels.",
            width=width,
            height=height,
            max_pixels=limits.max_pixels,
        )
    if min(width, height) < limits.min_side:
        raise ImageTooSmall(
            f"This image is only {width}x{height} pixels, too small to recognise a face in.", width=width, height=height
        )
    original_size = (width, height)
    if im.format in ("JPEG", "MPO"):
        image = DecodedImage(original_size, jpeg=data, work_side=limits.work_side)
        # Decoded now, so that damage is found here; reduced, libjpeg still reads every byte.
        if first_side:
            image.reduced(first_side)
        else:
            image.pixels  # noqa: B018
        return image
    pixels = _upright_rgb(_load_first_frame(im, limits.work_side), _fit(original_size, limits.work_side))
    return DecodedImage(original_size, pixels, work_side=limits.work_side)
