#!/bin/sh
# nginx's official images fill /etc/nginx/templates/X.template into /etc/nginx/conf.d/X at start,
# substituting only the variables that are set (so nginx's own $variables survive). Same here.
set -eu
defined=$(env | sed -n 's/^\([A-Za-z_][A-Za-z0-9_]*\)=.*/${\1}/p' | tr '\n' ' ')
for template in /etc/nginx/templates/*.template; do
  [ -f "$template" ] || continue
  target=/etc/nginx/conf.d/$(basename "$template" .template)
  envsubst "$defined" < "$template" > "$target"
  echo "gateway: $template -> $target"
done
exec "$@"
