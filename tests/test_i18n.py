"""The bot's languages below the adapters: which language a user gets, numbers and plurals the language's way, and
every reply of the chat core in it."""

from __future__ import annotations

import asyncio

import pytest

from bot.core import ChatCore, ModelInfo, Photo, RateLimiter, Request, bot_description, command_descriptions
from bot.core import short_description as short
from bot.i18n import LANGUAGES, language_of, negotiate, texts_for
from bot.replies import describe, face_line
from bot.settings import SettingsError, load_settings
from model.answers import FaceAnswer, PhotoAnswer, TurnedAway

ENGLISH = texts_for("en")


@pytest.mark.parametrize(
    ("tag", "code"),
    [
        ("es", "es"),
        ("es-419", "es"),
        ("es-ES", "es"),
        ("pt-BR", "pt_BR"),
        ("pt", "pt_BR"),
        ("pt_PT", "pt_BR"),
        ("ru", "ru"),
        ("de-AT", "de"),
        ("fr-CA", "fr"),
        ("en-GB", "en"),
        ("EN-us", "en"),
        ("zh-hans", None),
        ("", None),
        (None, None),
    ],
)
def test_a_users_language_tag_picks_one_of_ours(tag: str | None, code: str | None) -> None:
    assert language_of(tag) == code


def test_the_first_language_we_speak_wins_else_the_default() -> None:
    assert negotiate(["zh", "uk", "ru", "de"]) == "ru"
    assert negotiate(["zh", None], default="fr") == "fr"
    assert negotiate([], default="es") == "es"


def test_percentages_and_numbers_follow_the_locale() -> None:
    assert texts_for("en").percent(0.97) == "97%"
    assert texts_for("fr").percent(0.97) == "97\u00a0%"
    assert texts_for("de").percent(0.97) == "97\u00a0%"
    assert texts_for("de").percent(0.985, decimals=1) == "98,5\u00a0%"
    assert texts_for("fr").decimal(0.12) == "0,12"
    assert texts_for("en").decimal(0.12) == "0.12"


def _faces(n: int, confidence: float = 0.97) -> PhotoAnswer:
    faces = [
        FaceAnswer((10 * i, 0, 10 * i + 9, 9), "Jessica_Chastain", confidence, True, {"a": confidence, "b": 0.03})
        for i in range(n)
    ]
    return PhotoAnswer("ok", faces)


@pytest.mark.parametrize(("n", "word"), [(2, "лица"), (5, "лиц"), (21, "лицо"), (22, "лица"), (11, "лиц")])
def test_russian_counts_faces_in_its_three_plural_forms(n: int, word: str) -> None:
    first_line = describe(_faces(n), tr=texts_for("ru")).text.splitlines()[0]
    assert first_line == texts_for("ru").ngettext("I found {n} face:", "I found {n} faces:", n)
    assert f"{n} {word}" in first_line


def test_a_face_line_is_in_the_language_with_its_percentage_and_the_name_untranslated() -> None:
    line = face_line(_faces(1).faces[0], texts_for("fr"))
    assert line == texts_for("fr").gettext("{name}, {confidence} sure", name="Jessica Chastain", confidence="97\u00a0%")
    assert "Jessica Chastain" in line and "97\u00a0%" in line and "sure" not in line


def test_a_face_not_named_and_a_photo_without_a_face_are_told_in_the_language() -> None:
    es = texts_for("es")
    away = PhotoAnswer("no_face", turned_away=[TurnedAway((0, 0, 30, 30), "too_small", {"width": 30}, "")])
    text = describe(away, tr=es).text
    reason = es.ngettext(
        "This face is only {n} pixel wide: send a closer photo.",
        "This face is only {n} pixels wide: send a closer photo.",
        30,
    )
    assert text == es.gettext("I found a face but can't name it. {reason}", reason=reason)
    assert "30" in text and text != describe(away).text
    assert describe(PhotoAnswer("no_face"), tr=es).text == es.gettext("I can't find a face in this photo.")


def test_an_unreadable_photo_is_told_in_the_language_with_its_numbers() -> None:
    de = texts_for("de")
    small = PhotoAnswer("error", error="English", error_kind="ImageTooSmall", details={"width": 10, "height": 10})
    text = describe(small, tr=de).text
    assert text == de.gettext(
        "This image is only {width}x{height} pixels, too small to recognise a face in.", width=10, height=10
    )
    assert "10" in text and text != "English"


class _NoWorker:
    async def classify(self, data: bytes):  # never reached: every photo here is refused first
        raise AssertionError("a refused photo reached the model")


def _core(default_language: str = "en") -> ChatCore:
    info = ModelInfo(["Jessica_Chastain", "Bryce_Dallas_Howard"], 0.985, "2026-11-20T10:00:00", 73)
    return ChatCore(_NoWorker(), RateLimiter(10, 60), lambda: info, default_language=default_language)


@pytest.mark.parametrize("code", [c for c in LANGUAGES if c != "en"])
def test_every_command_text_is_in_the_language_and_keeps_the_names(code: str) -> None:
    core, tr = _core(), texts_for(code)
    for text in (core.start_text(tr), core.help_text(tr), core.about_text(tr), core.privacy_text(tr)):
        assert "Jessica Chastain" in text or text == core.privacy_text(tr)
        assert text not in (core.start_text(), core.help_text(), core.about_text(), core.privacy_text())
    assert tr.percent(0.985, decimals=1) in core.about_text(tr)


@pytest.mark.parametrize("code", LANGUAGES)
def test_the_command_menu_fits_telegram_and_discord_in_every_language(code: str) -> None:
    tr = texts_for(code)
    assert all(1 <= len(text) <= 100 for text in command_descriptions(tr).values())  # Discord 100, Telegram 256
    assert 1 <= len(short(tr)) <= 120 and 1 <= len(bot_description(tr)) <= 512


def test_a_refusal_is_in_the_askers_language() -> None:
    async def never() -> bytes:
        raise AssertionError("a refused file was downloaded")

    core = _core()
    reply = asyncio.run(core.answer(Photo(never, 1000, "application/pdf"), Request("web", "page", "u", language="ru")))
    assert reply.refused == "not_an_image"
    assert reply.text == texts_for("ru").gettext(
        "That file isn't an image. Send me a photo (JPEG, PNG, WebP, GIF...) with a face in it."
    )
    assert reply.text != core.not_an_image().text


def test_default_language_answers_users_whose_language_we_do_not_speak(tmp_path) -> None:
    core = _core(default_language="de")
    assert core.texts("zh-CN", None).code == "de"
    assert core.texts("fr-FR").code == "fr"
    assert core.start_text() == core.start_text(texts_for("de"))


def test_the_default_language_setting_takes_our_languages_and_refuses_others(tmp_path) -> None:
    base = {"WEB_PORT": "8080", "MODEL_PATH": str(tmp_path / "export.pkl")}
    assert load_settings({**base, "DEFAULT_LANGUAGE": "pt-BR"}).default_language == "pt_BR"
    assert load_settings(base).default_language == "en"
    with pytest.raises(SettingsError, match="DEFAULT_LANGUAGE='tlh'"):
        load_settings({**base, "DEFAULT_LANGUAGE": "tlh"})


def test_the_boxed_photo_carries_names_and_numbers_but_no_words() -> None:
    """The photo drawn for a crowd is the same for every language: the reply's lines, under the same numbers, say
    in the user's language what each box means."""
    from model.annotate import box_label

    sure, unsure = _faces(1).faces[0], _faces(1, confidence=0.55).faces[0]
    unsure.sure = False
    stranger = FaceAnswer((0, 0, 9, 9), "Jessica_Chastain", 0.9, True, {"a": 0.9, "b": 0.1}, known=False)
    blurred = FaceAnswer((0, 0, 9, 9), "Jessica_Chastain", 0.9, False, {"a": 0.9, "b": 0.1}, quality="blurred")
    assert box_label(1, sure) == "1. Jessica Chastain 97%"
    assert box_label(2, unsure) == "2. Jessica Chastain? 55%"
    assert box_label(3, stranger) == "3." and box_label(4, blurred) == "4."
