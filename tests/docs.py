"""The documentation site's pages (docs/, built by `make docs`), for tests that hold the
text to what the code does: tables that list every setting, snippets that must run."""

import re

from tests.helpers import REPO

DOCS = REPO / "docs"


def page(name: str) -> str:
    """The Markdown of the page `name`, a path under docs/ (e.g. "calling/java.md")."""
    return (DOCS / name).read_text()


def section(name: str, heading: str) -> str:
    """The text of page `name` after the line `heading` (a heading, or any whole line)."""
    text = page(name)
    lines = text.split("\n")
    if heading not in lines:
        raise AssertionError(f"docs/{name} has no line {heading!r}")
    return "\n".join(lines[lines.index(heading) + 1 :])


def snippet(name: str, heading: str, language: str) -> str:
    """The first ```language block after the line `heading` of page `name`."""
    found = re.search(rf"```{language}\n(.*?)```", section(name, heading), re.S)
    if found is None:
        raise AssertionError(f"docs/{name} has no {language} block after {heading!r}")
    return found.group(1)
