package channels

import (
	"sort"
	"strings"
)

// route is a registered pattern and its handler.
type route struct {
	pattern   string
	prefix    string // pattern without the trailing "*", for splat patterns
	splat     bool
	handler   Handler
	intercept map[string]struct{}
}

// router maps topics to handlers. Exact patterns win over splat patterns;
// among splat patterns the longest prefix wins. It is built before serving
// and read-only afterwards.
type router struct {
	exact map[string]*route
	splat []*route // sorted by prefix length, longest first
}

func (r *router) add(pattern string, h Handler) {
	if pattern == "" {
		panic("channels: empty topic pattern")
	}
	if h.Join == nil {
		panic("channels: handler for " + pattern + " has no Join")
	}
	if i := strings.IndexByte(pattern, '*'); i >= 0 && i != len(pattern)-1 {
		panic("channels: topic pattern " + pattern + ": '*' may only stand last")
	}
	if len(h.Intercept) > 0 && h.Out == nil {
		panic("channels: handler for " + pattern + " intercepts events but has no Out")
	}
	h = withEvents(pattern, h)
	rt := &route{pattern: pattern, handler: h}
	if len(h.Intercept) > 0 {
		rt.intercept = make(map[string]struct{}, len(h.Intercept))
		for _, ev := range h.Intercept {
			rt.intercept[ev] = struct{}{}
		}
	}
	if strings.HasSuffix(pattern, "*") {
		rt.splat, rt.prefix = true, pattern[:len(pattern)-1]
		for _, o := range r.splat {
			if o.pattern == pattern {
				panic("channels: topic pattern " + pattern + " registered twice")
			}
		}
		r.splat = append(r.splat, rt)
		sort.SliceStable(r.splat, func(i, j int) bool { return len(r.splat[i].prefix) > len(r.splat[j].prefix) })
		return
	}
	if r.exact == nil {
		r.exact = make(map[string]*route)
	}
	if _, dup := r.exact[pattern]; dup {
		panic("channels: topic pattern " + pattern + " registered twice")
	}
	r.exact[pattern] = rt
}

// match returns the route for topic, or nil.
func (r *router) match(topic string) *route {
	if rt, ok := r.exact[topic]; ok {
		return rt
	}
	for _, rt := range r.splat {
		if strings.HasPrefix(topic, rt.prefix) {
			return rt
		}
	}
	return nil
}

// Match reports the pattern a topic is routed to, and whether there is one.
// Exact patterns win over splat patterns ("room:*"); among splat patterns
// the longest prefix wins.
func (n *Node) Match(topic string) (pattern string, ok bool) {
	rt := n.router.match(topic)
	if rt == nil {
		return "", false
	}
	return rt.pattern, true
}
