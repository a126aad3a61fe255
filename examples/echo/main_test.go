package main

import (
	"regexp"
	"strings"
	"testing"
)

func TestEchoInOneProcess(t *testing.T) {
	var out, errs strings.Builder
	if code := run([]string{"-count", "5", "-size", "100", "-tick", "1ms"}, &out, &errs); code != 0 {
		t.Fatalf("exit %d: %s", code, errs.String())
	}
	lines := regexp.MustCompile(`(?m)^seq=\d+ bytes=100 rtt=\S+$`).FindAllString(out.String(), -1)
	if len(lines) != 5 || !strings.Contains(out.String(), "5 requests: min ") {
		t.Errorf("output:\n%s", out.String())
	}
}

func TestEchoBadFlags(t *testing.T) {
	for _, args := range [][]string{{"-size", "4"}, {"-mode", "warp"}, {"-listen", ":1", "-connect", "x:1"}, {"-count", "x"}} {
		var out, errs strings.Builder
		if code := run(args, &out, &errs); code != 2 || errs.Len() == 0 {
			t.Errorf("%v: exit %d, stderr %q; want 2 and a message", args, code, errs.String())
		}
	}
}
