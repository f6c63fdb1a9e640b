"""`python -m training`: gather, clean, train, evaluate, export; `python -m training review`: review feedback."""

import sys


def main() -> int:
    """`review` as the first argument reviews the feedback store; anything else trains, as it always has."""
    # Imported here, not above: reviewing needs neither torch nor fastai, which training.cli loads.
    if sys.argv[1:2] == ["review"]:
        from .review import main as review

        return review(sys.argv[2:])
    from .cli import main as train

    return train()


# Guarded: processes started by `spawn` import this module under another name.
if __name__ == "__main__":
    raise SystemExit(main())
