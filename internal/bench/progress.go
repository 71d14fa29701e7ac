package bench

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// progress draws a one-line status on stderr while a phase runs: a bar
// redrawn in place on a terminal, a plain line every few seconds otherwise.
type progress struct {
	w     io.Writer
	tty   bool
	label string
	start time.Time
	fleet *Fleet
	line  func(map[string]GroupStats) (done, want int64, extra string)

	stop chan struct{}
	wg   sync.WaitGroup
}

func isTTY(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// startProgress polls the fleet and draws until stopped. w nil draws nothing.
func startProgress(w io.Writer, label string, fleet *Fleet, line func(map[string]GroupStats) (int64, int64, string)) *progress {
	p := &progress{w: w, tty: isTTY(w), label: label, start: time.Now(), fleet: fleet, line: line, stop: make(chan struct{})}
	if w == nil {
		return p
	}
	p.wg.Add(1)
	go p.loop()
	return p
}

func (p *progress) loop() {
	defer p.wg.Done()
	every := 300 * time.Millisecond
	if !p.tty {
		every = 5 * time.Second
	}
	tk := time.NewTicker(every)
	defer tk.Stop()
	for {
		select {
		case <-p.stop:
			p.draw(true)
			return
		case <-tk.C:
			p.draw(false)
		}
	}
}

func (p *progress) draw(final bool) {
	st, err := p.fleet.Stats()
	if err != nil {
		return
	}
	done, want, extra := p.line(st)
	el := time.Since(p.start).Truncate(100 * time.Millisecond)
	var b strings.Builder
	fmt.Fprintf(&b, "%-28s ", p.label)
	if want > 0 {
		const width = 28
		frac := min(float64(done)/float64(want), 1)
		n := int(frac * width)
		b.WriteString("[" + strings.Repeat("#", n) + strings.Repeat(".", width-n) + "] ")
		fmt.Fprintf(&b, "%d/%d ", done, want)
	}
	fmt.Fprintf(&b, "%s %6s", extra, el)
	if p.tty {
		fmt.Fprint(p.w, "\r\x1b[K"+b.String())
		if final {
			fmt.Fprintln(p.w)
		}
	} else {
		fmt.Fprintln(p.w, b.String())
	}
}

func (p *progress) done() {
	if p.w == nil {
		return
	}
	close(p.stop)
	p.wg.Wait()
}
