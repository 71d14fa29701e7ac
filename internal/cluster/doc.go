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
//
// # PostgreSQL
//
// [StartPrimary] and [StartStandby] make a private primary and a streaming
// standby (initdb, pg_basebackup -R; run as user postgres when the harness
// is root), synchronous or not; [Postgres.Crash] and [Postgres.Promote]
// make the failover, and [FailoverURL] is the multi-host URL the nodes use.
//
// # Partitions
//
// [NewNetns] creates a network namespace joined to the host by a veth pair
// on a /30 of its own; a node runs inside it through [Netns.Wrap], reaches
// the host's Postgres through a [Forwarder], and [Netns.Cut] drops a port's
// packets both ways with iptables (no reset) until [Netns.Heal].
package cluster
