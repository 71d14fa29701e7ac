package api

import "sort"

// Routes returns the paths the API serves, sorted, for the OpenAPI test.
func Routes(a *API) []string {
	out := make([]string, 0, len(a.routes))
	for p := range a.routes {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}
