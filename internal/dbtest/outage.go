package dbtest

import (
	"context"
	"net"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Outage user and database names in the URLs below, so a test can check
// that no answer repeats them.
const (
	OutageUser     = "outage_user"
	OutageDatabase = "outage_database"
)

// Refusing returns a connection URL to a port on 127.0.0.1 where nothing
// listens: every connection attempt is refused, as when the server is
// down. The second result is the port, which no answer should name.
func Refusing(tb testing.TB) (url, port string) {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		tb.Fatal(err)
	}
	return outageURL(addr), portOf(addr)
}

// HangingUp returns a connection URL to a listener that accepts every
// connection and closes it at once, as a server crashing or a proxy
// without a backend does; it stops when the test ends. The second result
// is its port.
func HangingUp(tb testing.TB) (url, port string) {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.Close()
		}
	}()
	return outageURL(ln.Addr().String()), portOf(ln.Addr().String())
}

func outageURL(addr string) string {
	return "postgres://" + OutageUser + "@" + addr + "/" + OutageDatabase + "?sslmode=disable&connect_timeout=5"
}

func portOf(addr string) string {
	_, port, _ := net.SplitHostPort(addr)
	return port
}

// OpenPool returns a pool on url, closed when the test ends. It creates
// and drops nothing: it is for URLs such as Refusing's, or a database the
// test drops itself.
func OpenPool(tb testing.TB, url string) *pgxpool.Pool {
	tb.Helper()
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(pool.Close)
	return pool
}
