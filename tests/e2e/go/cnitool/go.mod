// cnitool from the CNI project (1.3.x speaks GC and STATUS). Test dependency only.
module ohno.test/e2e/cnitool

go 1.21

require github.com/containernetworking/cni v1.3.0
