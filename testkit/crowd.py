"""A crowd photo's answer, for tests of long replies: no test photo has the 60 faces that make one.

`CrowdWorker` stands in for the inference worker (the model's side of `ChatCore`) and answers every photo
with `n` faces named after training folders ("Bryce_Dallas_Howard"), and a boxed photo; everything after it (the
core's wording, the adapters, the real chat clients and the fake services) runs for real.
"""

from __future__ import annotations

from bot.worker import Result
from model.answers import FaceAnswer, PhotoAnswer
from testkit.imagery import jpeg, scene

__all__ = ["FOLDER_NAMES", "CrowdWorker", "crowd_answer"]

# Class names as the training script takes them from folder names.
FOLDER_NAMES = ("Bryce_Dallas_Howard", "Jessica_Chastain")


def crowd_answer(n: int) -> PhotoAnswer:
    """`n` faces, alternately of each class, some sure, some not, some strangers: every kind of line."""
    faces = []
    for i in range(n):
        label = FOLDER_NAMES[i % 2]
        other = FOLDER_NAMES[(i + 1) % 2]
        confidence = 0.6 if i % 3 == 2 else 0.97
        faces.append(
            FaceAnswer(
                box=(10 * i, 10, 10 * i + 8, 18),
                label=label,
                confidence=confidence,
                sure=confidence >= 0.8,
                probabilities={label: confidence, other: 1 - confidence},
                known=i % 7 != 6,
            )
        )
    return PhotoAnswer("ok", faces)


class CrowdWorker:
    """Answers every photo with a crowd of `n` faces and a boxed JPEG, as the inference worker would."""

    def __init__(self, n: int) -> None:
        self.answer = crowd_answer(n)
        self.boxed = jpeg(scene(1))
        self.photos = 0  # how many photos it was given

    async def classify(self, data: bytes) -> Result:
        self.photos += 1
        return Result(self.answer, self.boxed)
