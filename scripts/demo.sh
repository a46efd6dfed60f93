#!/usr/bin/env bash
# kiln's main job on a fresh machine, with no registry and no engine:
# builds kiln, makes the busybox base image locally from Debian's
# busybox-static, builds examples/hello into kiln's store and an OCI layout,
# and shows what it made.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup.sh

echo "==> building kiln" >&2
# Two builds: with --example, cargo builds only the named targets, not kiln.
cargo build --release --locked -p kiln-cli
cargo build --release --locked -p kiln-testimages --example make-busybox
kiln=target/release/kiln

work=${KILN_DEMO_DIR:-$(mktemp -d)}
export KILN_HOME=${KILN_HOME:-$work/store}
echo "==> store: $KILN_HOME" >&2

echo "==> making the busybox base image from busybox-static" >&2
target/release/examples/make-busybox "$work/busybox-layout" >&2
mkdir -p "$KILN_HOME"
"$kiln" images >/dev/null   # creates the store layout
skopeo copy --quiet "oci:$work/busybox-layout:busybox" "oci:$KILN_HOME:busybox:latest"

echo "==> kiln build examples/hello" >&2
digest=$("$kiln" build --progress plain -t hello:latest \
  --output "type=oci-dir,dest=$work/hello-layout" examples/hello)

echo "==> what kiln made" >&2
"$kiln" images
echo
echo "image digest: $digest"
echo "OCI layout:   $work/hello-layout (skopeo inspect oci:$work/hello-layout:hello:latest)"
skopeo inspect "oci:$work/hello-layout:hello:latest" | head -20
