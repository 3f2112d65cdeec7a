#!/usr/bin/env python3
"""Turns the C++ snippets of docs/*.md into translation units to compile.

Every fenced block whose info string is exactly `cpp` is compiled; the build
(tests/CMakeLists.txt, target asyncio_docs_snippets) runs this script and
compiles what it writes, so that a snippet that no longer compiles fails CI
like any other code. docs/development.md describes the rules:

- One translation unit per page (docs_<page>.cpp). Each block goes into a
  namespace of its own, so blocks may reuse names; its #include lines move
  to the top of the file.
- `int main(` becomes `int snippet_main(` with a `return 0;` at its end (a
  function named main in a namespace is not the program's main, and has no
  implicit return). Nothing is linked or run: the snippets only compile.
- A block preceded by the line `<!-- snippet: fragment -->` is not compiled:
  the rare statement-level excerpt that cannot stand alone.

Usage: extract_doc_snippets.py OUTPUT_DIR PAGE.md...
"""
import re
import sys
from pathlib import Path

FRAGMENT_MARK = "<!-- snippet: fragment -->"
FENCE = re.compile(r"^```(\S*)\s*$")
MAIN = re.compile(r"\bint\s+main\s*\(")


def blocks(path: Path):
    """(first line number, lines) of each block to compile in `path`."""
    lines = path.read_text(encoding="utf-8").splitlines()
    previous = ""
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            if lines[i].strip():
                previous = lines[i].strip()
            i += 1
            continue
        info = match.group(1)
        start = i + 1
        end = start
        while end < len(lines) and lines[end].rstrip() != "```":
            end += 1
        if end == len(lines):
            raise SystemExit(f"{path}:{i + 1}: unterminated code block")
        if info == "cpp" and previous != FRAGMENT_MARK:
            yield start + 1, lines[start:end]
        previous = ""
        i = end + 1


def skip_literal(text: str, i: int) -> int:
    """The index after the comment or literal starting at text[i], else i."""
    if text.startswith("//", i):
        end = text.find("\n", i)
        return len(text) if end < 0 else end
    if text.startswith("/*", i):
        end = text.find("*/", i + 2)
        return len(text) if end < 0 else end + 2
    raw = re.match(r'R"([^(\s]*)\(', text[i:])
    if raw:
        end = text.find(")" + raw.group(1) + '"', i + raw.end())
        return len(text) if end < 0 else end + len(raw.group(1)) + 2
    if text[i] in "\"'":
        # A digit separator (1'000) is no character literal.
        if text[i] == "'" and i > 0 and text[i - 1].isalnum():
            return i + 1
        quote, j = text[i], i + 1
        while j < len(text) and text[j] != quote:
            j += 2 if text[j] == "\\" else 1
        return j + 1
    return i


def add_main_return(code: str) -> str:
    """Renames main and gives it the `return 0;` that main has implicitly."""
    match = MAIN.search(code)
    if not match:
        return code
    i = code.find("{", match.end())
    if i < 0:
        return code
    depth = 0
    while i < len(code):
        after = skip_literal(code, i)
        if after != i:
            i = after
            continue
        if code[i] == "{":
            depth += 1
        elif code[i] == "}":
            depth -= 1
            if depth == 0:
                code = code[:i] + "    return 0;\n" + code[i:]
                break
        i += 1
    return code[:match.start()] + "int snippet_main(" + code[match.end():]


def translate(page: Path) -> str:
    includes = []
    bodies = []
    for n, (line, lines) in enumerate(blocks(page)):
        body = []
        for text in lines:
            if text.lstrip().startswith("#include"):
                if text.strip() not in includes:
                    includes.append(text.strip())
                body.append("")  # keeps the #line numbering right
            else:
                body.append(text)
        code = add_main_return("\n".join(body) + "\n")
        bodies.append(f"namespace docs_snippet_{n} {{\n#line {line} \"docs/{page.name}\"\n"
                      f"{code}}}  // namespace docs_snippet_{n}\n")
    header = (f"// Generated from docs/{page.name} by scripts/extract_doc_snippets.py;"
              " do not edit.\n")
    return header + "\n".join(includes) + "\n\n" + "\n".join(bodies)


def main() -> int:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    for name in sys.argv[2:]:
        page = Path(name)
        target = out / f"docs_{page.stem}.cpp"
        text = translate(page)
        # Rewritten only when it changed, so that an edit elsewhere in the
        # docs does not recompile every page.
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            target.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
