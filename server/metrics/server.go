package metrics

import "github.com/hearth-rt/hearth/server"

var (
	mConnections = gauge("connections", "Connections open now: WebSocket connections and long-poll sessions.")
	mLongPoll    = gauge("longpoll_sessions", "Long-poll sessions open now (counted in hearth_connections too).")
	mAccepted    = counter("connections_accepted_total", "Upgrades admission control let through.")
	mUpgrades    = counter("upgrades_total", "WebSocket upgrades completed, including those made only to send a close frame.")
	mRefusedHTTP = counter("connects_refused_http_total", "Connects the connect hook refused, answered with an HTTP status before the upgrade.")
	mCooledDown  = counter("reconnects_cooled_down_total", "Reconnects refused before the upgrade because the server had just closed the same client for what it did.")
	mShed        = counter("connections_shed_total", "Upgrade requests refused by admission control or shutdown, by reason.", "reason")
	mSlow        = counter("slow_consumer_closes_total", "Connections closed (4008) because their outgoing queue overflowed.")
	mRateLimited = counter("rate_limit_closes_total", "Connections closed (4029) for sending too many messages.")
	mReady       = gauge("ready", "1 while the server accepts new connections, 0 once it drains.")
	mDraining    = gauge("draining", "1 while a drain is closing connections.")
	mDrainTotal  = gauge("drain_connections", "Connections the current drain set out to close.")
	mDrainClosed = gauge("drain_closed_connections", "Connections the current drain has closed so far.")
)

var serverMetrics = []metric{mConnections, mLongPoll, mAccepted, mUpgrades, mRefusedHTTP, mCooledDown, mShed, mSlow, mRateLimited, mReady, mDraining, mDrainTotal, mDrainClosed}

func collectServer(s *server.Server, emit func(metric, float64, ...string)) {
	st := s.Stats()
	emit(mConnections, float64(st.Connections))
	emit(mLongPoll, float64(st.LongPollSessions))
	emit(mAccepted, float64(st.Accepted))
	emit(mUpgrades, float64(st.Upgrades))
	emit(mRefusedHTTP, float64(st.RefusedHTTP))
	emit(mCooledDown, float64(st.CooledDown))
	emit(mShed, float64(st.Shed.NodeRate), "node_rate")
	emit(mShed, float64(st.Shed.IPRate), "ip_rate")
	emit(mShed, float64(st.Shed.MaxConnections), "max_connections")
	emit(mShed, float64(st.Shed.ShuttingDown), "shutting_down")
	emit(mSlow, float64(st.SlowConsumerCloses))
	emit(mRateLimited, float64(st.RateLimitCloses))
	emit(mReady, boolf(st.Ready))
	emit(mDraining, boolf(st.Draining))
	emit(mDrainTotal, float64(st.DrainTotal))
	emit(mDrainClosed, float64(st.DrainClosed))
}

func boolf(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
