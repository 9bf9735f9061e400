"""The repository stands on its own: every document it cites is a file a user has.

- every relative link `[text](target)` (images too) in a tracked markdown file (README.md,
  BENCHMARKS.md, docs/*.md) resolves to a file or folder of the repository;
- every mention of a `docs/<name>.md` in any tracked file names a file that exists, and a
  document of docs/ is never cited by its bare name (`<name>.md`, which a reader cannot find
  from a config or a docstring) outside a markdown link;
- no tracked file outside `.ci/` points at the shared folder outside the repository that the
  design notes once lived in, or cites a document by the name those notes had.

Documents outside the repository are invisible to users, so a pointer to one is a dead end.
"""

from __future__ import annotations

import re
import subprocess
from functools import cache
from pathlib import Path

import pytest

from tests.conftest import REPO

# [text](target) or ![alt](target), with an optional "title"; target without spaces
LINK = re.compile(r"!?\[[^\]]*\]\((?P<target>[^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCED = re.compile(r"^```.*?^```", re.DOTALL | re.MULTILINE)
INLINE_CODE = re.compile(r"`[^`\n]*`")
EXTERNAL = re.compile(r"^(?:[a-z][a-z0-9+.-]*:|#)", re.IGNORECASE)  # http:, mailto:, #anchor
DOCS_MENTION = re.compile(r"(?<![\w/.-])docs/[\w/.-]*?\.md\b")
BARE_NAME = re.compile(r"(?<![\w/.-])[\w-]+\.md\b")
LINK_TARGET = re.compile(r"\]\([^)\s]*\)")  # the "(target)" of a markdown link
# Built from pieces, so that this file does not contain what it forbids.
OUTSIDE = ("../" + "shared", "shared" + "/spec")
NAMED_SPEC = re.compile(r"\bthe[\s#]+" + "spec" + r"\b", re.IGNORECASE)  # across comment lines
EXEMPT = (".ci/",)  # the CI machinery, not part of what a user reads


@cache
def tracked_files() -> tuple[str, ...]:
    try:
        listed = subprocess.run(
            ["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: the tracked files are unknown")
    return tuple(path for path in listed.stdout.splitlines() if (REPO / path).is_file())


def text_of(path: str) -> str | None:
    """The file's text, or None for a binary file (images)."""
    data = (REPO / path).read_bytes()
    if b"\0" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def markdown_files() -> list[str]:
    return [path for path in tracked_files() if path.endswith(".md")]


def relative_links(markdown: str) -> list[str]:
    """The relative link targets of a markdown text, outside code, without #anchors."""
    prose = INLINE_CODE.sub("", FENCED.sub("", markdown))
    targets = (match["target"] for match in LINK.finditer(prose))
    return [target.split("#")[0] for target in targets if not EXTERNAL.match(target)]


def test_the_link_check_finds_relative_links_outside_code() -> None:
    text = (
        '[a](notes/a.md) ![b](docs/images/b.png "title") [c](https://x.org/c.md) [d](#d)\n'
        "`[e](e.md)`\n```\n[f](f.md)\n```\n[g](../g.md#part)\n"
    )
    assert relative_links(text) == ["notes/a.md", "docs/images/b.png", "../g.md"]


@pytest.mark.parametrize("markdown", markdown_files())
def test_relative_markdown_links_resolve(markdown: str) -> None:
    text = text_of(markdown)
    assert text is not None
    folder = (REPO / markdown).parent
    missing = [target for target in relative_links(text) if not (folder / target).exists()]
    assert not missing, f"{markdown} links to missing files: {missing}"


def test_every_mentioned_docs_file_exists() -> None:
    missing = {}
    for path in tracked_files():
        text = text_of(path)
        if text is None:
            continue
        absent = sorted({name for name in DOCS_MENTION.findall(text) if not (REPO / name).exists()})
        if absent:
            missing[path] = absent
    assert not missing, f"files mention docs that are not in the repository: {missing}"


def test_documents_of_docs_are_cited_with_their_folder() -> None:
    names = {Path(path).name for path in tracked_files() if path.startswith("docs/")}
    names = {name for name in names if name.endswith(".md")}
    bare = {}
    for path in tracked_files():
        text = text_of(path)
        if text is None:
            continue
        if path.endswith(".md"):
            text = LINK_TARGET.sub("]", text)
        found = sorted({name for name in BARE_NAME.findall(text) if name in names})
        if found:
            bare[path] = found
    assert not bare, f"write docs/<name>.md, not the bare name: {bare}"


def test_nothing_points_at_documents_outside_the_repository() -> None:
    found = {}
    for path in tracked_files():
        text = None if path.startswith(EXEMPT) else text_of(path)
        if text is None:
            continue
        hits = [needle for needle in OUTSIDE if needle in text]
        hits += [" ".join(match.split()) for match in NAMED_SPEC.findall(text)]
        if hits:
            found[path] = hits
    assert not found, f"files cite documents users do not have: {found}"


def test_the_checks_see_the_repository() -> None:
    """Guard against a vacuous pass: the files the checks read are there."""
    assert "README.md" in markdown_files()
    assert {"docs/optimizers.md", "docs/problems.md"} <= set(markdown_files())
