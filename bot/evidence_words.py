"""The line under a Why? picture, in the presser's language: which person's training faces the face is nearest,
by how much, or that it is far from all of them (from the distances `model.evidence` measured)."""

from __future__ import annotations

from model.answers import FaceAnswer, display_name
from model.evidence import FaceEvidence

from .i18n import Texts
from .replies import quality_reason

__all__ = ["evidence_line"]


def evidence_line(evidence: FaceEvidence, face: FaceAnswer | None, tr: Texts) -> str:
    """The evidence in one line; a face too small or blurred to name says so first."""
    line = _sentence(evidence, tr)
    if face is not None and face.quality != "ok":
        return f"{quality_reason(face, tr)} {line}"
    return line


def _sentence(evidence: FaceEvidence, tr: Texts) -> str:
    distances, label = evidence.distances, evidence.label
    if evidence.threshold is None and not distances:  # the book's learner, or an export from before galleries
        return tr.gettext("This model keeps no training faces to compare with.")
    name = display_name(label)  # names are never translated
    if label not in distances:
        return tr.gettext("There are no training faces of {name} to compare with.", name=name)
    own = tr.decimal(distances[label])
    others = sorted((d, c) for c, d in distances.items() if c != label)
    if evidence.known:
        if not others:
            return tr.gettext("Close to {name}'s photos ({distance}).", name=name, distance=own)
        other_d, other = others[0]
        values = {"name": name, "distance": own, "other": display_name(other), "other_distance": tr.decimal(other_d)}
        if other_d < distances[label]:  # the head and the distances disagree: say so rather than hide it
            return tr.gettext(
                "Named {name}, though nearer to {other}'s photos ({other_distance}) than to {name}'s ({distance}).",
                **values,
            )
        return tr.gettext("Closer to {name}'s photos ({distance}) than to {other}'s ({other_distance}).", **values)
    ranked = sorted((d, c) for c, d in distances.items())
    line = tr.decimal(evidence.threshold) if evidence.threshold is not None else "?"
    if len(ranked) == 1:
        return tr.gettext(
            "Far: {distance} from {name}'s photos; beyond {line} I call a face someone else.",
            distance=tr.decimal(ranked[0][0]),
            name=display_name(ranked[0][1]),
            line=line,
        )
    if len(ranked) == 2:
        (near_d, near), (far_d, far) = ranked
        return tr.gettext(
            "Far from both: {distance} from {name}'s photos and {other_distance} from {other}'s; beyond {line} I "
            "call a face someone else.",
            distance=tr.decimal(near_d),
            name=display_name(near),
            other_distance=tr.decimal(far_d),
            other=display_name(far),
            line=line,
        )
    listed = tr.all_of(
        [tr.gettext("{name}: {distance}", name=display_name(c), distance=tr.decimal(d)) for d, c in ranked]
    )
    return tr.gettext(
        "Far from all of them ({distances}); beyond {line} I call a face someone else.", distances=listed, line=line
    )
