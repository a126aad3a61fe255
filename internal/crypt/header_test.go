package crypt

import (
	"testing"

	"github.com/seed-fc8f924e/kcptun/internal/packet"
)

// TestHeaderSizeMatchesPacketLayer checks HeaderSize, which the MTU check
// uses, against what the packet layer actually reserves for each cipher.
func TestHeaderSizeMatchesPacketLayer(t *testing.T) {
	pass := DeriveKey("header sizes")
	bare := packet.Overhead(nil) // the FEC header alone
	for _, name := range Names() {
		block, err := New(name, pass)
		if err != nil {
			t.Fatalf("New(%q): %v", name, err)
		}
		if got, want := HeaderSize(name), packet.Overhead(block)-bare; got != want {
			t.Errorf("HeaderSize(%q) = %d, the packet layer reserves %d", name, got, want)
		}
	}
	if HeaderSize("no such cipher") != 0 {
		t.Error("an unknown name must report 0")
	}
}
