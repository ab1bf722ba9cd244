#!/usr/bin/env bash
# Re-render the `manpages` evaluation corpus from the installed Debian manual pages.
#
#   bench/quality/sets/manpages/render.sh            # re-render every page in pages.txt
#   bench/quality/sets/manpages/render.sh 1 gzip     # render one page to stdout
#
# Each page is rendered to plain text with
#   MANWIDTH=100 man --no-hyphenation --no-justification -P cat <section> <name> | col -b
# and then converted to Markdown by man2md.py (next to this script):
#   - the running header and footer lines are dropped;
#   - the document starts with "# <name>(<section>) — <description from NAME>";
#   - top-level section lines (NAME, SYNOPSIS, ...) become "## ..." and
#     subsection lines (indented 3) become "### ...";
#   - text is de-indented; filled paragraphs are joined into one line;
#   - each tagged paragraph (an option, an exit status, a file, ...) becomes its own
#     paragraph "`TAG`: description"; bullets become "- ...";
#   - indented, non-filled blocks (examples, tables) become ``` code blocks;
#     SYNOPSIS lines keep their line breaks.
#   - "drop=" in pages.txt removes whole sections of a page that is too long to keep.
# The text itself is not edited. Output depends on the installed package versions
# (see README.md); the committed .md files are what the evaluation reads.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export LC_ALL=C.UTF-8 MANWIDTH=100

render_one() {  # <section> <name> [drop-list]
    man --no-hyphenation --no-justification -P cat "$1" "$2" 2>/dev/null | col -b \
        | python3 "$here/man2md.py" "$1" "$2" "${3:-}"
}

if [[ $# -ge 2 ]]; then
    render_one "$1" "$2" "${3:-}"
    exit 0
fi

out="$here/corpus"
mkdir -p "$out"
rm -f "$out"/*.md
n=0
while IFS= read -r line; do
    line="${line%%#*}"
    [[ -z "${line// /}" ]] && continue
    read -r section name rest <<<"$line"
    drop=""
    if [[ "$rest" == drop=* ]]; then drop="${rest#drop=}"; fi
    render_one "$section" "$name" "$drop" >"$out/$name.$section.md"
    n=$((n + 1))
done <"$here/pages.txt"
echo "rendered $n pages into $out; $(cat "$out"/*.md | wc -w) words"
