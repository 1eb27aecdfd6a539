"""The documentation pages as the tests read them: README.md and every page under docs/.

Examples, recipes and outputs shown on a page are run or compared by the tests through these helpers, so
a page cannot drift from the code: a recipe is found by its marker (``<!-- recipe: NAME -->`` before a code
block) on whichever page holds it, a section by its heading at any level.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]


def page(name: str) -> str:
    """A page's text: ``"README.md"`` or a path under docs/ (``"guide/search.md"``)."""
    path = ROOT / name if name == "README.md" else DOCS / name
    return path.read_text(encoding="utf-8")


def _headings(text: str):
    """(level, title, offset of the line) of every heading outside code blocks."""
    fence, offset = False, 0
    for line in text.split("\n"):
        if line.startswith("```"):
            fence = not fence
        elif not fence:
            m = re.match(r"(#+) (.*)$", line)
            if m:
                yield len(m.group(1)), m.group(2).strip(), offset
        offset += len(line) + 1


def section(title: str) -> str:
    """The text under the heading ``title`` (any level, first page that has it) up to the next heading of
    the same or a higher level."""
    for path in pages():
        text = path.read_text(encoding="utf-8")
        heads = list(_headings(text))
        for i, (level, name, start) in enumerate(heads):
            if name == title:
                end = next((o for lv, _, o in heads[i + 1 :] if lv <= level), len(text))
                return text[start:end]
    raise KeyError(f"no page has a heading {title!r}")


def recipe(name: str) -> str:
    """The code block after ``<!-- recipe: NAME -->`` on whichever page holds it (exactly one may)."""
    found = []
    for path in pages():
        text = path.read_text(encoding="utf-8")
        at = text.find(f"<!-- recipe: {name} -->")
        if at != -1:
            found.append(re.search(r"```[a-z]*\n(.*?)```", text[at:], re.S).group(1))
    if len(found) != 1:
        raise KeyError(f"recipe {name!r} is on {len(found)} pages (exactly one wanted)")
    return found[0]


def code_block(text: str, lang: str) -> str:
    """The first ```lang code block of ``text`` ("" for a block with no language)."""
    start = text.index(f"```{lang}\n") + len(lang) + 4
    return text[start : text.index("\n```", start)]


def settings_table() -> str:
    """The table of every search setting, as docs/reference/spaces.md shows it (from SETTINGS itself)."""
    from rfsweep.space.settings import SETTINGS

    rows = ["| setting (TOML key) | flag | default | what it is |", "|---|---|---|---|"]
    for s in SETTINGS:
        flag = {"toml": "TOML only", "bool": f"`{s.flag}/--no-{s.flag[2:]}`"}.get(s.kind, f"`{s.flag}`")
        default = s.default_text()
        shown = "-" if default is None else f"`{default}`"
        text = s.help + (f" One of {', '.join(s.choices)}." if s.choices else "")
        rows.append(f"| `{s.name}` | {flag} | {shown} | {text.replace('|', '/')} |")
    return "\n".join(rows)
