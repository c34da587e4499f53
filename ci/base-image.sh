#!/usr/bin/env bash
# The image every RuLake container starts from, made from Debian's packages
# alone, so no image registry is needed: `rulake-base:bookworm`.
#
#   bash ci/base-image.sh              # the base and the builder
#   bash ci/base-image.sh --base-only  # the base alone (host-built binaries)
#   BASE_TAG=my/base:1 bash ci/base-image.sh
#
# What is in it, and why: Debian's Essential set (glibc, a POSIX shell and
# coreutils: the meta role's command derives its Raft id from the pod's
# ordinal in `sh`), `ca-certificates` (TLS to object stores), and the
# unprivileged user 65532 that RuLake pods run as (written into
# /etc/passwd directly: `passwd` is not Essential), owning /var/lib/rulake. No package manager state, documentation or locales.
# The mirror is the one this machine's apt uses, when it has one.
#
# Unless --base-only, it also makes `rulake-builder:bookworm`, the Dockerfile's
# default build stage: the same packages plus a C toolchain and this
# machine's Rust toolchain (no Rust new enough is packaged in Debian, and no
# other can be fetched without a registry).
set -euo pipefail

tag="${BASE_TAG:-rulake-base:bookworm}"
builder_tag="${BUILDER_TAG:-rulake-builder:bookworm}"
with_builder=true
[ "${1:-}" = "--base-only" ] && with_builder=false
suite="${BASE_SUITE:-bookworm}"

if ! command -v mmdebstrap >/dev/null 2>&1; then
  echo "base-image: installing mmdebstrap"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mmdebstrap >/dev/null
fi

mirrors=()
for f in /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list; do
  if [ -s "$f" ] && grep -q "^[^#]*${suite}" "$f"; then
    mirrors=("$f")
    break
  fi
done

# What neither image needs: documentation, locales, package lists.
slim=(
  --dpkgopt='path-exclude=/usr/share/man/*'
  --dpkgopt='path-exclude=/usr/share/doc/*'
  --dpkgopt='path-include=/usr/share/doc/*/copyright'
  --dpkgopt='path-exclude=/usr/share/info/*'
  --dpkgopt='path-exclude=/usr/share/locale/*'
  --dpkgopt='path-exclude=/usr/share/lintian/*'
  --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/* "$1"/var/log/*'
)

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

echo "base-image: mmdebstrap $suite (essential + ca-certificates) -> $tag"
start=$(date +%s)
mmdebstrap --variant=essential --include=ca-certificates "${slim[@]}" \
  --customize-hook='echo "rulake:x:65532:" >>"$1/etc/group"' \
  --customize-hook='echo "rulake:x:65532:65532:RuLake:/var/lib/rulake:/usr/sbin/nologin" >>"$1/etc/passwd"' \
  --customize-hook='echo "rulake:*:20000:0:99999:7:::" >>"$1/etc/shadow"' \
  --customize-hook='install -d -m 0750 -o 65532 -g 65532 "$1/var/lib/rulake"' \
  "$suite" "$work/rootfs.tar" "${mirrors[@]}"

docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["/bin/sh"]' \
  "$work/rootfs.tar" "$tag" >/dev/null
size=$(docker image inspect --format '{{.Size}}' "$tag")
echo "base-image: $tag built in $(( $(date +%s) - start )) s, $(( size / 1048576 )) MiB"

if $with_builder; then
  sysroot="$(rustc --print sysroot)"
  echo "base-image: $builder_tag (build-essential, pkg-config, Rust from $(rustc --version))"
  start=$(date +%s)
  # The builder fetches crates as this host does: a host behind a proxy
  # with its own certificate authority has it in the local CA directory,
  # and the builder must trust it too (elsewhere the directory is empty).
  trust=()
  if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
    trust=(--customize-hook='copy-in /usr/local/share/ca-certificates /usr/local/share'
           --customize-hook='chroot "$1" update-ca-certificates >/dev/null')
  fi
  mmdebstrap --variant=minbase --include=ca-certificates,build-essential,pkg-config "${slim[@]}" \
    "${trust[@]}" \
    --customize-hook='mkdir -p "$1/opt/rust"' \
    --customize-hook="copy-in $sysroot/. /opt/rust" \
    "$suite" "$work/builder.tar" "${mirrors[@]}"
  docker import \
    --change 'ENV PATH=/opt/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV CARGO_HOME=/usr/local/cargo' \
    --change 'CMD ["/bin/sh"]' \
    "$work/builder.tar" "$builder_tag" >/dev/null
  size=$(docker image inspect --format '{{.Size}}' "$builder_tag")
  echo "base-image: $builder_tag built in $(( $(date +%s) - start )) s, $(( size / 1048576 )) MiB"
fi
