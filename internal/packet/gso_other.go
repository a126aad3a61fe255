//go:build !linux

package packet

const (
	gsoSupported   = false
	gsoMaxSegments = 1
	gsoMaxBytes    = 0
)

var gsoCmsgSpace = 0

func putGSO(oob []byte, _ int) []byte { return oob[:0] }
