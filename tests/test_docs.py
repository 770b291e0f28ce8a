"""The documentation stands on its own: a short README, every relative link and anchor in
README.md, docs/*.md and bench/README.md leads somewhere that exists, and nothing sends
the reader to notes that are not in the repository."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from conftest import REPO

README_MAX_LINES = 250
# Developer notes kept beside the clone, never shipped: the docs must not lean on them.
OUTSIDE_NOTES = ("DESIGN.md", "WAZUH.md", "MVAD.md", "STYLE.md", "LAYOUT.md")

FENCE = re.compile(r"^ {0,3}(```|~~~)")
LINK = re.compile(r"(?<!\\)!?\[(?:[^\]\\]|\\.)*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.M)
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
HTML_ANCHOR = re.compile(r"<a\s+(?:name|id)=\"([^\"]+)\"", re.I)


def doc_files() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), REPO / "bench" / "README.md"]


def prose(text: str) -> str:
    """The text outside fenced code blocks and inline code spans (where a link is a link)."""
    lines, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            lines.append("")
            continue
        lines.append("" if fenced else line)
    return re.sub(r"(`+)(?:(?!\1).)+?\1", "", "\n".join(lines))


def github_slug(heading: str) -> str:
    """GitHub's anchor for a heading: markup and punctuation dropped (except - and _),
    lower case, each space a hyphen."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)      # a link keeps its text
    text = re.sub(r"<[^>]+>", "", text)                            # inline HTML
    text = text.replace("`", "").replace("*", "")
    text = text.lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every anchor a file offers, numbered like GitHub's for repeated headings."""
    seen: dict[str, int] = {}
    out = set()
    fenced = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        if fenced:
            continue
        match = HEADING.match(line)
        if match:
            slug = github_slug(match.group(2))
            count = seen.get(slug, 0)
            seen[slug] = count + 1
            out.add(slug if count == 0 else f"{slug}-{count}")
        out.update(HTML_ANCHOR.findall(line))
    return out


def links(path: Path) -> list[str]:
    text = prose(path.read_text(encoding="utf-8"))
    return LINK.findall(text) + REFERENCE.findall(text)


def is_external(target: str) -> bool:
    return bool(re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I)) or target.startswith("//")


def broken_links(path: Path) -> list[str]:
    """One sentence per link of `path` that leads nowhere."""
    problems = []
    for target in links(path):
        if is_external(target):
            continue
        file_part, _, anchor = target.partition("#")
        dest = path if not file_part else (path.parent / file_part).resolve()
        where = f"{path.relative_to(REPO)}: link '{target}'"
        if not dest.exists():
            problems.append(f"{where} names {file_part}, which does not exist")
            continue
        if REPO.resolve() not in dest.resolve().parents and dest.resolve() != REPO.resolve():
            problems.append(f"{where} leads outside the repository")
            continue
        if anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            problems.append(f"{where}: {dest.relative_to(REPO.resolve())} has no heading with anchor #{anchor}")
    return problems


def test_the_readme_is_at_most_250_lines():
    lines = (REPO / "README.md").read_text(encoding="utf-8").count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move detail into docs/ (at most {README_MAX_LINES})"


@pytest.mark.parametrize("path", doc_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_and_anchor_leads_somewhere(path):
    assert path.exists()
    assert broken_links(path) == []


def test_the_readme_links_every_page_of_docs():
    linked = {(REPO / target.partition("#")[0]).resolve() for target in links(REPO / "README.md")
              if not is_external(target) and target.partition("#")[0]}
    missing = [p.name for p in sorted((REPO / "docs").glob("*.md")) if p.resolve() not in linked]
    assert missing == [], f"README.md's 'Where to read on' does not link {missing}"


@pytest.mark.parametrize("path", doc_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_no_page_sends_the_reader_to_notes_outside_the_repository(path):
    text = path.read_text(encoding="utf-8")
    named = [note for note in OUTSIDE_NOTES if note in text]
    assert named == [], f"{path.relative_to(REPO)} names {named}: say what the reader needs in the docs themselves"
    outside = [t for t in links(path) if "../shared" in t or t.startswith("/")]
    assert outside == [], f"{path.relative_to(REPO)} links outside the repository: {outside}"
    assert not re.search(r"/work/|/home/\w+/", text), f"{path.relative_to(REPO)} names a path of one machine"


def test_the_quick_start_needs_nothing_beside_the_clone():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "../shared" not in readme


def test_the_readme_gives_the_command_ci_runs():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "```sh\nbash .ci/run\n```" in readme
    assert "```sh\nbash examples/sandbox.sh /tmp/wazuh-anomaly-sandbox\n```" in readme
    assert (REPO / ".ci" / "run").is_file() and (REPO / "examples" / "sandbox.sh").is_file()


@pytest.mark.parametrize("heading, slug", [
    ("The Wazuh indexer: source and destination", "the-wazuh-indexer-source-and-destination"),
    ("Why the virtualenv is 5.6 GB", "why-the-virtualenv-is-56-gb"),
    ("A real OpenSearch for tests and CI: `scripts/opensearch.sh`", "a-real-opensearch-for-tests-and-ci-scriptsopensearchsh"),
    ("Operating it for months: models, suppression, feedback, calendar",
     "operating-it-for-months-models-suppression-feedback-calendar"),
    ("Real-time path", "real-time-path"),
    ("bench_ingest.py — alerts.json ingest rate (target: at least 5x the naive baseline)",
     "bench_ingestpy--alertsjson-ingest-rate-target-at-least-5x-the-naive-baseline"),
])
def test_anchors_follow_githubs_rules(heading, slug):
    assert github_slug(heading) == slug


def test_a_broken_link_or_anchor_is_found(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    (repo / "docs").mkdir(parents=True)
    (repo / "docs" / "a.md").write_text("# A page\n\n## Some part\n")
    page = repo / "README.md"
    page.write_text("# Top\n\n[ok](docs/a.md#some-part) [gone](docs/b.md) [bad](docs/a.md#nope) [self](#top)\n"
                    "[up](docs/../docs/a.md#a-page) `[in code](docs/none.md)`\n```\n[in a block](docs/none.md)\n```\n")
    monkeypatch.setattr(sys.modules[__name__], "REPO", repo)
    problems = broken_links(page)
    assert len(problems) == 2
    assert "docs/b.md, which does not exist" in problems[0]
    assert "no heading with anchor #nope" in problems[1]
