// Command etcd is the upstream etcd server, built from the pinned Go module so the e2e
// harness does not depend on a distribution package (which is too old for the apiserver).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
