"""Draw each face's numbered box and name on the photo, for the CLI's `--annotate` and the bot; `face_caption` is the
CLI's line for a face, in words."""

from __future__ import annotations

from PIL import Image, ImageDraw, ImageFont

from .answers import FaceAnswer, PhotoAnswer, display_name
from .decode import DecodedImage, DecodeLimits, decode_image
from .quality import brief

__all__ = ["BOX_COLOURS", "annotate", "box_label", "draw_faces", "face_caption"]

# Sure answers in green, unsure in amber, faces not named (someone else, or below quality) in grey: readable
# on most photos and to most colour-blind eyes.
BOX_COLOURS = {True: (46, 204, 64), False: (255, 170, 0)}
STRANGER_COLOUR = (200, 200, 200)


def face_caption(number: int, face: FaceAnswer) -> str:
    """`1. Jessica Chastain 97%`, `1. not sure (Jessica Chastain 55%)`, `1. someone else (closest: ...)`, or why
    a face is not named: `1. not named: blurred`."""
    if face.quality != "ok":
        return f"{number}. not named: {brief(face.quality, face.measures).split(',')[0]}"
    if not face.known:
        return f"{number}. someone else (closest: {display_name(face.label)})"
    percent = f"{display_name(face.label)} {face.confidence:.0%}"
    return f"{number}. {percent}" if face.sure else f"{number}. not sure ({percent})"


def box_label(number: int, face: FaceAnswer) -> str:
    """What the photo says on a face's box, in no language (the reply beside it says the rest in the user's, and the
    default font has no Cyrillic): `1. Jessica Chastain 97%`, `2. Jessica Chastain? 55%` (not sure), or only the
    number on the grey box of a face not named (someone else, or below quality)."""
    if not face.named:
        return f"{number}."
    percent = f"{display_name(face.label)}{'' if face.sure else '?'} {face.confidence:.0%}"
    return f"{number}. {percent}"


def annotate(data: bytes, answer: PhotoAnswer, limits: DecodeLimits | None = None) -> Image.Image:
    """The photo, upright and at working size, with a numbered box and caption on each face."""
    return draw_faces(decode_image(data, limits), answer)


def draw_faces(image: DecodedImage, answer: PhotoAnswer) -> Image.Image:
    """`annotate` for a photo already decoded (as the face search keeps it): no second decode."""
    im = Image.fromarray(image.pixels).copy()
    draw = ImageDraw.Draw(im)
    line = max(2, round(max(im.size) / 400))
    font = ImageFont.load_default(size=max(12, round(max(im.size) / 45)))
    for number, face in enumerate(answer.faces, start=1):
        left, top, right, bottom = (round(v * image.scale) for v in face.box)
        colour = BOX_COLOURS[face.sure] if face.named else STRANGER_COLOUR
        draw.rectangle((left, top, right, bottom), outline=colour, width=line)
        caption = box_label(number, face)
        tl, tt, tr, tb = draw.textbbox((0, 0), caption, font=font)
        text_w, text_h = tr - tl + 2 * line, tb - tt + 2 * line
        x = max(0, min(left, im.width - text_w))  # keep the caption inside the photo
        y = top - text_h if top >= text_h else bottom
        draw.rectangle((x, y, x + text_w, y + text_h), fill=colour)
        draw.text((x + line, y + line - tt), caption, fill=(0, 0, 0), font=font)
    return im
