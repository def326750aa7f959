// The e2e lab's pod sandbox program: the image containerd runs as every pod's "pause"
// container. The lab has no registry, so it builds its own.
module ohno.test/e2e/pause

go 1.21
