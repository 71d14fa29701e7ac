package bench

import (
	"fmt"
	"html"
	"math"
	"strings"
)

// Chart is one panel of a run's plot: lines (time series, CDFs) or grouped
// bars. The tool draws its SVG itself.
type Chart struct {
	Title  string   `json:"title"`
	XLabel string   `json:"x_label"`
	YLabel string   `json:"y_label"`
	Lines  []Series `json:"lines,omitempty"`
	// LogX draws the x axis in powers of ten (latency CDFs).
	LogX bool `json:"log_x,omitempty"`
	// Categories and Bars make a grouped bar chart: one group per category,
	// one bar per series.
	Categories []string    `json:"categories,omitempty"`
	Bars       []BarSeries `json:"bars,omitempty"`
	// Marks are vertical lines with labels (events).
	Marks []Mark `json:"marks,omitempty"`
}

// Series is a named polyline.
type Series struct {
	Name   string       `json:"name"`
	Points [][2]float64 `json:"points"`
}

// BarSeries is one bar per category.
type BarSeries struct {
	Name   string  `json:"name"`
	Values []Float `json:"values"`
}

// Mark is a labelled vertical line at X.
type Mark struct {
	X     float64 `json:"x"`
	Label string  `json:"label"`
}

var palette = []string{"#d1495b", "#00798c", "#edae49", "#30638e", "#66a182", "#8d6a9f", "#2e4057", "#c97b63"}

const (
	panelW, panelH           = 820, 320
	padL, padR, padT, padB   = 70, 20, 40, 50
	plotW                    = panelW - padL - padR
	plotH                    = panelH - padT - padB
	fontStyle                = `font-family="Helvetica,Arial,sans-serif"`
	maxLinePointsBeforeThin  = 4000
	legendRowH               = 16
	defaultNoData            = "no data"
	gridColor, axisColor     = "#e4e4e4", "#444"
	markColor, textColor     = "#888", "#222"
	backgroundColor          = "#ffffff"
	barGroupFill             = 0.8
	titleSize, labelSize     = 15, 12
	tickSize, legendFontSize = 11, 11
)

// RenderSVG draws the charts stacked vertically in one SVG document.
func RenderSVG(title string, charts []*Chart) []byte {
	var b strings.Builder
	h := 40 + panelH*len(charts)
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d">`+"\n", panelW, h, panelW, h)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="%s"/>`+"\n", backgroundColor)
	fmt.Fprintf(&b, `<text x="%d" y="26" %s font-size="17" font-weight="bold" fill="%s">%s</text>`+"\n", padL, fontStyle, textColor, esc(title))
	for i, c := range charts {
		fmt.Fprintf(&b, `<g transform="translate(0,%d)">`+"\n", 40+i*panelH)
		c.draw(&b)
		b.WriteString("</g>\n")
	}
	b.WriteString("</svg>\n")
	return []byte(b.String())
}

func esc(s string) string { return html.EscapeString(s) }

func (c *Chart) draw(b *strings.Builder) {
	fmt.Fprintf(b, `<text x="%d" y="22" %s font-size="%d" font-weight="bold" fill="%s">%s</text>`+"\n", padL, fontStyle, titleSize, textColor, esc(c.Title))
	fmt.Fprintf(b, `<text x="%d" y="%d" %s font-size="%d" fill="%s" text-anchor="middle">%s</text>`+"\n", padL+plotW/2, panelH-10, fontStyle, labelSize, textColor, esc(c.XLabel))
	fmt.Fprintf(b, `<text x="16" y="%d" %s font-size="%d" fill="%s" text-anchor="middle" transform="rotate(-90 16 %d)">%s</text>`+"\n", padT+plotH/2, fontStyle, labelSize, textColor, padT+plotH/2, esc(c.YLabel))
	if len(c.Bars) > 0 {
		c.drawBars(b)
		return
	}
	c.drawLines(b)
}

// niceTicks returns about n round tick values covering [lo, hi].
func niceTicks(lo, hi float64, n int) []float64 {
	if hi <= lo {
		hi = lo + 1
	}
	raw := (hi - lo) / float64(n)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := mag
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	var out []float64
	for v := math.Ceil(lo/step) * step; v <= hi+step*1e-9; v += step {
		out = append(out, v)
	}
	return out
}

func fmtTick(v float64) string {
	a := math.Abs(v)
	switch {
	case a == 0:
		return "0"
	case a >= 1e6:
		return trimZeros(fmt.Sprintf("%.1f", v/1e6)) + "M"
	case a >= 1e4:
		return trimZeros(fmt.Sprintf("%.1f", v/1e3)) + "k"
	case a >= 1:
		return trimZeros(fmt.Sprintf("%.2f", v))
	default:
		return trimZeros(fmt.Sprintf("%.3f", v))
	}
}

func trimZeros(s string) string {
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s
}

func (c *Chart) drawLines(b *strings.Builder) {
	xmin, xmax := math.Inf(1), math.Inf(-1)
	ymax := 0.0
	for _, s := range c.Lines {
		for _, p := range s.Points {
			if math.IsNaN(p[0]) || math.IsNaN(p[1]) || (c.LogX && p[0] <= 0) {
				continue
			}
			xmin, xmax = min(xmin, p[0]), max(xmax, p[0])
			ymax = max(ymax, p[1])
		}
	}
	for _, m := range c.Marks {
		xmin, xmax = min(xmin, m.X), max(xmax, m.X)
	}
	if math.IsInf(xmin, 0) {
		fmt.Fprintf(b, `<text x="%d" y="%d" %s font-size="13" fill="%s">%s</text>`+"\n", padL+plotW/2-20, padT+plotH/2, fontStyle, markColor, defaultNoData)
		return
	}
	if ymax == 0 {
		ymax = 1
	}
	ymax *= 1.05
	var fx func(float64) float64
	var xticks []float64
	if c.LogX {
		lo, hi := math.Floor(math.Log10(xmin)), math.Ceil(math.Log10(xmax))
		if hi == lo {
			hi++
		}
		fx = func(x float64) float64 { return padL + (math.Log10(x)-lo)/(hi-lo)*plotW }
		for e := lo; e <= hi; e++ {
			xticks = append(xticks, math.Pow(10, e))
		}
	} else {
		if xmax == xmin {
			xmax = xmin + 1
		}
		xticks = niceTicks(xmin, xmax, 8)
		fx = func(x float64) float64 { return padL + (x-xmin)/(xmax-xmin)*plotW }
	}
	fy := func(y float64) float64 { return padT + plotH - y/ymax*plotH }
	for _, t := range niceTicks(0, ymax, 5) {
		if t > ymax {
			continue
		}
		y := fy(t)
		fmt.Fprintf(b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="%s"/>`+"\n", padL, y, padL+plotW, y, gridColor)
		fmt.Fprintf(b, `<text x="%d" y="%.1f" %s font-size="%d" fill="%s" text-anchor="end">%s</text>`+"\n", padL-6, y+4, fontStyle, tickSize, textColor, fmtTick(t))
	}
	for _, t := range xticks {
		x := fx(t)
		if x < padL-0.5 || x > padL+plotW+0.5 {
			continue
		}
		fmt.Fprintf(b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="%s"/>`+"\n", x, padT, x, padT+plotH, gridColor)
		fmt.Fprintf(b, `<text x="%.1f" y="%d" %s font-size="%d" fill="%s" text-anchor="middle">%s</text>`+"\n", x, padT+plotH+16, fontStyle, tickSize, textColor, fmtTick(t))
	}
	fmt.Fprintf(b, `<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="%s"/>`+"\n", padL, padT, plotW, plotH, axisColor)
	for _, m := range c.Marks {
		x := fx(m.X)
		fmt.Fprintf(b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="%s" stroke-dasharray="4 3"/>`+"\n", x, padT, x, padT+plotH, markColor)
		fmt.Fprintf(b, `<text x="%.1f" y="%d" %s font-size="%d" fill="%s">%s</text>`+"\n", x+3, padT+12, fontStyle, tickSize, markColor, esc(m.Label))
	}
	for i, s := range c.Lines {
		color := palette[i%len(palette)]
		pts := s.Points
		stride := 1
		if len(pts) > maxLinePointsBeforeThin {
			stride = len(pts)/maxLinePointsBeforeThin + 1
		}
		var d strings.Builder
		n := 0
		for j := 0; j < len(pts); j += stride {
			p := pts[j]
			if math.IsNaN(p[0]) || math.IsNaN(p[1]) || (c.LogX && p[0] <= 0) {
				continue
			}
			cmd := "L"
			if n == 0 {
				cmd = "M"
			}
			fmt.Fprintf(&d, "%s%.1f %.1f ", cmd, fx(p[0]), fy(p[1]))
			n++
		}
		if n == 1 {
			p := pts[0]
			fmt.Fprintf(b, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>`+"\n", fx(p[0]), fy(p[1]), color)
		}
		fmt.Fprintf(b, `<path d="%s" fill="none" stroke="%s" stroke-width="1.8"/>`+"\n", strings.TrimSpace(d.String()), color)
		c.legend(b, i, s.Name, color)
	}
}

func (c *Chart) legend(b *strings.Builder, i int, name, color string) {
	x, y := padL+plotW-180, padT+14+i*legendRowH
	fmt.Fprintf(b, `<rect x="%d" y="%d" width="12" height="4" fill="%s"/>`+"\n", x, y-5, color)
	fmt.Fprintf(b, `<text x="%d" y="%d" %s font-size="%d" fill="%s">%s</text>`+"\n", x+18, y, fontStyle, legendFontSize, textColor, esc(name))
}

func (c *Chart) drawBars(b *strings.Builder) {
	ymax := 0.0
	for _, s := range c.Bars {
		for _, v := range s.Values {
			if !math.IsNaN(float64(v)) {
				ymax = max(ymax, float64(v))
			}
		}
	}
	if ymax == 0 {
		ymax = 1
	}
	ymax *= 1.3 // room for the legend
	fy := func(y float64) float64 { return padT + plotH - y/ymax*plotH }
	for _, t := range niceTicks(0, ymax, 5) {
		if t > ymax {
			continue
		}
		y := fy(t)
		fmt.Fprintf(b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="%s"/>`+"\n", padL, y, padL+plotW, y, gridColor)
		fmt.Fprintf(b, `<text x="%d" y="%.1f" %s font-size="%d" fill="%s" text-anchor="end">%s</text>`+"\n", padL-6, y+4, fontStyle, tickSize, textColor, fmtTick(t))
	}
	fmt.Fprintf(b, `<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="%s"/>`+"\n", padL, padT, plotW, plotH, axisColor)
	nc := max(len(c.Categories), 1)
	groupW := float64(plotW) / float64(nc)
	barW := groupW * barGroupFill / float64(len(c.Bars))
	for ci, cat := range c.Categories {
		gx := padL + float64(ci)*groupW + groupW*(1-barGroupFill)/2
		for si, s := range c.Bars {
			if ci >= len(s.Values) || math.IsNaN(float64(s.Values[ci])) {
				continue
			}
			v := float64(s.Values[ci])
			x := gx + float64(si)*barW
			fmt.Fprintf(b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"/>`+"\n", x, fy(v), barW-2, fy(0)-fy(v), palette[si%len(palette)])
			fmt.Fprintf(b, `<text x="%.1f" y="%.1f" %s font-size="10" fill="%s" text-anchor="middle">%s</text>`+"\n", x+barW/2-1, fy(v)-3, fontStyle, textColor, fmtTick(v))
		}
		fmt.Fprintf(b, `<text x="%.1f" y="%d" %s font-size="%d" fill="%s" text-anchor="middle">%s</text>`+"\n", padL+float64(ci)*groupW+groupW/2, padT+plotH+16, fontStyle, tickSize, textColor, esc(cat))
	}
	for si, s := range c.Bars {
		c.legend(b, si, s.Name, palette[si%len(palette)])
	}
}
