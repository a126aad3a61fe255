package forward

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParse feeds arbitrary command lines and JSON config files to both
// programs' parser: it must never panic, every error must be one line, and a
// configuration it accepts must turn into SDK options.
func FuzzParse(f *testing.F) {
	f.Add("-l :12948 -r vps:29900 -mode fast2 -nocomp", `{"key":"k","crypt":"aes-128-gcm","datashard":10}`)
	f.Add("--crypt=salsa20 --ds 0 --ps 0 --smuxver 1", `{"tcp":false,"closewait":5}`)
	f.Add("-mode manual -nodelay 1 -interval 20 -resend 2 -nc 1", `{"mtu":1400,"sndwnd":1024}`)
	f.Add("-conn 3 -autoexpire 60", `{"unknown":1}`)
	f.Add("-key", `[`)
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, args, file string) {
		path := filepath.Join(dir, "c.json")
		if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
			t.Fatal(err)
		}
		argv := append(strings.Fields(args), "-c", path)
		for _, role := range []Role{Client, Server} {
			cfg, err := parse(role, argv, func(string) string { return "" })
			if errors.Is(err, flag.ErrHelp) {
				continue
			}
			if err != nil {
				if strings.Contains(err.Error(), "\n") {
					t.Fatalf("error is not one line: %q", err)
				}
				continue
			}
			_ = cfg.Options(nil)
		}
	})
}
