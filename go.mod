module github.com/seed-fc8f924e/kcptun

go 1.26.8

require (
	github.com/golang/snappy v1.0.0
	github.com/klauspost/reedsolomon v1.14.2
	github.com/xtaci/kcp-go/v5 v5.7.5
	github.com/xtaci/smux v1.5.56
	go.uber.org/goleak v1.3.0
	golang.org/x/net v0.61.0
	golang.org/x/sys v0.49.0
)

require (
	github.com/juju/ratelimit v1.0.2 // indirect
	github.com/klauspost/cpuid/v2 v2.4.1 // indirect
	github.com/kr/text v0.2.0 // indirect
	github.com/pion/transport/v5 v5.1.4 // indirect
	github.com/pkg/errors v0.9.1 // indirect
	github.com/tjfoc/gmsm v1.4.1 // indirect
	golang.org/x/crypto v0.58.0 // indirect
)
