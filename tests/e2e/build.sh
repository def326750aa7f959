#!/usr/bin/env bash
# Builds the real programs the e2e lab runs, from the Go modules pinned in tests/e2e/go/*:
#   kube     kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kubectl
#   cnitool  cnitool (CNI 1.3: ADD, CHECK, DEL, GC, STATUS)
#   crictl   crictl (the CRI client)
#   pause    the pod sandbox program of the lab's pause image (ours: the lab has no registry)
# into .cache/e2e/bin. A module is rebuilt only when its pins (go.mod, go.sum, the .go files) change: the
# stamp .cache/e2e/<module>.stamp holds their hash. Go's own build
# and module caches stay where Go keeps them (~/.cache/go-build, ~/go/pkg/mod), so a fresh
# clone on a machine that built once before relinks in minutes instead of building cold.
# Never committed; nothing is downloaded but Go modules from the module proxy.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
OUT="$ROOT/.cache/e2e"
BIN="$OUT/bin"
mkdir -p "$BIN"
export PATH="/usr/local/go/bin:$PATH" CGO_ENABLED=0 GOFLAGS=-mod=mod

# The version the binaries report (kubectl version, the kubelet's node status).
kube_version() { sed -n 's/^require k8s.io\/kubernetes \(v[0-9.]*\)$/\1/p' "$ROOT/tests/e2e/go/kube/go.mod"; }

build_module() {
  local mod=$1 dir="$ROOT/tests/e2e/go/$1" stamp="$OUT/$1.stamp" want
  want=$(cat "$dir"/go.* "$dir"/*.go 2>/dev/null | sha256sum | cut -c1-16)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    return 0
  fi
  shift
  local pkgs=("$@") ldflags="-s -w" start=$SECONDS
  if [ "$mod" = kube ]; then
    local v
    v=$(kube_version)
    local minor=${v#v1.}
    minor=${minor%%.*}
    ldflags+=" -X k8s.io/component-base/version.gitVersion=$v -X k8s.io/component-base/version.gitMajor=1"
    ldflags+=" -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean"
    ldflags+=" -X k8s.io/client-go/pkg/version.gitVersion=$v"
  fi
  echo "[e2e] building $mod (${pkgs[*]##*/}); a cold Kubernetes build takes tens of minutes" >&2
  (cd "$dir" && go build -trimpath -ldflags "$ldflags" -o "$BIN/" "${pkgs[@]}")
  echo "$want" >"$stamp"
  echo "[e2e] built $mod in $((SECONDS - start)) s" >&2
}

build_module pause ./
build_module cnitool github.com/containernetworking/cni/cnitool
build_module crictl sigs.k8s.io/cri-tools/cmd/crictl
build_module kube k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kubectl
