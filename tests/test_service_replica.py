"""A replica of the classifier service, without Ray: every photo gets an answer and a status, whatever another
photo of its batch does (the replica in Ray: tests/test_service.py)."""

from __future__ import annotations

from collections.abc import Sequence

from model.answers import PhotoAnswer
from model.replica import answer_each, status_of
from testkit.imagery import jpeg, scene

BREAKS = jpeg(scene(1, width=1001))  # the photo that breaks any batch it is in


class BreaksOnOne:
    """The real classifier, except that a batch holding `BREAKS` fails as a whole (as a library error in the
    batched forward pass would)."""

    def __init__(self, classifier) -> None:
        self.classifier = classifier
        self.calls: list[int] = []

    def classify_many(self, photos: Sequence[bytes]) -> list[PhotoAnswer]:
        self.calls.append(len(photos))
        if BREAKS in photos:
            raise RuntimeError("the batch broke")
        return self.classifier.classify_many(photos)


def test_a_photo_that_breaks_its_batch_fails_alone(classifier) -> None:
    breaking = BreaksOnOne(classifier)
    eileen, twin = jpeg(scene(1)), jpeg(scene(1, twins=(True,)))
    answers = answer_each(breaking, [eileen, BREAKS, twin])
    assert [a.faces[0].label if a.faces else a.error_kind for a in answers] == ["Eileen", "Internal", "Twin"]
    assert answers[1].error == "Something went wrong reading this photo."
    assert breaking.calls == [3, 1, 1, 1]  # the batch, then each photo alone


def test_a_photo_the_service_could_not_answer_is_a_422_never_a_500() -> None:
    for kind in ("NotAnImage", "TruncatedImage", "Internal", "PhotoCrashed", "PhotoTimeout"):
        assert status_of(PhotoAnswer("error", error="...", error_kind=kind)) == 422, kind
    assert status_of(PhotoAnswer("error", error="...", error_kind="FileTooLarge")) == 413
    assert status_of(PhotoAnswer("no_face")) == 200
