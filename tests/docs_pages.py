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


# ---------------------------------------------------------------- shell examples
# Every code block of a page with a line starting `$ rfsweep ` or `rfsweep ` is an example. In a block
# of `$ ` lines each command is followed by the output it prints (stdout and stderr as a terminal shows
# them, timings masked) and the tests compare it; a block of bare `rfsweep ...` lines (comments after
# `#`) runs and must succeed. Other lines of a bare block (`pip install`, `dask scheduler`) are setup a
# reader does once, not run. A marker before a block changes how it runs:
#   <!-- example: slow -->           runs with --slow only (CI)
#   <!-- example: skip REASON -->    never runs; the reason says what it needs (a GPU, a cluster, ...)
#   <!-- file: NAME -->              the next code block is written to NAME for the page's examples
# A page's examples run in order in one temporary directory (holding a link to the checkout's data/).

EXAMPLE_MARKER = re.compile(r"<!-- (example|file): ?(.*?) -->\s*\n$")
# what changes from run to run: seconds and rates, masked before outputs are compared
TIMINGS = (
    (re.compile(r"\b\d+(\.\d+)?(e[+-]?\d+)? s\b"), "<t> s"),
    (re.compile(r"\b\d[\d,]*(\.\d+)?(e[+-]?\d+)? ([a-z]+)/s\b"), r"<r> \3/s"),
    (re.compile(r'"(seconds|rate)": [-\d.e+]+'), r'"\1": <t>'),
)


def mask(text: str) -> str:
    for pattern, repl in TIMINGS:
        text = pattern.sub(repl, text)
    return text


class Block:
    """One code block of a page: its span in the text, its lines, and the marker before it."""

    def __init__(self, start: int, end: int, lines: list[str], marker: tuple[str, str] | None):
        self.start, self.end, self.lines, self.marker = start, end, lines, marker

    @property
    def shown(self) -> bool:
        """A block of `$ ` commands, each with its output."""
        return any(line.startswith("$ rfsweep ") for line in self.lines)

    @property
    def is_example(self) -> bool:
        return self.shown or any(line.startswith("rfsweep ") for line in self.lines)

    def commands(self) -> list[tuple[str, list[str]]]:
        """(command, shown output lines); bare blocks show no output."""
        out: list[tuple[str, list[str]]] = []
        for line in self.lines:
            if line.startswith("$ "):
                out.append((line[2:], []))
            elif self.shown and out:
                out[-1][1].append(line)
            elif not self.shown and line.startswith("rfsweep "):
                out.append((line, []))
        return out


def blocks(name: str) -> list[Block]:
    text = page(name)
    out = []
    for m in re.finditer(r"^```([a-z]*)\n(.*?)^```", text, re.S | re.M):
        before = EXAMPLE_MARKER.search(text[: m.start()][-200:])
        marker = (before.group(1), before.group(2).strip()) if before else None
        body = m.group(2)
        out.append(Block(m.start(2), m.start(2) + len(body), body.rstrip("\n").split("\n"), marker))
    return out


def example_pages() -> list[str]:
    names = []
    for path in pages():
        name = "README.md" if path.name == "README.md" and path.parent == ROOT else path.relative_to(DOCS).as_posix()
        if any(b.is_example for b in blocks(name)):
            names.append(name)
    return names


def rewrite_outputs(name: str, outputs: dict[int, list[list[str]]]) -> None:
    """Put the outputs of a run in place of what a page shows: ``outputs[i]`` is the output lines of
    each command of the page's i-th block (RFSWEEP_DOCS_UPDATE=1)."""
    text = page(name)
    for i, b in sorted(((i, b) for i, b in enumerate(blocks(name)) if i in outputs), key=lambda x: -x[1].start):
        lines = []
        for (command, _), got in zip(b.commands(), outputs[i]):
            lines += [f"$ {command}", *got]
        text = text[: b.start] + "\n".join(lines) + "\n" + text[b.end :]
    path = ROOT / name if name == "README.md" else DOCS / name
    path.write_text(text, encoding="utf-8")
