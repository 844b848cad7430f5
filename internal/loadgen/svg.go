package loadgen

import (
	"fmt"
	"html"
	"io"
	"math"
	"strings"
)

// palette colours the scenarios' lines, in the report's order.
func palette() []string {
	return []string{"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"}
}

// panel is one chart of the plot: a value of Summary against concurrency,
// both axes logarithmic.
type panel struct {
	title string
	value func(Summary) float64
	x0    float64 // left edge of the plot area
}

const (
	plotW, plotH   = 380.0, 260.0
	plotTop        = 50.0
	svgW, svgH     = 980, 390
	legendX        = 892.0
	panelGap       = 430.0
	firstPanelLeft = 70.0
)

// WriteSVG draws the report's summary: throughput (2xx req/s) and p99
// latency against concurrency, one line per scenario, log-log. It is a
// small standalone SVG made with the standard library only.
func WriteSVG(w io.Writer, rep *Report) error {
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="11">`+"\n", svgW, svgH, svgW, svgH)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	title := fmt.Sprintf("coffer bench: %s, %s, %d cores, %.0fs per step, %d round(s), load average %.1f–%.1f",
		rep.Target, rep.Started.Format("2006-01-02 15:04 UTC"), rep.Cores, rep.StepSeconds, rep.Rounds, rep.LoadAverage[0], rep.LoadAverage[1])
	if s := rep.Labels["backend"]; s != "" {
		title += ", " + s
	}
	fmt.Fprintf(&b, `<text x="10" y="18" font-size="13">%s</text>`+"\n", html.EscapeString(title))
	panels := []panel{
		{title: "throughput, 2xx requests/s", value: func(s Summary) float64 { return s.ReqPerSec }, x0: firstPanelLeft},
		{title: "p99 latency, ms", value: func(s Summary) float64 { return s.P99ms }, x0: firstPanelLeft + panelGap},
	}
	for _, p := range panels {
		drawPanel(&b, rep, p)
	}
	for i, name := range rep.Scenarios {
		y := plotTop + 10 + float64(i)*18
		col := palette()[i%len(palette())]
		fmt.Fprintf(&b, `<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="%s" stroke-width="2"/><text x="%.0f" y="%.0f">%s</text>`+"\n",
			legendX, y, legendX+18, y, col, legendX+22, y+4, html.EscapeString(name))
	}
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// logRange returns decades around the positive values (at least one).
func logRange(vals []float64) (lo, hi float64) {
	lo, hi = math.Inf(1), math.Inf(-1)
	for _, v := range vals {
		if v > 0 {
			lo, hi = math.Min(lo, v), math.Max(hi, v)
		}
	}
	if math.IsInf(lo, 1) {
		return 1, 10
	}
	lo, hi = math.Pow(10, math.Floor(math.Log10(lo))), math.Pow(10, math.Ceil(math.Log10(hi)))
	if hi <= lo {
		hi = lo * 10
	}
	return lo, hi
}

func drawPanel(b *strings.Builder, rep *Report, p panel) {
	conc := rep.Concurrency
	var vals []float64
	for _, s := range rep.Summary {
		vals = append(vals, p.value(s))
	}
	ylo, yhi := logRange(vals)
	cmin, cmax := 1.0, 2.0
	if len(conc) > 0 {
		cmin, cmax = float64(conc[0]), float64(conc[0])
		for _, c := range conc {
			cmin, cmax = math.Min(cmin, float64(c)), math.Max(cmax, float64(c))
		}
		if cmax == cmin {
			cmax = cmin * 2
		}
	}
	x := func(c float64) float64 {
		return p.x0 + (math.Log2(c)-math.Log2(cmin))/(math.Log2(cmax)-math.Log2(cmin))*plotW
	}
	y := func(v float64) float64 {
		return plotTop + plotH - (math.Log10(v)-math.Log10(ylo))/(math.Log10(yhi)-math.Log10(ylo))*plotH
	}
	fmt.Fprintf(b, `<text x="%.0f" y="%.0f" font-size="12">%s</text>`+"\n", p.x0, plotTop-12, html.EscapeString(p.title))
	fmt.Fprintf(b, `<rect x="%.0f" y="%.0f" width="%.0f" height="%.0f" fill="none" stroke="#444"/>`+"\n", p.x0, plotTop, plotW, plotH)
	for d := ylo; d <= yhi*1.0001; d *= 10 {
		for _, m := range []float64{1, 2, 5} {
			v := d * m
			if v > yhi*1.0001 {
				break
			}
			yy := y(v)
			fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#ddd"/>`, p.x0, yy, p.x0+plotW, yy)
			fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="end">%s</text>`+"\n", p.x0-4, yy+4, tick(v))
		}
	}
	for _, c := range conc {
		xx := x(float64(c))
		fmt.Fprintf(b, `<line x1="%.1f" y1="%.0f" x2="%.1f" y2="%.0f" stroke="#eee"/>`, xx, plotTop, xx, plotTop+plotH)
		fmt.Fprintf(b, `<text x="%.1f" y="%.0f" text-anchor="middle">%d</text>`+"\n", xx, plotTop+plotH+14, c)
	}
	fmt.Fprintf(b, `<text x="%.0f" y="%.0f" text-anchor="middle">connections</text>`+"\n", p.x0+plotW/2, plotTop+plotH+30)
	for i, name := range rep.Scenarios {
		col := palette()[i%len(palette())]
		var pts []string
		for _, s := range rep.Summary {
			if s.Scenario == name && p.value(s) > 0 {
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(float64(s.Concurrency)), y(p.value(s))))
			}
		}
		if len(pts) == 0 {
			continue
		}
		fmt.Fprintf(b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`+"\n", col, strings.Join(pts, " "))
		for _, pt := range pts {
			xy := strings.Split(pt, ",")
			fmt.Fprintf(b, `<circle cx="%s" cy="%s" r="2.5" fill="%s"/>`, xy[0], xy[1], col)
		}
		b.WriteString("\n")
	}
}

// tick formats an axis value: 0.1, 2, 50, 1k, 20k, 1M.
func tick(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%gM", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%gk", v/1e3)
	}
	return fmt.Sprintf("%g", v)
}
