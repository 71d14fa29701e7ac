// Package bench is the engine behind `hearth bench`: thousands of real
// WebSocket load clients over loopback, the scenarios that drive them
// against a Hearth server or its peers, and the reports they produce.
//
// # Pieces
//
//   - The load client (client.go over wsconn.go) speaks Phoenix V2 or
//     Engine.IO v4 / Socket.IO v5, joins topics, heartbeats, reconnects with
//     a [Policy] (hearth, phoenix, socketio), and records delivery latency,
//     loss, duplicates and reordering from the bench payload's per-topic
//     sequence numbers.
//   - A [Fleet] spreads client groups ([GroupSpec]) over worker processes
//     (this executable re-run as `hearth bench worker`, see [ServeWorker])
//     driven with JSON lines over stdin/stdout, and binds the clients to many
//     127.0.x.y source addresses.
//   - A [Target] starts and stops server processes (hearth serve, the
//     gorilla peer, the Socket.IO peer) and samples their CPU and memory
//     from /proc.
//   - [Scenario]s (storm, idle, fanout, throughput, cluster; one file each)
//     are registered with [Register] and run with [Run], which prints the
//     [Report]'s tables and writes its JSON and SVG ([RenderSVG]).
//
// docs/bench-tool.md is the user guide.
package bench
