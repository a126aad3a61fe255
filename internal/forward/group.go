package forward

import (
	"context"
	"os"
	"sync"
	"time"
)

// Group runs and counts the connections a program is forwarding, so that
// shutdown can wait for them to finish.
type Group struct {
	wg   sync.WaitGroup
	mu   sync.Mutex
	n    int
	idle chan struct{} // closed when n drops to 0; nil until someone waits
}

// Go runs fn in a new goroutine counted by the group.
func (g *Group) Go(fn func()) {
	g.add(1)
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		defer g.add(-1)
		fn()
	}()
}

func (g *Group) add(d int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.n += d
	if g.n == 0 && g.idle != nil {
		close(g.idle)
		g.idle = nil
	}
}

// Len returns how many goroutines of the group are running.
func (g *Group) Len() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.n
}

// WaitIdle waits until no goroutine of the group is running or ctx ends;
// it reports whether the group is idle.
func (g *Group) WaitIdle(ctx context.Context) bool {
	g.mu.Lock()
	if g.n == 0 {
		g.mu.Unlock()
		return true
	}
	if g.idle == nil {
		g.idle = make(chan struct{})
	}
	idle := g.idle
	g.mu.Unlock()
	select {
	case <-idle:
		return true
	case <-ctx.Done():
		return false
	}
}

// Wait waits for every goroutine of the group to return.
func (g *Group) Wait() { g.wg.Wait() }

// Grace returns a context that bounds one step of a graceful shutdown: it
// ends after d, when another signal arrives on sigs, or when cancel is
// called.
func Grace(sigs <-chan os.Signal, d time.Duration) (ctx context.Context, cancel context.CancelFunc) {
	ctx, cancel = context.WithTimeout(context.Background(), d)
	go func() {
		select {
		case <-sigs:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}
