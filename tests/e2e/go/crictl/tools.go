//go:build tools

// Package tools names the command tests/e2e/build.sh builds.
package tools

import _ "sigs.k8s.io/cri-tools/cmd/crictl"
