package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"
	"unicode/utf8"
)

// Report is one run of a scenario: what is printed, written as JSON and drawn.
type Report struct {
	Scenario string    `json:"scenario"`
	Targets  []string  `json:"targets"`
	Smoke    bool      `json:"smoke"`
	Started  time.Time `json:"started"`
	Seconds  float64   `json:"seconds"`
	Machine  Machine   `json:"machine"`
	Command  []string  `json:"command,omitempty"`
	Params   any       `json:"params"`
	// Results holds the scenario's figures (its own structure).
	Results any      `json:"results"`
	Tables  []*Table `json:"tables"`
	Charts  []*Chart `json:"charts"`
	Notes   []string `json:"notes,omitempty"`
	// Files are the paths written by Write.
	Files []string `json:"-"`
}

// Machine describes where the run happened.
type Machine struct {
	CPUs      int    `json:"cpus"`
	GoVersion string `json:"go"`
	OS        string `json:"os"`
	Kernel    string `json:"kernel,omitempty"`
	MemTotal  string `json:"mem_total,omitempty"`
	CPUModel  string `json:"cpu_model,omitempty"`
}

func thisMachine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), GoVersion: runtime.Version(), OS: runtime.GOOS + "/" + runtime.GOARCH}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		line, _, _ := strings.Cut(string(b), "\n")
		m.MemTotal = strings.Join(strings.Fields(strings.TrimPrefix(line, "MemTotal:")), " ")
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "model name"); ok {
				m.CPUModel = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	return m
}

// Table is a titled text table.
type Table struct {
	Title  string     `json:"title"`
	Header []string   `json:"header"`
	Rows   [][]string `json:"rows"`
}

// Add appends a row.
func (t *Table) Add(cells ...string) { t.Rows = append(t.Rows, cells) }

// Fprint writes the table aligned in columns.
func (t *Table) Fprint(w io.Writer) {
	widths := make([]int, len(t.Header))
	for i, h := range t.Header {
		widths[i] = utf8.RuneCountInString(h)
	}
	for _, r := range t.Rows {
		for i, c := range r {
			if i < len(widths) {
				widths[i] = max(widths[i], utf8.RuneCountInString(c))
			}
		}
	}
	line := func(cells []string) {
		var b strings.Builder
		for i, c := range cells {
			if i >= len(widths) {
				break
			}
			pad := widths[i] - utf8.RuneCountInString(c)
			if i == 0 {
				b.WriteString(c + strings.Repeat(" ", pad))
			} else {
				b.WriteString("  " + strings.Repeat(" ", pad) + c)
			}
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
	fmt.Fprintln(w, "\n"+t.Title)
	line(t.Header)
	seps := make([]string, len(widths))
	for i, n := range widths {
		seps[i] = strings.Repeat("-", n)
	}
	line(seps)
	for _, r := range t.Rows {
		line(r)
	}
}

// Print writes every table and the notes.
func (r *Report) Print(w io.Writer) {
	for _, t := range r.Tables {
		t.Fprint(w)
	}
	for _, n := range r.Notes {
		fmt.Fprintln(w, "note:", n)
	}
	for _, f := range r.Files {
		fmt.Fprintln(w, "wrote", f)
	}
}

// Write saves the report as JSON and its charts as SVG in dir, named
// <scenario>-<targets>-<time>.
func (r *Report) Write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	base := fmt.Sprintf("%s-%s-%s", r.Scenario, strings.Join(r.Targets, "+"), r.Started.Format("20060102-150405"))
	if r.Smoke {
		base += "-smoke"
	}
	js := filepath.Join(dir, base+".json")
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("bench: encode report: %w", err)
	}
	if err := os.WriteFile(js, append(b, '\n'), 0o644); err != nil {
		return err
	}
	r.Files = append(r.Files, js)
	if len(r.Charts) > 0 {
		svg := filepath.Join(dir, base+".svg")
		title := fmt.Sprintf("hearth bench %s: %s (%s)", r.Scenario, strings.Join(r.Targets, ", "), r.Started.Format("2006-01-02 15:04"))
		if err := os.WriteFile(svg, RenderSVG(title, r.Charts), 0o644); err != nil {
			return err
		}
		r.Files = append(r.Files, svg)
	}
	return nil
}

// Formatting helpers for tables.

func fms(v float64) string {
	if math.IsNaN(v) || v < 0 {
		return "-"
	}
	switch {
	case v >= 10000:
		return fmt.Sprintf("%.1fs", v/1000)
	case v >= 100:
		return fmt.Sprintf("%.0fms", v)
	case v >= 10:
		return fmt.Sprintf("%.1fms", v)
	default:
		return fmt.Sprintf("%.2fms", v)
	}
}

func fnum(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "-"
	}
	a := math.Abs(v)
	switch {
	case a >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case a >= 1e4:
		return fmt.Sprintf("%.1fk", v/1e3)
	case a >= 100 || v == math.Trunc(v):
		return fmt.Sprintf("%.0f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

func fint(v int64) string { return fmt.Sprintf("%d", v) }

func fkib(bytes float64) string {
	if math.IsNaN(bytes) {
		return "-"
	}
	return fmt.Sprintf("%.1f KiB", bytes/1024)
}

func fmib(mib float64) string {
	if math.IsNaN(mib) {
		return "-"
	}
	return fmt.Sprintf("%.1f MiB", mib)
}

func fratio(a, b float64) string {
	if b == 0 || math.IsNaN(a) || math.IsNaN(b) {
		return "-"
	}
	return fmt.Sprintf("%.2fx", a/b)
}

// Float is a float64 that encodes NaN and infinities as JSON null (a
// figure that could not be measured).
type Float float64

// MarshalJSON implements json.Marshaler.
func (f Float) MarshalJSON() ([]byte, error) {
	v := float64(f)
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return []byte("null"), nil
	}
	return json.Marshal(v)
}
