package opsql

import (
	"time"

	"github.com/jmoiron/sqlx"
)

// Postgres is PostgreSQL's flavor. now() is the transaction's start, so
// every row one statement or transaction writes carries the same time.
var Postgres = Flavor{
	Bind: sqlx.DOLLAR, Now: "now()", NowPlus: "now() + CAST(? AS BIGINT) * INTERVAL '1 microsecond'",
	ForUpdate: " FOR UPDATE", SkipLocked: " FOR UPDATE SKIP LOCKED",
}

// MySQL is MySQL's and MariaDB's flavor (NOW(6), InnoDB's row locks). Its
// statements run at READ COMMITTED: the core's transactions use the
// dialect's TxOptions, and so does the claim's.
//
// The replay claim reads in primary-key order (FORCE INDEX): through the
// (status, …) indexes InnoDB would lock every claimable row before the
// sort and LIMIT, and keep them locked, so a concurrent claimer would skip
// rows nobody took and come back empty-handed. In id order it locks, and
// keeps, only the rows it returns.
//
// Times given by the application (a listing's failed-at bounds) are
// compared with values NOW(6) wrote: the session's time zone must be the
// DSN's loc (UTC unless set) for them to mean the same instant. Times the
// store read itself (paging cursors, claim deadlines) round-trip exactly
// either way.
var MySQL = Flavor{
	Bind: sqlx.QUESTION, Now: "NOW(6)", NowPlus: "NOW(6) + INTERVAL ? MICROSECOND",
	ForUpdate: " FOR UPDATE", SkipLocked: " FOR UPDATE SKIP LOCKED", ClaimHint: " FORCE INDEX (PRIMARY)",
}

// sqliteNow is SQLite's clock in microseconds since the epoch, the unit of
// the SQLite schema's times.
const sqliteNow = "CAST(unixepoch('subsec') * 1000000 AS INTEGER)"

// SQLite is SQLite's flavor: times are microseconds, and there are no row
// locks; every status change is a guarded UPDATE, which the single writer
// makes atomic.
var SQLite = Flavor{
	Bind: sqlx.QUESTION, Now: sqliteNow, NowPlus: "(" + sqliteNow + " + ?)",
	TimeArg: func(t time.Time) any { return t.UnixMicro() },
}
