"""The build compiles the bot's translations: each `bot/locale/*/LC_MESSAGES/doppelbot.po` to the `.mo` the bot
reads, in `pip install` (editable or not) and in a wheel build, so no one has to remember a compile step.

Everything else about the package is in pyproject.toml.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class build_py_with_catalogs(build_py):
    """build_py, after compiling the catalogs beside their `.po` files (package data then carries the `.mo`)."""

    def run(self) -> None:
        from babel.messages.mofile import write_mo
        from babel.messages.pofile import read_po

        for po in sorted(Path(__file__).parent.glob("bot/locale/*/LC_MESSAGES/*.po")):
            with po.open("rb") as f:
                catalog = read_po(f)
            with po.with_suffix(".mo").open("wb") as f:
                write_mo(f, catalog)
        super().run()


setup(cmdclass={"build_py": build_py_with_catalogs})
