"""The documentation: a landing page of at most 300 lines, every page in the site's navigation, the
settings reference generated from the settings themselves, and the README's short examples the same as
the guide pages the tests run them from (tests/docs_pages.py)."""

from __future__ import annotations

import os
import re
import shlex

import pytest

import docs_pages
from docs_pages import DOCS, ROOT, code_block, mask, page, section


def test_readme_is_a_landing_page():
    lines = page("README.md").splitlines()
    assert len(lines) <= 300, len(lines)
    assert "rfsweep search --target-rf 224" in lines[10]  # the main job, second thing a reader sees


def test_every_page_is_in_the_site_navigation_and_every_link_resolves():
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    listed = set(re.findall(r":\s*([\w/.-]+\.md)\s*$", nav, re.M))
    on_disk = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")}
    assert listed == on_disk
    for link in re.findall(r"\]\(((?:docs/)?[\w/.-]+\.md)(?:#[\w-]+)?\)", page("README.md")):
        assert (ROOT / link).is_file(), link


def test_settings_reference_is_the_settings():
    assert docs_pages.settings_table() in page("reference/spaces.md")


def test_readme_nas_example_is_the_guides_setup_recipe():
    shown = page("README.md")
    at = shown.index("### Candidates for a NAS pipeline")
    assert code_block(shown[at:], "") + "\n" == docs_pages.recipe("setup")


def test_readme_outputs_are_the_guides():
    """The README's search summary and anchors table are lines the guide pages show (and test)."""
    readme = page("README.md")
    search = code_block(readme[readme.index("### A backbone") :], "")
    assert mask(search) in mask(section("rfsweep search"))
    anchors = code_block(readme[readme.index("### Anchor design") :], "")
    assert anchors.endswith("\n...")  # the first lines of the guide's output
    assert code_block(section("rfsweep anchors"), "").startswith(anchors.removesuffix("..."))


def test_every_layer_has_a_row_in_the_architecture_page():
    text = page("architecture.md")
    for layer in (
        "cli",
        "api",
        "distributed",
        "nas",
        "anchors",
        "output",
        "engine",
        "space",
        "network",
        "kernels",
        "core",
    ):
        assert f"`rfsweep.{layer}`" in text, layer


COMPILE_NOTE = re.compile(r"^compiling ")  # first run after an install only: not part of what a page shows


def run_example(command: str) -> tuple[int, list[str]]:
    """Run one `rfsweep ...` line in this process (stdout and stderr as a terminal shows them; `> FILE`
    sends stdout to a file): its exit code and output lines, compile notes left out."""
    from click.testing import CliRunner

    from rfsweep.cli.main import main

    args = shlex.split(command, comments=True)
    assert args[0] == "rfsweep", command
    target = None
    if ">" in args:
        at = args.index(">")
        args, target = args[:at], args[at + 1]
    res = CliRunner().invoke(main, args[1:], terminal_width=120)
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        raise res.exception
    if target is not None:
        with open(target, "w", encoding="utf-8") as f:
            f.write(res.stdout)
        text = res.stderr
    else:
        text = res.output
    lines = [line for line in text.rstrip("\n").split("\n") if not COMPILE_NOTE.match(line)]
    lines = [] if lines == [""] else lines
    return res.exit_code, lines


@pytest.mark.parametrize("name", docs_pages.example_pages())
def test_page_examples_run_and_show_their_output(name, tmp_path, monkeypatch, request):
    """Every shell example of a page runs, and a `$ rfsweep ...` example prints what the page shows (timings
    masked). RFSWEEP_DOCS_UPDATE=1 writes the outputs of this run into the pages instead of comparing."""
    update = os.environ.get("RFSWEEP_DOCS_UPDATE") == "1"
    slow = update or request.config.getoption("--slow")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").symlink_to(ROOT / "data")
    outputs: dict[int, list[list[str]]] = {}
    ran = 0
    for i, block in enumerate(docs_pages.blocks(name)):
        kind, arg = block.marker or ("", "")
        if kind == "file":
            (tmp_path / arg).write_text("\n".join(block.lines) + "\n", encoding="utf-8")
            continue
        if not block.is_example or kind == "example" and (arg.startswith("skip") or arg == "slow" and not slow):
            continue
        outputs[i] = []
        for command, shown in block.commands():
            code, got = run_example(command)
            ran += 1
            error_shown = bool(shown) and shown[-1].startswith("error:")
            assert code == (2 if error_shown else 0), (command, got)
            if shown and shown[-1] == "...":  # the page shows the first lines only
                got = got[: len(shown) - 1] + ["..."]
            outputs[i].append(got)
            if block.shown and not update:
                assert [mask(x) for x in got] == [mask(x) for x in shown], command
    if update:
        docs_pages.rewrite_outputs(name, {i: o for i, o in outputs.items() if docs_pages.blocks(name)[i].shown})
    assert ran or all(b.marker for b in docs_pages.blocks(name) if b.is_example), name
