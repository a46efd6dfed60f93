#!/usr/bin/env bash
# Installs what kiln's tests and demo need on a Debian bookworm machine (as root,
# or with sudo): the real registry, the tools that must accept kiln's images,
# and an unprivileged user with subordinate id ranges for the rootless tests.
set -euo pipefail

packages=(
  docker-registry   # distribution 2.8: the real registry the tests push to
  busybox-static    # the busybox base image is made from it
  debootstrap       # the debian and python base images
  uidmap            # newuidmap/newgidmap for rootless builds
  skopeo umoci      # real tools that must read what kiln writes
  apache2-utils     # htpasswd for the basic-auth registry
  openssl           # the test CA and token-signing keys
  ca-certificates
  git               # --tag-scheme semver-sha reads the context's commit; the release tests make repos
  docker.io         # dockerd, started by the tests with its own data root: pulls and runs kiln's images; the differential tests and benches
  buildah           # the benches compare against buildah bud --isolation chroot
)

sudo_if_needed() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "==> installing ${missing[*]}" >&2
  sudo_if_needed apt-get update -qq
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The unprivileged user the rootless tests run kiln as, with subordinate ids so
# that multi-id steps (chown to 1000 and 65534, apt-get) work.
if ! id kilntest >/dev/null 2>&1; then
  sudo_if_needed useradd --create-home --shell /bin/bash kilntest
fi
if ! grep -q '^kilntest:' /etc/subuid 2>/dev/null; then
  sudo_if_needed usermod --add-subuids 100000-165535 --add-subgids 100000-165535 kilntest
fi
