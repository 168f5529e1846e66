"""The documentation says what the code cites: every "DESIGN invariant N" exists in
docs/design.md, every link between the docs leads somewhere, and the README stays the
ten-minute read that opens with the two commands."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
CODE_DIRS = ("app", "tasks", "gpu_worker", "deploy", "bench", "tests")
# "invariant 3", "invariants 6 and 8", "DESIGN invariants 1 and 3"
CITATION = re.compile(r"\binvariants? (\d+(?:(?:, | and )\d+)*)")
LINK = re.compile(r"\]\(([^)\s]+)\)")


def markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


def anchors(path: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    found = set()
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            found.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return found


def test_every_cited_invariant_is_in_the_design():
    design = (DOCS / "design.md").read_text()
    defined = {int(n) for n in re.findall(r"^(\d+)\. \*\*", design, flags=re.MULTILINE)}
    assert defined == set(range(1, 14)), sorted(defined)
    for folder in CODE_DIRS:
        for path in (ROOT / folder).rglob("*.py"):
            for match in CITATION.finditer(path.read_text()):
                for number in re.findall(r"\d+", match.group(1)):
                    assert int(number) in defined, f"{path} cites invariant {number}"


def test_links_between_the_docs_lead_somewhere():
    for path in markdown_files():
        for target in LINK.findall(path.read_text()):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            file_part, _, anchor = target.partition("#")
            linked = (path.parent / file_part).resolve() if file_part else path
            assert linked.exists(), f"{path.name} links to {target}, which does not exist"
            if anchor and linked.suffix == ".md":
                assert anchor in anchors(linked), f"{path.name} links to {target}: no such heading"


def test_the_readme_opens_with_the_two_commands_and_stays_short():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert lines[0].startswith("# ")
    block = lines[lines.index("```") + 1 :]
    commands = [line.split("#")[0].strip() for line in block[: block.index("```")]]
    assert commands == ["make run", "make test"]
    # A newcomer reads it in ten minutes; runbooks, tables of flags and history go in docs/.
    assert len(lines) <= 200, len(lines)


def test_every_doc_is_in_the_index():
    index = (DOCS / "README.md").read_text()
    for path in DOCS.glob("*.md"):
        if path.name != "README.md":
            assert f"]({path.name})" in index, f"docs/README.md does not list {path.name}"
