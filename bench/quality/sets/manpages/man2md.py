#!/usr/bin/env python3
"""Convert one manual page rendered to text (stdin) into Markdown (stdout).

Usage: man ... -P cat SECTION NAME | col -b | man2md.py SECTION NAME [DROP]

Called by render.sh; see there for the rendering command. DROP is a "|"-separated
list of section/subsection titles to leave out. Only the layout is changed: the words
of the page are kept as they are (except the running header and footer, which are dropped).
"""

import re
import sys

LL = 98  # line length of the rendered text (MANWIDTH=100)
BULLETS = {"•", "·", "○"}


def md_escape(line):
    """Keep a text line from being read as Markdown structure."""
    if re.match(r"^(#|>)", line) or re.match(r"^[=\-]{2,}\s*$", line):
        return "\\" + line
    return line


def ind(line):
    return len(line) - len(line.lstrip(" "))


def first_word(text):
    s = text.strip().split(" ", 1)
    return s[0] if s else ""


def filled(line, nxt):
    """True if `line` was broken only because the next word did not fit."""
    return len(line) + 1 + len(first_word(nxt)) > LL - 3


def is_filled_para(lines):
    if len(lines) < 2:
        return False
    if len({ind(l) for l in lines}) != 1:
        return False
    return all(filled(lines[i], lines[i + 1]) for i in range(len(lines) - 1))


def join_text(lines):
    """Join filled lines; a line ending in a word hyphen was broken at that hyphen."""
    text = ""
    for l in lines:
        l = l.strip()
        if text and not re.search(r"\w-$", text):
            text += " "
        text += l
    return re.sub(r" {2,}", " ", text)


def bullet_line(line):
    m = re.match(r"^\s*([•·○])\s+(\S.*)$", line)
    return m.group(2) if m else None


def split_same_line(line, J, strict, in_list=False):
    """Split 'TAG   body' when the body starts at column J. Returns (tag, body) or None."""
    I = ind(line)
    guessed = J is None
    if guessed:  # no tagged paragraph seen yet at this indent: guess the body column
        m = re.match(r"^ *-\S* {2,}(?=\S)", line)
        J = m.end() if m else I + 7 if line.lstrip().startswith("--") else None
        if J is None or re.search(r"\S {3,}\S", line[J:]):  # not a table row
            return None
    if J <= I + 1 or len(line) <= J:
        return None
    if line[J - 1] != " " or line[J] == " ":
        return None
    tag = line[I:J].strip()
    if not tag or "  " in tag:
        return None
    two_spaces = line[J - 2] == " "
    option_like = " " not in tag and (
        tag[0] in "-+"
        or tag in BULLETS
        or re.match(r"^\d+[.)]?$", tag)
        or (in_list and not guessed and not re.match(r"^[A-Z][a-z]*$", tag) and not line.rstrip().endswith(":"))
    )
    if strict and not option_like and not (two_spaces and " " not in tag):
        return None
    if not two_spaces and not option_like and (strict or " " in tag):
        return None
    return tag, line[J:]


def fmt_tag(tag, text):
    if tag in BULLETS:
        return "- " + text if text else "-"
    if re.match(r"^\d+[.)]$", tag):
        return tag[:-1] + ". " + text
    q = "``" if "`" in tag else "`"
    sp = " " if q == "``" else ""
    t = f"{q}{sp}{tag}{sp}{q}"
    return f"{t}: {text}" if text else t


PAGE_BODY_J = {}  # head indent -> body indent of the last tagged item, for the whole page


class Section:
    def __init__(self):
        self.out = []  # Markdown blocks
        self.prose = None  # indent of the last prose paragraph
        self.body_j = PAGE_BODY_J
        self.in_list = None  # (head indent, body indent) while inside a list of tagged paragraphs

    # ---- emitting
    def para(self, lines, indent):
        text = join_text(lines) if is_filled_para(lines) or len(lines) == 1 else None
        if text is not None:
            self.out.append(md_escape(text))
        else:
            base = min(ind(l) for l in lines)
            self.out.append("\n".join(md_escape(l[base:]) for l in lines))
        self.prose = indent

    def code(self, lines):
        base = min(ind(l) for l in lines)
        text = "\n".join(l[base:] for l in lines)
        if self.out and self.out[-1].startswith("```") and self.out[-1].endswith("```"):
            self.out[-1] = self.out[-1][:-3] + "\n" + text + "\n```"  # one example, several paragraphs
        else:
            self.out.append("```\n" + text + "\n```")

    def text_block(self, lines):
        """A block without tag structure."""
        I = ind(lines[0])
        if self.prose is not None and I > self.prose and not is_filled_para(lines):
            self.code(lines)
        else:
            self.para(lines, I)

    def tagged(self, tag, first, body):
        """tag, the part of the body on the tag line (or None), and the body lines."""
        pieces = Section()
        pieces.prose = ind(body[0]) if body else None
        lines = ([" " * (ind(body[0]) if body else 0) + first] if first else []) + body
        if lines:
            pieces.block(lines)
        if pieces.out and not pieces.out[0].startswith("```"):
            first_text = pieces.out[0]
            if first_text.startswith("\\"):  # no Markdown escape needed after a tag
                first_text = first_text[1:]
            self.out.append(fmt_tag(tag, first_text))
            self.out.extend(pieces.out[1:])
        else:
            self.out.append(fmt_tag(tag, ""))
            self.out.extend(pieces.out)
        if body:
            self.prose = ind(body[0])

    # ---- structure
    def block(self, lines):
        """One run of non-blank lines."""
        I = ind(lines[0])
        if (
            self.prose is not None
            and I > self.prose
            and not any(filled(lines[i], lines[i + 1]) for i in range(len(lines) - 1))
            and not re.match(r"^[-+]", lines[0].strip())
            and bullet_line(lines[0]) is None
        ):
            self.code(lines)  # an indented example that is not running text
            return
        items = []  # (head lines, body lines)
        for l in lines:
            if ind(l) <= I:
                if items and not items[-1][1] and bullet_line(l) is None and bullet_line(items[-1][0][-1]) is None:
                    items[-1][0].append(l)
                else:
                    items.append(([l], []))
            else:
                if not items:
                    items.append(([], []))
                items[-1][1].append(l)
        for head, body in items:
            self.item(head, body)

    def item(self, head, body):
        if not head:
            self.block(body)
            return
        b = bullet_line(head[0])
        if b is not None and len(head) == 1 and (not body or len({ind(x) for x in body}) == 1):
            self.out.append("- " + join_text([b] + body))
            return
        I = ind(head[0])
        if body:
            J = ind(body[0])
            if head[-1].rstrip().endswith("\\") or (
                len(re.findall(r"\S {2,}\S", head[-1].strip())) >= 3 and not filled(head[-1], body[0])
            ):
                # a shell command continued on the next line, or a table with a header line
                self.text_block(head + body)
                return
            if len(head) == 1:
                h = head[0]
                gap2 = len(h) > J and h[J - 2 : J] == "  " and h[J] != " "
                if filled(h, body[0]) or gap2:
                    s = split_same_line(h, J, strict=False)
                    if s:
                        self.body_j[I] = J
                        self.in_list = (I, J)
                        self.tagged(s[0], s[1], body)
                    else:  # a long tag line that cannot be split: tag line, then its text
                        self.text_block([h])
                        self.prose = J
                        self.block(body)
                    return
                if h.rstrip().endswith(":") and len(h.strip()) > 40:
                    self.text_block(head)
                    self.block(body)
                    return
                self.body_j[I] = J
                self.in_list = (I, J)
                self.tagged(h.strip(), None, body)
                return
            # several option lines, the last one with the start of the text (.TQ)
            last = split_same_line(head[-1], J, strict=True)
            if last and all(h.strip().startswith("-") and len(h.strip()) <= 40 for h in head[:-1]):
                self.body_j[I] = J
                self.in_list = (I, J)
                self.tagged(", ".join([h.strip() for h in head[:-1]] + [last[0]]), last[1], body)
                return
            # several head lines, then a body: trailing short lines are tags (.TQ),
            # anything before them is an introducing paragraph
            k = len(head)
            while (
                k > 0
                and (len(head[k - 1].strip()) <= 60 or re.match(r"^-.*,$", head[k - 1].strip()))
                and not head[k - 1].rstrip().endswith((":", "."))
                and not (
                    k < len(head) and filled(head[k - 1], head[k]) and not re.match(r"^-.*,$", head[k - 1].strip())
                )
            ):
                k -= 1
            if k > 0:
                self.text_block(head[:k])
            if k == len(head):
                self.block(body)
            else:
                self.body_j[I] = J
                self.in_list = (I, J)
                tag = ""
                for h in head[k:]:
                    tag += (" " if tag.endswith(",") else ", " if tag else "") + h.strip()
                self.tagged(tag, None, body)
            return
        # no body
        J = self.body_j.get(I)
        in_list = self.in_list == (I, J)
        if J is None and len(head) >= 2:  # a compact list: the column where the texts start
            cols = {m.end() for m in (re.match(r"^ *\S+ {2,}", h) for h in head[1:]) if m}
            if len(cols) == 1:
                J = cols.pop()
        if len(head) == 1:
            s = split_same_line(head[0], J, strict=True, in_list=in_list)
            if s:
                self.tagged(s[0], s[1], [])
                self.prose = J
                self.in_list = (I, J)
            else:
                self.text_block(head)
                self.in_list = None
            return
        if is_filled_para(head):
            self.para(head, I)
            return
        splits = [split_same_line(h, J, strict=True) for h in head]
        k = len(head)
        while k > 0 and splits[k - 1]:
            k -= 1
        if k < len(head) and (k == 0 or not filled(head[k - 1], head[k])):
            if k > 0:  # an introducing sentence, then a compact list
                self.text_block(head[:k])
            for s in splits[k:]:
                self.tagged(s[0], s[1], [])
            self.prose = J
            return
        self.text_block(head)


def main():
    section, name = sys.argv[1], sys.argv[2]
    drops = {d.strip().lower() for d in (sys.argv[3] if len(sys.argv) > 3 else "").split("|") if d.strip()}
    lines = [l.rstrip() for l in sys.stdin.read().expandtabs(8).split("\n")]
    nonempty = [i for i, l in enumerate(lines) if l.strip()]
    if not nonempty:
        sys.exit(f"man2md: empty page {name}({section})")
    start = nonempty[0] + 1  # running header
    end = nonempty[-1]
    footer = (
        (ind(lines[end]) == 0 and re.search(r"\S {3,}\S", lines[end]))
        or re.search(r"\S {3,}\S*\(\w+\)$", lines[end])
        or re.match(r"^ {20,}\S+\(\w+\)$", lines[end])
    )
    if not footer:
        end += 1  # not a running footer: keep it
    lines = lines[start:end]

    # split into (level, title, content lines)
    secs = []
    for l in lines:
        if l and l[0] != " ":
            secs.append([2, l.strip(), []])
        elif re.match(r"^ {3}\S", l) and not l.rstrip().endswith(":") and len(l.strip()) <= 70:
            secs.append([3, l.strip(), []])
        elif secs and re.match(r"^ {3}\S", l):  # a sentence at subsection indent: body text
            secs[-1][2].extend(["", " " * 7 + l.strip(), ""])
        elif secs:
            secs[-1][2].append(l)
    # drop unwanted sections
    kept, skip_level = [], None
    for lvl, title, content in secs:
        if skip_level is not None and lvl > skip_level:
            continue
        skip_level = None
        if title.lower() in drops:
            skip_level = lvl
            continue
        kept.append((lvl, title, content))
    missing = drops - {t.lower() for _, t, _ in secs}
    if missing:
        sys.exit(f"man2md: {name}({section}): no section named {sorted(missing)}")

    # title from NAME
    name_lines = [l for l in next((c for l, t, c in kept if t == "NAME"), []) if l.strip()]
    sep = r"\s+[-—–]\s+"
    if len(name_lines) > 1 and all(re.search(sep, l) for l in name_lines):
        name_lines = name_lines[:1]  # one line per program (bzip2): describe the first
    name_text = join_text(name_lines)
    m = re.split(sep, name_text, maxsplit=1)
    desc = m[1] if len(m) == 2 else name_text
    m = re.match(r"^[\w.+-]+(, [\w.+-]+)*" + sep + r"(.*)$", desc)  # "lz4, unlz4, lz4cat - ..."
    if m:
        desc = m.group(2)
    out = [f"# {name}({section}) — {desc}"]

    for lvl, title, content in kept:
        out.append("#" * lvl + " " + title)
        sec = Section()
        blocks, cur = [], []
        for l in content + [""]:
            if l.strip():
                cur.append(l)
            elif cur:
                blocks.append(cur)
                cur = []
        if title == "SYNOPSIS":
            for b in blocks:
                base = min(ind(l) for l in b)
                sec.out.append("\n".join(md_escape(l[base:].strip()) for l in b))
        else:
            # an option line standing alone, with its text in the following (deeper) blocks
            merged, open_tag = [], False
            for b in blocks:
                if open_tag and ind(b[0]) > ind(merged[-1][0]):
                    merged[-1] = merged[-1] + b
                    continue
                merged.append(b)
                open_tag = len(b) == 1 and b[0].strip().startswith("-")
            for b in merged:
                if sec.prose is None:
                    sec.prose = ind(b[0])
                sec.block(b)
        out.extend(sec.out)
    sys.stdout.write("\n\n".join(out) + "\n")


if __name__ == "__main__":
    main()
