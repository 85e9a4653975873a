#!/usr/bin/env bash
# Renders the Kubernetes examples with real certificates:
#
#   examples/kubernetes/render.sh OUT_DIR
#
# 1. In OUT_DIR, the seed's eight openssl commands, verbatim, make ca.crt/key, server.crt/key and
#    client.crt/key (skipped when OUT_DIR already holds them: delete them for new ones).
# 2. Each scenario folder here (agent-endpoint, cloud-endpoint, ingress, gateway, upstream-mtls)
#    is written to OUT_DIR/<scenario>/ with its placeholders filled:
#      -----BEGIN …-----                    the whole PEM file, each line indented as the
#      ... certificate (FILE) ...    ->     placeholder is (inline traffic policies, a
#      -----END …-----                      ConfigMap's data, as kubectl writes it)
#      ... base64 (FILE) ...         ->     the file in base64 on one line (a Secret's data, as
#                                           `kubectl create secret tls` writes it)
#    Files are replaced whole (a running `tlsgate run` reloads them); nothing else is touched.
# 3. OUT_DIR/seed-upstream.yaml: examples/native/seed-upstream.yaml, the HTTPS upstream of seed 000
#    that requires client.crt, placed next to the certificates it names.
#
# Then: tlsgate check -c OUT_DIR/<scenario> --listen 443=127.0.0.1:8443 --resolve … (README.md).
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
SCENARIOS=(agent-endpoint cloud-endpoint ingress gateway upstream-mtls)

if [ $# -ne 1 ] || [ -z "$1" ]; then
  echo "usage: $0 OUT_DIR" >&2
  exit 64
fi
for tool in openssl python3; do
  command -v "$tool" >/dev/null 2>&1 || { echo "render.sh: $tool is missing (make setup installs it)" >&2; exit 1; }
done

umask 077 # the rendered manifests and the *.key files hold private keys
OUT="$(python3 -c 'import os, sys; print(os.path.realpath(sys.argv[1]))' "$1")"
HERE="$(python3 -c 'import os, sys; print(os.path.realpath(sys.argv[1]))' "$HERE")"
case "$OUT/" in
  "$HERE/" | "$HERE/agent-endpoint/"* | "$HERE/cloud-endpoint/"* | "$HERE/ingress/"* | \
    "$HERE/gateway/"* | "$HERE/upstream-mtls/"*)
    echo "render.sh: OUT_DIR must not be the templates' folder; use e.g. $HERE/out" >&2
    exit 64
    ;;
esac
mkdir -p "$OUT"
cd "$OUT"

"$ROOT/scripts/seed-certs.sh" .

python3 - "$HERE" "$OUT" "${SCENARIOS[@]}" <<'PY'
import base64, os, re, sys

here, out, scenarios = sys.argv[1], sys.argv[2], sys.argv[3:]
# Only the files the seed's commands make may be named by a placeholder.
allowed = {"ca.crt", "server.crt", "server.key", "client.crt", "client.key"}
begin = re.compile(r"^(?P<indent>[ ]*)(?P<dash>- )?-----BEGIN [A-Z0-9 ]+-----$")
body = re.compile(r"^[ ]*\.\.\. (?:certificate|private key) \((?P<file>[^()/]+)\) \.\.\.$")
end = re.compile(r"^[ ]*-----END [A-Z0-9 ]+-----$")
inline = re.compile(r"\.\.\. base64 \((?P<file>[^()/]+)\) \.\.\.")

def material(name, where):
    if name not in allowed:
        sys.exit(f"render.sh: {where}: placeholder names {name}; use one of {sorted(allowed)}")
    with open(os.path.join(out, name), encoding="ascii") as f:
        return f.read()

def render(path):
    lines = open(path, encoding="utf-8").read().split("\n")
    rendered, i = [], 0
    while i < len(lines):
        m = begin.match(lines[i])
        b = body.match(lines[i + 1]) if m and i + 2 < len(lines) else None
        if m and b and end.match(lines[i + 2]):
            if m.group("dash"):
                sys.exit(f"render.sh: {path}:{i + 1}: put the PEM block under `- |-`, not on the dash line")
            pad = m.group("indent")
            pem = material(b.group("file"), f"{path}:{i + 2}").strip("\n")
            rendered.extend(pad + l for l in pem.split("\n"))
            i += 3
            continue
        line = lines[i]
        if not line.lstrip().startswith("#"):  # comments are copied as they are
            line = inline.sub(
                lambda x: base64.b64encode(material(x.group("file"), f"{path}:{i + 1}").encode()).decode(),
                line)
            left = re.search(r"\.\.\. [a-z0-9 ]+\([^)]*\) \.\.\.", line)
            if left:
                sys.exit(f"render.sh: {path}:{i + 1}: placeholder `{left.group(0)}` is not on its own "
                         "line between -----BEGIN and -----END lines")
        rendered.append(line)
        i += 1
    return "\n".join(rendered)

for scenario in scenarios:
    src, dst = os.path.join(here, scenario), os.path.join(out, scenario)
    os.makedirs(dst, exist_ok=True)
    names = sorted(n for n in os.listdir(src) if n.endswith(".yaml"))
    for name in names:
        text = render(os.path.join(src, name))
        target = os.path.join(dst, name)
        tmp = target + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, target)  # whole files only: a running tlsgate may be watching
    for stale in os.listdir(dst):
        if stale.endswith((".yaml", ".yml", ".json")) and stale not in names:
            os.remove(os.path.join(dst, stale))
    print(f"{scenario}: {', '.join(names)} -> {dst}/")
PY

cp "$ROOT/examples/native/seed-upstream.yaml" seed-upstream.yaml.tmp
mv seed-upstream.yaml.tmp seed-upstream.yaml
echo "seed-upstream.yaml: the upstream of seed 000 (127.0.0.1:9443, requires client.crt) -> $OUT/"
