#!/usr/bin/env python3
"""The manual pages agree with the programs' --help.

  man_help.py kronopd KRONOPD_BIN kronopd.8
      Every long flag `kronopd --help` prints is an entry (.TP tag) of OPTIONS, and every
      flag of OPTIONS' entries and of SYNOPSIS is in --help.
  man_help.py kronopctl KRONOPCTL_BIN kronopctl.1
      Every global flag of `kronopctl --help` is an entry of GLOBAL OPTIONS; every
      subcommand it lists (and `presence`'s own) has its .SS section under SUBCOMMANDS, a
      SYNOPSIS line and an example in EXAMPLES; the flags of `kronopctl SUB --help` are in
      the subcommand's SYNOPSIS line or section, and no flag there is unknown to it; the
      page has EXIT STATUS.

Prints each disagreement and exits 1 if there is one.
"""
import re
import subprocess
import sys

FLAG = re.compile(r"--[a-z0-9][a-z0-9-]*")


def help_text(argv):
    return subprocess.run(argv + ["--help"], check=True, capture_output=True, text=True).stdout


def help_section(text, title):
    """The lines of one section of CLI11's help ("Options:", "Subcommands:"); an unindented
    line that is no section's title (a footer) ends it."""
    lines, inside = [], False
    for line in text.splitlines():
        if re.match(r"^\S.*:$", line):
            inside = line == title + ":"
        elif re.match(r"^\S", line):
            inside = False
        elif inside:
            lines.append(line)
    return lines


def help_flags(text):
    """The long flags in the first column of --help's Options."""
    flags = set()
    for line in help_section(text, "Options"):
        words = line.split()
        if words and words[0].startswith("-"):
            for name in words[0].split(","):
                flags |= set(FLAG.findall(re.sub(r"\{.*?\}", "", name)))
    return flags


def help_subcommands(text):
    return [line.split()[0] for line in help_section(text, "Subcommands") if line.strip()]


def roff_text(line):
    """A roff line as plain text: \\- is -, font escapes and quotes go."""
    line = line.replace("\\-", "-").replace("\\e", "\\").replace("\\(aq", "'")
    line = re.sub(r"\\f[BIRP]|\\c|\\&", "", line)
    return line


class Page:
    """A man page as sections (.SH) and subsections (.SS) of plain-text lines."""

    def __init__(self, path):
        self.sections, self.subsections = {}, {}
        section, sub = None, None
        with open(path, encoding="utf-8") as f:
            for raw in f:
                line = raw.rstrip("\n")
                if line.startswith(".SH "):
                    section, sub = line[4:].strip('"'), None
                    self.sections[section] = []
                elif line.startswith(".SS "):
                    sub = line[4:].strip('"')
                    self.subsections[sub] = []
                elif section is not None and not line.startswith('.\\"'):
                    self.sections[section].append(line)
                    if sub is not None:
                        self.subsections[sub].append(line)

    def tags(self, section):
        """The flags in the tag lines (the line after .TP) of a section."""
        flags, lines = set(), self.sections.get(section, [])
        for prev, line in zip(lines, lines[1:]):
            if prev.startswith(".TP"):
                flags |= set(FLAG.findall(roff_text(line)))
        return flags

    def flags(self, lines):
        return set(FLAG.findall(roff_text("\n".join(lines))))


def compare(problems, what, have, documented, where):
    for flag in sorted(have - documented):
        problems.append(f"{what} has {flag}, which {where} does not document")


def check_kronopd(binary, page):
    problems = []
    flags = help_flags(help_text([binary]))
    compare(problems, "kronopd --help", flags, page.tags("OPTIONS"), "OPTIONS")
    documented = page.tags("OPTIONS") | page.flags(page.sections.get("SYNOPSIS", []))
    for flag in sorted(documented - flags):
        problems.append(f"kronopd.8 documents {flag}, which kronopd --help does not have")
    return problems


def synopsis_blocks(page):
    """kronopctl.1's SYNOPSIS: each .SY ... .YS block as (words, flags)."""
    blocks, block = [], None
    for line in page.sections.get("SYNOPSIS", []):
        if line.startswith(".SY"):
            block = []
        elif line.startswith(".YS"):
            text = roff_text("\n".join(block))
            words = [w for w in re.findall(r"^\.B\s+(.*)$", text, re.M) if not w.startswith("-")]
            blocks.append((" ".join(words), set(FLAG.findall(text))))
            block = None
        elif block is not None:
            block.append(line)
    return blocks


def example_subcommands(page, names):
    """The subcommands (top level words, and 'presence user' and the like) EXAMPLES runs."""
    found = set()
    for line in page.sections.get("EXAMPLES", []):
        words = roff_text(line).split()
        if "kronopctl" not in words:
            continue
        rest = words[words.index("kronopctl") + 1 :]
        for i, word in enumerate(rest):
            if word in names:
                found.add(word)
                if i + 1 < len(rest):
                    found.add(word + " " + rest[i + 1])
                break
    return found


def check_kronopctl(binary, page):
    problems = []
    top = help_text([binary])
    globals_ = help_flags(top)
    compare(problems, "kronopctl --help", globals_, page.tags("GLOBAL OPTIONS"), "GLOBAL OPTIONS")
    names = help_subcommands(top)
    leaves = []
    for name in names:
        text = help_text([binary, name])
        nested = help_subcommands(text)
        leaves += [(f"{name} {n}", [name, n]) for n in nested] if nested else [(name, [name])]
    blocks = synopsis_blocks(page)
    examples = example_subcommands(page, set(names))
    for name, argv in leaves:
        flags = help_flags(help_text([binary] + argv))
        if name not in page.subsections:
            problems.append(f"kronopctl.1 has no SUBCOMMANDS section '.SS {name}'")
        synopsis = [f for words, f in blocks if words == name]
        if not synopsis:
            problems.append(f"kronopctl.1's SYNOPSIS has no line for '{name}'")
        in_synopsis = synopsis[0] if synopsis else set()
        section = page.flags(page.subsections.get(name, []))
        compare(problems, f"kronopctl {name} --help", flags - {"--help"}, in_synopsis | section,
                f"kronopctl.1 ('{name}' in SYNOPSIS or its section)")
        for flag in sorted(in_synopsis - flags - globals_):
            problems.append(f"kronopctl.1's SYNOPSIS gives '{name}' {flag}, which it does not have")
        if name not in examples:
            problems.append(f"kronopctl.1's EXAMPLES has no example of '{name}'")
    if "EXIT STATUS" not in page.sections:
        problems.append("kronopctl.1 has no EXIT STATUS section")
    return problems


def main():
    if len(sys.argv) != 4 or sys.argv[1] not in ("kronopd", "kronopctl"):
        print(__doc__, file=sys.stderr)
        return 2
    page = Page(sys.argv[3])
    check = check_kronopd if sys.argv[1] == "kronopd" else check_kronopctl
    problems = check(sys.argv[2], page)
    for problem in problems:
        print(problem)
    if not problems:
        print(f"{sys.argv[3]} agrees with {sys.argv[1]} --help")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
