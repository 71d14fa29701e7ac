// Package cluster is the production-topology harness of Hearth's chaos
// tests and of `hearth bench chaos`: a real load balancer (HAProxy or
// nginx, from the Debian packages) in front of `hearth serve` nodes, with
// its configuration rendered from the templates that docs/operations.md
// quotes, and its view of the backends read back while a scenario runs.
//
// # Balancers
//
// [StartHAProxy] and [StartNginx] write a configuration for the given
// backends into a temporary directory and run the balancer in the
// foreground on a free loopback port. [Balancer.Backends] reads HAProxy's
// backend states from its stats socket (nginx open source has no such
// view: it reports the servers as unknown). [Render] returns the
// configuration text itself, which is what the documentation shows.
package cluster
