package pgtest

// Find finds or starts the test server the same way URL does, for programs
// that are not Go tests (see cmd withpg). stop shuts down a private cluster
// it started and is a no-op otherwise.
func Find() (url string, stop func(), err error) {
	u, c, err := find()
	if err != nil {
		return "", nil, err
	}
	if c == nil {
		return u, func() {}, nil
	}
	shared.once.Do(func() { shared.url, shared.cluster = u, c })
	return u, Shutdown, nil
}
