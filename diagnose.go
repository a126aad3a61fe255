package kcptun

import (
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	kcp "github.com/xtaci/kcp-go/v5"

	"github.com/seed-fc8f924e/kcptun/internal/crypt"
	"github.com/seed-fc8f924e/kcptun/internal/wire"
)

// A key or cipher mismatch is silent on the wire: the receiver drops every
// datagram that fails authentication. The old binaries make it likelier than
// it looks, since they take a cipher name they do not know as aes while
// printing the name they were given. So a Listener whose datagrams from one
// address keep failing tries the other cipher names on one of them and logs
// the one that opens it. This is diagnosis only: the datagram is still
// dropped, and no other cipher is ever accepted.

// diagnoseCipher tries every cipher of the table other than configured on a
// datagram that failed authentication with configured, and returns the first
// whose output is a well-formed KCP packet (with or without an FEC header).
// It returns false when none is: the peer uses another key, or is not a
// kcptun end at all.
func diagnoseCipher(pass []byte, configured string, datagram []byte) (name string, ok bool) {
	for _, name := range crypt.Names() {
		if name == configured {
			continue
		}
		block, err := crypt.New(name, pass)
		if err != nil {
			continue
		}
		payload, err := wire.Open(block, datagram)
		if err != nil {
			continue
		}
		// Without a cipher (null) nothing but the shape vouches for the
		// datagram, so an FEC parity shard, which has none, is not enough.
		if plausibleKCP(payload, block != nil) {
			return name, true
		}
	}
	return "", false
}

// plausibleKCP reports whether p, a datagram without its crypto header, holds
// KCP segments, behind an FEC data shard header or bare. A parity shard
// counts only if parityOK.
func plausibleKCP(p []byte, parityOK bool) bool {
	h, rest, err := wire.ParseFEC(p)
	if err == nil {
		if h.Flag == wire.FECParity {
			return parityOK
		}
		n := int(h.Size) - 2
		if n <= 0 || n > len(rest) {
			return false
		}
		p = rest[:n]
	}
	_, err = wire.ParseSegments(p)
	return err == nil
}

// cipherHint explains how an end configured with one cipher meets a client
// using another: the old releases' silent fallback to aes.
func cipherHint(configured, found string) string {
	switch {
	case found == "aes" && configured == "aes-128-gcm":
		return "; releases before 2025-12 take aes-128-gcm as aes"
	case found == "aes" && configured == "null":
		return "; releases before mid-2022 take null as aes"
	case found == "aes":
		return "; old releases take a cipher name they do not know as aes"
	}
	return ""
}

// authFailuresBeforeDiagnosis is how many datagrams from one address must
// fail authentication before the diagnosis runs.
const authFailuresBeforeDiagnosis = 3

// cipherDiagnosis counts failed datagrams per address and runs the diagnosis,
// at most once per address per minute. It is safe for concurrent use.
type cipherDiagnosis struct {
	pass       []byte
	configured string
	logger     *slog.Logger
	check      kcp.BlockCrypt // the configured cipher, an instance of its own
	limit      logLimiter

	mu       sync.Mutex // guards failures and check
	failures map[string]int
}

func newCipherDiagnosis(c *config) (*cipherDiagnosis, error) {
	block, err := crypt.New(c.crypt, c.pass)
	if err != nil {
		return nil, err
	}
	return &cipherDiagnosis{pass: c.pass, configured: c.crypt, logger: c.logger, check: block,
		failures: make(map[string]int)}, nil
}

// failed counts a datagram from addr that failed authentication with the
// configured cipher and, once they keep failing (at most once per address
// per minute), logs which cipher the sender uses. A packet layer that sees
// the failure itself calls it directly.
func (d *cipherDiagnosis) failed(addr net.Addr, datagram []byte, now time.Time) {
	key := addr.String()
	d.mu.Lock()
	if len(d.failures) >= maxLimiterKeys {
		clear(d.failures)
	}
	d.failures[key]++
	due := d.failures[key] >= authFailuresBeforeDiagnosis
	if due {
		delete(d.failures, key)
	}
	d.mu.Unlock()
	if !due || !d.limit.allow(key, now) {
		return
	}
	if name, ok := diagnoseCipher(d.pass, d.configured, datagram); ok {
		d.logger.Warn(fmt.Sprintf("kcptun: client %s uses cipher %s, this end %s%s: its datagrams are dropped; give both ends the same --crypt (WithCrypt)",
			key, name, d.configured, cipherHint(d.configured, name)), "remote", addr)
		return
	}
	d.logger.Warn(fmt.Sprintf("kcptun: datagrams from %s fail authentication with cipher %s and decode with no other cipher: it uses another key (--key, WithKey), or is not a kcptun client",
		key, d.configured), "remote", addr)
}
