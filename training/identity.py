"""Identity cleaning: keep, in each class, only faces of the one person its photos are mostly of.

An image search for a person returns more than that person: co-stars, red-carpet photos where
someone else is the biggest face, "look-alike" articles that show the other class's person. Each
class's faces are grouped by person with average-linkage clustering of their encoder descriptors;
the largest group is the person asked for. Faces outside it are set aside as "another person", and
faces nearer the other class's person than their own (inside the group or not) as looking like that
class: the look-alike under the wrong name. "Near" is what the trained model's gallery of known faces
will call near (`model/strangers.py`, fitted here on the groups): a face outside the group that the
gallery would still know as its class's person stays (on the pins pairs: sunglasses, a mask, a
profile), and so does a face nearer the other class that the other class's gallery would not know.

Why average linkage at 0.65 (measured on the pins pairs with 20% of each folder replaced, half by
the other person of the pair, half by a third person; `bench/noise.py`): a face joins a group when
its mean distance to the group's faces is under 0.65. One person's faces lie 0.50 to 0.54 apart
(median), different people 0.68 and more even for look-alike pairs, and dlib's own same-person line
for a single pair of faces is 0.6. At 0.6, photos of one person years apart split off (6 to 9% of
clean faces set aside); at 0.7 the look-alike joins. dlib's `chinese_whispers_clustering` set aside
4 to 5% of clean faces at 0.5, and at 0.55 it chained the look-alike in (20 to 40% of the mislabelled
faces kept): its groups grow through single close pairs, which look-alikes always have.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.cluster import AgglomerativeClustering

from model.strangers import Gallery, leave_one_out

__all__ = [
    "ANOTHER_PERSON",
    "IdentityOptions",
    "NoDominantPerson",
    "SetAside",
    "is_identity_reason",
    "looks_like",
    "set_aside_faces",
]

ANOTHER_PERSON = "another person"


def looks_like(name: str) -> str:
    """The reason given for a face nearer another class's person than its own class's."""
    return f"looks like {name}"


def is_identity_reason(reason: str) -> bool:
    """Whether a face was set aside for who it shows (not, say, as a near-duplicate)."""
    return reason == ANOTHER_PERSON or reason.startswith(looks_like(""))


class NoDominantPerson(ValueError):
    """A class's photos show no one person clearly more than anyone else: its search needs better queries."""


@dataclass(frozen=True)
class IdentityOptions:
    """How faces are grouped by person, and how much bigger the person asked for must be."""

    link_distance: float = 0.65  # average linkage: a face joins a group under this mean distance
    k: int = 5  # nearness to a person: the mean distance to its k nearest faces, as the gallery measures
    # The largest group must hold at least this many times the faces of the next: with two groups of
    # similar size nothing says which one the search was for.
    dominance: float = 2.0


@dataclass(frozen=True)
class SetAside:
    """One face that is not the person its class was asked for."""

    index: int  # into the descriptors given
    reason: str  # ANOTHER_PERSON or looks_like(class)
    distance: float  # from its class's person: mean distance to that person's k nearest faces


def _groups(descriptors: np.ndarray, options: IdentityOptions) -> np.ndarray:
    """A group number per face, one group per person."""
    if len(descriptors) < 2:
        return np.zeros(len(descriptors), dtype=int)
    clustering = AgglomerativeClustering(
        n_clusters=None, distance_threshold=options.link_distance, linkage="average", metric="euclidean"
    )
    return clustering.fit(descriptors).labels_


def _person(name: str, descriptors: np.ndarray, options: IdentityOptions) -> np.ndarray:
    """Which of the class's faces are the person asked for: its largest group, when it clearly dominates."""
    groups = _groups(descriptors, options)
    sizes = np.bincount(groups)
    order = np.argsort(sizes)[::-1]
    largest = int(sizes[order[0]])
    runner_up = int(sizes[order[1]]) if len(order) > 1 else 0
    if largest < options.dominance * runner_up:
        raise NoDominantPerson(
            f"{name}: no one person dominates its {len(descriptors)} faces (the two largest groups of one "
            f"person hold {largest} and {runner_up}). Its photos show several people about equally: give "
            f"{name} better search queries (or a folder of that person's photos), or use --keep-all-faces."
        )
    return groups == order[0]


def set_aside_faces(
    descriptors: np.ndarray,
    labels: Sequence[str],
    options: IdentityOptions | None = None,
    keep: np.ndarray | None = None,
) -> list[SetAside]:
    """The faces to leave out of training, each with its reason, in index order.

    `keep` marks faces a person has vouched for (`data/keep.txt`): never set aside, and counted as
    the person of their class.
    """
    options = options or IdentityOptions()
    descriptors = np.asarray(descriptors, dtype=np.float32)
    labels = np.asarray(labels)
    keep = np.zeros(len(labels), dtype=bool) if keep is None else np.asarray(keep, dtype=bool)
    classes = list(dict.fromkeys(labels.tolist()))
    person = np.zeros(len(labels), dtype=bool)
    for c in classes:
        rows = labels == c
        person[rows] = _person(c, descriptors[rows], options) | keep[rows]
    # The people asked for, as the trained model's gallery will know them: nearness is measured the
    # same way, and the same line says how near is near enough to be one of them.
    people = Gallery.fit(descriptors[person], labels[person], classes, k=options.k)
    own = people.distances(descriptors, labels)
    own[person] = leave_one_out(descriptors[person], labels[person], options.k)  # not its own neighbour
    nearest_other, other_name = np.full(len(labels), np.inf), np.full(len(labels), "", dtype=object)
    for other in classes:
        d = people.distances(descriptors, [other] * len(labels))
        closer = (labels != other) & (d < nearest_other)
        nearest_other[closer], other_name[closer] = d[closer], other

    # Who a face is, in the trained model's own terms: the person whose gallery would know it. A face
    # nearer the other class's person is that person only if that gallery would know it (else it is a
    # third person who happens to lie on that side); a face outside its person's group is another person
    # only if its own class's gallery would not know it either (sunglasses, a mask, a face in profile).
    found = []
    for i in np.flatnonzero(~keep):
        if nearest_other[i] < own[i] and nearest_other[i] <= people.threshold:
            found.append(SetAside(int(i), looks_like(other_name[i]), float(own[i])))
        elif not person[i] and not own[i] <= people.threshold:
            found.append(SetAside(int(i), ANOTHER_PERSON, float(own[i])))
    return found
