// Package api is Hearth's HTTP server API and live dashboard: what a
// backend in any language (or an operator with curl) needs to drive a
// Hearth cluster without writing Go.
//
// # Calls
//
// [New] returns an [API], an [http.Handler] to mount at "/api"; JSON in and
// out, authorized by "Authorization: Bearer KEY" with the keys of
// [Options.Keys] (compared in constant time). With no key the API is off:
// every call answers 404 "api_disabled", never an open API.
//
//	POST /api/publish          {"topic","event","payload"} -> {"topic","epoch","offset"}
//	POST /api/publish/batch    {"messages":[...]}          -> {"results":[...]}
//	GET  /api/presence?topic=                              -> {"topic","presences"}
//	GET  /api/presence/count?topic=                        -> {"topic","keys","metas"}
//	GET  /api/history?topic=&since=&limit=                 -> {"epoch","top","complete","messages"}
//	POST /api/disconnect       {"user"}                    closes the user's sockets (4503)
//	POST /api/unsubscribe      {"user","topic"}            closes the user's channel (phx_close)
//	GET  /api/topics                                       topics with subscribers, per node
//	GET  /api/nodes                                        the cluster's nodes
//	GET  /api/sockets?user= or ?topic=                     sockets, per node
//	GET  /api/openapi.json                                 the OpenAPI 3.1 document
//
// A publish is what [channels.Node.Broadcast] does (stored in the topic's
// history, so recovering clients get it) and answers with the message's
// stream position. Errors are {"error":{"code","message"}}: a stable code
// for programs and a message for people; bad input gets a 4xx, a failing
// broker 503, never a 500. Bodies are bounded ([Options.MaxBodyBytes]), and
// so is each key's request rate ([Options.Rate]).
//
// # Cluster
//
// A call on any node acts on the whole cluster through the node's control
// messages (the broker's PublishControl, as presence and
// [channels.Node.Disconnect] use): each node heartbeats its state
// ([NodeInfo]) every [Options.HeartbeatInterval], and calls that need
// every node's view (/topics, /sockets) ask every node and wait for the
// answers up to [Options.AskTimeout], naming the nodes that did not answer.
//
// # Dashboard
//
// [API.Dashboard] serves a page (mount it at "/dashboard") that asks for an
// API key, keeps it in the tab's sessionStorage and joins the
// [DashboardTopic] channel with it: nodes and their readiness, sockets and
// joins per node, messages per second and publish latency plotted over the
// last five minutes, top topics, sheds, slow-consumer closes, the
// PostgreSQL listener's state; a search for a user or a topic lists its
// sockets and presence, with a button that disconnects the user. Nothing is
// sampled more often than the heartbeat while no dashboard is open, and
// nothing of it runs on the broadcast path.
package api
