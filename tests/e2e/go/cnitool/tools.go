//go:build tools

// Package tools names the command tests/e2e/build.sh builds.
package tools

import _ "github.com/containernetworking/cni/cnitool"
