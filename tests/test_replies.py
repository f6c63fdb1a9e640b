"""What a reply says and how it is cut into messages: names as people write them, a capped list of faces,
and messages within each chat service's limits."""

from __future__ import annotations

import pytest

from bot.core import (
    DISCORD,
    TELEGRAM,
    ChatCore,
    MessageLimits,
    ModelInfo,
    RateLimiter,
    Reply,
    describe,
    face_line,
    reply_messages,
)
from testkit.crowd import crowd_answer

JPEG = b"\xff\xd8\xff boxed photo"


def test_class_names_from_folders_show_with_spaces_in_every_reply() -> None:
    one = describe(crowd_answer(1))
    assert one.text.startswith("Bryce Dallas Howard, "), one.text
    crowd = describe(crowd_answer(7))
    assert "_" not in crowd.text and "Jessica Chastain" in crowd.text and "closest: Bryce Dallas Howard" in crowd.text
    core = ChatCore(
        None, RateLimiter(1), lambda: ModelInfo(["Bryce_Dallas_Howard", "Jessica_Chastain"], 0.9, None, None)
    )
    for text in (core.start_text(), core.help_text(), core.about_text()):
        assert "Bryce Dallas Howard or Jessica Chastain" in text and "_" not in text, text
    # What programs read keeps the class name.
    assert crowd.answer.faces[0].label == "Bryce_Dallas_Howard"


def test_a_crowd_lists_the_first_faces_and_counts_the_rest() -> None:
    reply = describe(crowd_answer(25), JPEG)
    lines = reply.text.splitlines()
    assert lines[0] == "I found 25 faces:"
    assert [line.split(".")[0] for line in lines[1:21]] == [str(i) for i in range(1, 21)]
    assert lines[21:] == ["and 5 more, numbered on the photo."]
    assert describe(crowd_answer(25), JPEG, max_listed=3).text.splitlines()[4:] == [
        "and 22 more, numbered on the photo."
    ]
    # Up to the cap, every face is listed and nothing is added.
    exact = describe(crowd_answer(20), JPEG).text.splitlines()
    assert len(exact) == 21 and not exact[-1].startswith("and ")


def test_a_crowd_lists_its_largest_faces_under_their_numbers_on_the_photo() -> None:
    """Faces grow left to right: the largest, rightmost ones are listed, numbered as the boxed photo numbers them."""
    answer = crowd_answer(25)
    for i, face in enumerate(answer.faces):
        face.box = (40 * i, 10, 40 * i + 10 + i, 20 + i)  # each a little larger than the one on its left
    lines = describe(answer, JPEG).text.splitlines()
    assert [line.split(".")[0] for line in lines[1:21]] == [str(n) for n in range(6, 26)]
    assert lines[1] == f"6. {face_line(answer.faces[5])}"  # number n is the face boxed "n." on the photo
    assert lines[21:] == ["and 5 more, numbered on the photo."]
    # The largest face anywhere in the photo is listed, under its number, in the photo's order.
    answer.faces[0].box = (0, 0, 500, 500)
    numbers = [line.split(".")[0] for line in describe(answer, JPEG, max_listed=3).text.splitlines()[1:4]]
    assert numbers == ["1", "24", "25"]


def units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


@pytest.mark.parametrize("limits", [TELEGRAM, DISCORD], ids=["telegram", "discord"])
def test_a_long_reply_comes_in_whole_lines_within_each_services_limits(limits: MessageLimits) -> None:
    text = describe(crowd_answer(100), max_listed=100).text
    assert units(text) > limits.text  # one message would be refused
    messages = reply_messages(Reply(text), limits)
    assert len(messages) > 1 and all(0 < units(m.text) <= limits.text for m in messages)
    assert all(m.image is None for m in messages)
    assert "\n".join(m.text for m in messages) == text  # nothing lost, nothing cut mid-line


def test_the_boxed_photo_comes_first_with_the_text_as_caption_when_it_fits() -> None:
    short = describe(crowd_answer(3), JPEG)
    [photo] = reply_messages(short, TELEGRAM)
    assert photo == Reply(short.text, JPEG)

    # Too long for Telegram's 1,024-character caption, not for Discord's 2,000.
    longer = describe(crowd_answer(40), JPEG, max_listed=40)
    assert TELEGRAM.caption < units(longer.text) <= DISCORD.caption
    photo, text = reply_messages(longer, TELEGRAM)
    assert (photo.image, photo.text, text.image, text.text) == (JPEG, "", None, longer.text)
    [together] = reply_messages(longer, DISCORD)
    assert together == Reply(longer.text, JPEG)


def test_a_line_longer_than_a_message_is_cut_and_wide_characters_count_double() -> None:
    emoji = "\U0001f600"  # two UTF-16 code units, as Telegram and Discord count it
    limits = MessageLimits(text=10, caption=10)
    messages = [m.text for m in reply_messages(Reply("short\n" + emoji * 8 + "\nend"), limits)]
    assert all(units(m) <= 10 for m in messages), messages
    assert "".join(messages).replace("\n", "") == "short" + emoji * 8 + "end"
