#!/usr/bin/env bash
# Refreshes the web app's vendored libraries (web/vendor/) at the pinned versions below, from the npm registry
# that `npm` is configured with. The app has no build step: these files are served as they are, as ES modules.
# Run it only to change a version; the files it writes are committed, and web/vendor/SHA256SUMS checks them.
set -euo pipefail
cd "$(dirname "$0")/.."

PREACT=11.2.0
HTM=3.1.1
MARKED=18.2.1
DOMPURIFY=3.5.0

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for package in "preact@$PREACT" "htm@$HTM" "marked@$MARKED" "dompurify@$DOMPURIFY"; do
  name=${package%@*}
  mkdir -p "$work/$name"
  (cd "$work" && npm pack --silent "$package" >/dev/null)
  tar -xzf "$work/$name"-*.tgz -C "$work/$name" --strip-components=1
done

out=web/vendor
cp "$work/preact/dist/preact.mjs" "$out/preact.js"
# The hooks import "preact" by its bare name, which only a bundler or an import map resolves; an import map is
# an inline script, which the Content-Security-Policy forbids. So the one import is pointed at the file beside it.
sed 's|from"preact"|from"./preact.js"|g' "$work/preact/hooks/dist/hooks.mjs" > "$out/preact-hooks.js"
cp "$work/htm/dist/htm.mjs" "$out/htm.js"
cp "$work/marked/lib/marked.esm.js" "$out/marked.js"
cp "$work/dompurify/dist/purify.es.mjs" "$out/purify.js"
for name in preact htm marked dompurify; do
  for license in LICENSE LICENSE.md LICENSE.txt; do
    [ -f "$work/$name/$license" ] && cp "$work/$name/$license" "$out/LICENSE.$name" && break
  done
done
printf 'preact %s\nhtm %s\nmarked %s\ndompurify %s\n' "$PREACT" "$HTM" "$MARKED" "$DOMPURIFY" > "$out/VERSIONS"
(cd "$out" && sha256sum ./*.js VERSIONS > SHA256SUMS)
echo "web/vendor: $(tr '\n' ' ' < "$out/VERSIONS")"
