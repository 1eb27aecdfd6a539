"""The documentation: a landing page of at most 300 lines, every page in the site's navigation, the
settings reference generated from the settings themselves, and the README's short examples the same as
the guide pages the tests run them from (tests/docs_pages.py)."""

from __future__ import annotations

import re

import docs_pages
from docs_pages import DOCS, ROOT, code_block, page, section


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
    assert search in section("rfsweep search")
    anchors = code_block(readme[readme.index("### Anchor design") :], "")
    assert code_block(section("rfsweep anchors"), "").startswith(anchors)


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


def test_anchors_guide_output_is_current():
    import shlex

    from click.testing import CliRunner

    from rfsweep.cli.main import main

    shown = code_block(section("rfsweep anchors"), "").splitlines()
    assert shown[0].startswith("$ rfsweep anchors ")
    res = CliRunner().invoke(main, shlex.split(shown[0][2:])[1:])
    assert res.exit_code == 0, res.output
    assert shown[1:] == res.stdout.rstrip("\n").splitlines()


def shown_commands(name: str) -> list[tuple[str, list[str]]]:
    """(command, stdout lines) of every code block of a page that starts with `$ rfsweep `."""
    text = page(name)
    out = []
    for block in re.findall(r"```\n(.*?)```", text, re.S):
        lines = block.rstrip("\n").splitlines()
        if lines and lines[0].startswith("$ rfsweep "):
            out.append((lines[0][2:], lines[1:]))
    return out


def test_anchor_search_guide_outputs_are_current(monkeypatch):
    import shlex

    from click.testing import CliRunner

    from rfsweep.cli.main import main

    monkeypatch.chdir(ROOT)
    blocks = shown_commands("guide/anchor-search.md")
    assert len(blocks) == 2
    for command, shown in blocks:
        res = CliRunner().invoke(main, shlex.split(command)[1:])
        assert res.exit_code == 0, res.output
        assert res.stdout.rstrip("\n").splitlines() == shown, command
