module github.com/seed-fc8f924e/kcptun/bench

go 1.26.8

replace github.com/seed-fc8f924e/kcptun => ../

require (
	github.com/seed-fc8f924e/kcptun v0.0.0-00010101000000-000000000000
	github.com/xtaci/smux v1.5.56
	gvisor.dev/gvisor v0.0.0-20250911055229-61a46406f068
)

require (
	github.com/golang/snappy v1.0.0 // indirect
	github.com/google/btree v1.1.2 // indirect
	github.com/juju/ratelimit v1.0.2 // indirect
	github.com/klauspost/cpuid/v2 v2.4.1 // indirect
	github.com/klauspost/reedsolomon v1.14.2 // indirect
	github.com/pion/transport/v5 v5.1.4 // indirect
	github.com/pkg/errors v0.9.1 // indirect
	github.com/tjfoc/gmsm v1.4.1 // indirect
	github.com/xtaci/kcp-go/v5 v5.7.5 // indirect
	go.uber.org/goleak v1.3.0 // indirect
	golang.org/x/crypto v0.58.0 // indirect
	golang.org/x/net v0.61.0 // indirect
	golang.org/x/sys v0.49.0 // indirect
	golang.org/x/time v0.14.0 // indirect
)
