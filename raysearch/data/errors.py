"""Errors raised on bad input data. Every message names the file or manifest row it is about."""

from __future__ import annotations


class ImageError(ValueError):
    """An image or mask file that cannot be used; the message starts with the file's path."""


class DatasetError(ValueError):
    """A dataset folder with one or more problems.

    ``problems`` holds one line per problem, each naming the manifest row or the file, e.g.
    ``"manifest.csv row 4 (id=P003): right_x is not a number: 'abc'"``. The message is a header
    line followed by every problem on its own line, so a sweep stops up-front with the full list.
    """

    def __init__(self, problems: list[str], root: object = None) -> None:
        self.problems = list(problems)
        self.root = root
        where = f" in {root}" if root is not None else ""
        n = len(self.problems)
        header = f"{n} problem{'s' if n != 1 else ''}{where}:"
        super().__init__("\n".join([header, *(f"  {p}" for p in self.problems)]))
