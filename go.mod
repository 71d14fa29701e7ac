module github.com/hearth-rt/hearth

go 1.24

require (
	github.com/go-chi/chi/v5 v5.5.0 // indirect
	github.com/gobwas/httphead v0.1.0 // indirect
	github.com/gobwas/ws v1.5.0 // indirect
	go.uber.org/goleak v1.3.0 // indirect
)
