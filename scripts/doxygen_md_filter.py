#!/usr/bin/env python3
"""Doxygen's input filter for the Markdown guide (docs/Doxyfile,
FILTER_PATTERNS): makes the links between sections that GitHub resolves
resolve in doxygen 1.9.4 too, line for line so that warnings keep their
line numbers.

GitHub gives every heading an anchor made from its text ("## Debug mode"
is #debug-mode); doxygen 1.9.4 does not, and links to other pages'
sections it copies as raw hrefs to the .md file. So each heading below the
title gets an explicit doxygen label, `{#<page>_<slug>}` with the slug
GitHub would make, and every link to a section, `(#slug)` or
`(other.md#slug)`, becomes a link to that label: doxygen then checks it,
and a link to a heading that does not exist is a warning, as it should be.
A Python block followed by its C++ equivalent (one blank line between
them, blank lines around) is wrapped in <div class="pycpp">, which
docs/site.css shows as two columns, Python beside C++. A page's title
loses its code markers: doxygen 1.9.4 shows them as a literal <tt> in the
navigation tree.
"""
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def prefix(path):
    rel = os.path.relpath(os.path.abspath(path), ROOT)
    if rel.startswith("docs" + os.sep):
        rel = rel[len("docs") + 1:]
    rel = rel[:-3] if rel.endswith(".md") else rel
    return re.sub(r"[^A-Za-z0-9]", "_", rel)


def slug(text):
    """GitHub's heading anchor: lower case, punctuation dropped, spaces to
    hyphens (links and code markers count as their text)."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = text.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def label(page, fragment):
    return page + "_" + re.sub(r"[^A-Za-z0-9_-]", "_", fragment)


def main():
    path = sys.argv[1]
    page = prefix(path)
    here = os.path.dirname(os.path.abspath(path))
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")

    def link(m):
        target = m.group(1)
        if re.match(r"^[a-z]+:", target):
            return m.group(0)
        if target.startswith("#"):
            return "](#" + label(page, target[1:]) + ")"
        file, sep, fragment = target.partition("#")
        if sep and file.endswith(".md"):
            return "](#" + label(prefix(os.path.join(here, file)), fragment) + ")"
        return m.group(0)

    seen = {}
    fence = None
    out = []
    for line in lines:
        stripped = line.lstrip()
        if fence:
            if stripped.startswith(fence):
                fence = None
            out.append(line)
            continue
        m = re.match(r"^(`{3,}|~{3,})", stripped)
        if m:
            fence = m.group(1)
            out.append(line)
            continue
        line = re.sub(r"\]\(([^)\s]*)\)", link, line)
        h = re.match(r"^(#{1,6})\s+(.*?)\s*#*\s*$", line)
        if h and "{#" not in line:
            s = slug(h.group(2))
            n = seen.get(s, 0)
            seen[s] = n + 1
            if n:
                s = "%s-%d" % (s, n)
            if len(h.group(1)) > 1:
                line = "%s {#%s}" % (line.rstrip(), label(page, s))
            else:
                line = line.replace("`", "")
        out.append(line)
    side_by_side(out)
    sys.stdout.write("\n".join(out))


def side_by_side(lines):
    """Wraps each ```python block directly followed by a ```cpp block in
    <div class="pycpp">, in the blank lines around them."""
    fences = []  # (first line, last line, info string)
    i = 0
    while i < len(lines):
        m = re.match(r"^(`{3,}|~{3,})\s*(\S*)", lines[i])
        if m:
            j = i + 1
            while j < len(lines) and not lines[j].startswith(m.group(1)):
                j += 1
            fences.append((i, j, m.group(2)))
            i = j
        i += 1
    blank = lambda n: 0 <= n < len(lines) and not lines[n].strip()
    # Doxygen closes a <div> at a paragraph break, so the blank line
    # between the two blocks goes, and </div> follows the C++ block
    # directly: its lines shift up by one, every other line keeps its
    # number.
    for (a0, a1, a), (b0, b1, b) in reversed(list(zip(fences, fences[1:]))):
        if (a == "python" and b == "cpp" and b0 == a1 + 2 and blank(a1 + 1)
                and blank(a0 - 1) and blank(b1 + 1)):
            lines[a0 - 1] = '<div class="pycpp">'
            del lines[a1 + 1]
            lines.insert(b1, "</div>")


if __name__ == "__main__":
    main()
