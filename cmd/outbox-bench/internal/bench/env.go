package bench

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-sql-driver/mysql"
	_ "github.com/jackc/pgx/v5/stdlib" // PostgreSQL driver "pgx" (--driver pgx)
	_ "github.com/lib/pq"              // PostgreSQL driver "postgres"
	_ "modernc.org/sqlite"             // SQLite driver

	"github.com/modkit-go/db/dialect"
	mysqld "github.com/modkit-go/db/dialect/mysql"
	"github.com/modkit-go/db/dialect/postgres"
	"github.com/modkit-go/db/dialect/sqlite"
	"github.com/modkit-go/db/migrations"
	"github.com/modkit-go/db/outbox"
)

// Default DSNs: the local servers (and, for SQLite, the directory that
// receives the temporary database file).
const (
	DefaultPostgresDSN = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable&binary_parameters=yes"
	DefaultMySQLDSN    = "root@tcp(127.0.0.1:3306)/test?parseTime=true&interpolateParams=true"
)

// DefaultDSN returns the DSN used when none is given: the local servers for
// PostgreSQL and MariaDB, the system temporary directory for SQLite.
func DefaultDSN(dialectName string) string {
	switch dialectName {
	case "postgres":
		return DefaultPostgresDSN
	case "mysql":
		return DefaultMySQLDSN
	case "sqlite":
		return os.TempDir()
	}
	return ""
}

// Env is one isolated, migrated database: a PostgreSQL schema, a MariaDB
// database or a SQLite file, plus the raw baseline table bench_raw. Close
// drops it.
type Env struct {
	Name   string // "postgres", "mysql" or "sqlite"
	DB     *sql.DB
	D      dialect.Dialect
	Where  string // schema, database or file
	Driver string // the database/sql driver name
	DSN    string // opens this isolated database (another process's pool)
	// Tx counts the write transactions of DB.
	Tx      *txCounter
	drop    func() error
	closeMu sync.Once
}

// SQLiteDSN is the DSN the project recommends for a SQLite file.
func SQLiteDSN(path string) string {
	return "file:" + path + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_txlock=immediate"
}

func randomName() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "bench_" + hex.EncodeToString(b[:])
}

// Open creates an isolated database for dialectName on the server (or in
// the directory, for SQLite) named by dsn, applies migrations.Up, creates
// the baseline table and warms up a pool of poolSize connections (SQLite:
// always one).
func Open(ctx context.Context, dialectName, dsn string, poolSize int) (*Env, error) {
	return OpenDriver(ctx, dialectName, "", dsn, poolSize)
}

// OpenDriver is Open with a database/sql driver other than the default
// for PostgreSQL: "pgx" (pgx's stdlib) instead of lib/pq ("" or "pq").
func OpenDriver(ctx context.Context, dialectName, driver, dsn string, poolSize int) (*Env, error) {
	if dsn == "" {
		dsn = DefaultDSN(dialectName)
	}
	var env *Env
	var err error
	switch dialectName {
	case "postgres":
		env, err = openPostgres(ctx, driver, dsn)
	case "mysql":
		env, err = openMySQL(ctx, dsn)
	case "sqlite":
		env, err = openSQLite(dsn)
	default:
		return nil, fmt.Errorf("unknown dialect %q (want postgres, mysql or sqlite)", dialectName)
	}
	if err != nil {
		return nil, err
	}
	if dialectName == "sqlite" {
		env.DB.SetMaxOpenConns(1)
		env.DB.SetMaxIdleConns(1)
	} else {
		env.DB.SetMaxOpenConns(poolSize)
		env.DB.SetMaxIdleConns(poolSize)
	}
	env.DB.SetConnMaxLifetime(0)
	env.DB.SetConnMaxIdleTime(0)
	// Every built-in dialect owns its schema (dialect.Schema).
	if err := migrations.Up(ctx, env.DB, env.D.(dialect.Schema)); err != nil {
		env.Close()
		return nil, err
	}
	if _, err := env.DB.ExecContext(ctx, env.rawDDL()); err != nil {
		env.Close()
		return nil, fmt.Errorf("create bench_raw: %w", err)
	}
	if dialectName != "sqlite" {
		if err := warmPool(ctx, env.DB, poolSize); err != nil {
			env.Close()
			return nil, err
		}
	}
	return env, nil
}

// warmPool opens n connections at once so that neither the outbox nor the
// baseline pays connection setup inside a measurement.
func warmPool(ctx context.Context, db *sql.DB, n int) error {
	conns := make([]*sql.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	for range n {
		c, err := db.Conn(ctx)
		if err != nil {
			return fmt.Errorf("warm pool: %w", err)
		}
		if err := c.PingContext(ctx); err != nil {
			return fmt.Errorf("warm pool: %w", err)
		}
		conns = append(conns, c)
	}
	return nil
}

func openPostgres(ctx context.Context, driver, dsn string) (*Env, error) {
	admin, err := sql.Open("postgres", dsn)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := admin.PingContext(pctx); err != nil {
		_ = admin.Close()
		return nil, fmt.Errorf("postgres unreachable (%s): %w", redact(dsn), err)
	}
	schema := randomName()
	if _, err := admin.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
		_ = admin.Close()
		return nil, fmt.Errorf("postgres: create schema: %w", err)
	}
	drop := func() error {
		_, err := admin.Exec("DROP SCHEMA " + schema + " CASCADE")
		return errors.Join(err, admin.Close())
	}
	u, err := withParam(dsn, "search_path", schema)
	if err != nil {
		_ = drop()
		return nil, err
	}
	if driver == "pgx" {
		u = PGXDSN(u)
	} else {
		driver = "postgres"
	}
	db, txc, err := openCounting(driver, u)
	if err != nil {
		_ = drop()
		return nil, err
	}
	return &Env{Name: "postgres", DB: db, D: postgres.New(), Where: "schema " + schema, drop: drop,
		Driver: driver, DSN: u, Tx: txc}, nil
}

// PGXDSN drops from a URL DSN the parameters only lib/pq knows (pgx would
// send them to the server as settings, which rejects them).
func PGXDSN(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil || u.Scheme == "" {
		return dsn
	}
	q := u.Query()
	q.Del("binary_parameters")
	u.RawQuery = q.Encode()
	return u.String()
}

// withParam adds a parameter to a URL or key=value DSN.
func withParam(dsn, k, v string) (string, error) {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return "", err
		}
		q := u.Query()
		q.Set(k, v)
		u.RawQuery = q.Encode()
		return u.String(), nil
	}
	return dsn + " " + k + "=" + v, nil
}

func openMySQL(ctx context.Context, dsn string) (*Env, error) {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("mysql: %w", err)
	}
	admin, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		return nil, fmt.Errorf("mysql: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := admin.PingContext(pctx); err != nil {
		_ = admin.Close()
		return nil, fmt.Errorf("mysql unreachable (%s): %w", redact(dsn), err)
	}
	name := randomName()
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		_ = admin.Close()
		return nil, fmt.Errorf("mysql: create database: %w", err)
	}
	drop := func() error {
		_, err := admin.Exec("DROP DATABASE " + name)
		return errors.Join(err, admin.Close())
	}
	cfg.DBName = name
	cfg.ParseTime = true
	cfg.InterpolateParams = true
	db, txc, err := openCounting("mysql", cfg.FormatDSN())
	if err != nil {
		_ = drop()
		return nil, err
	}
	return &Env{Name: "mysql", DB: db, D: mysqld.New(), Where: "database " + name, drop: drop,
		Driver: "mysql", DSN: cfg.FormatDSN(), Tx: txc}, nil
}

func openSQLite(dir string) (*Env, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	tmp, err := os.MkdirTemp(dir, "outbox-bench-")
	if err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	path := filepath.Join(tmp, "bench.db")
	db, txc, err := openCounting("sqlite", SQLiteDSN(path))
	if err != nil {
		_ = os.RemoveAll(tmp)
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	return &Env{Name: "sqlite", DB: db, Tx: txc, D: sqlite.New(), Where: "file " + path,
		drop: func() error { return os.RemoveAll(tmp) }}, nil
}

// Attach opens another pool on the isolated database that Open made (in
// this or another process; dsn is that Env's DSN). Closing the returned Env
// closes the pool and drops nothing. PostgreSQL and MariaDB only: SQLite is
// one writer process.
func Attach(ctx context.Context, dialectName, dsn string, poolSize int) (*Env, error) {
	var env *Env
	switch dialectName {
	case "postgres":
		env = &Env{Name: dialectName, D: postgres.New()}
	case "mysql":
		env = &Env{Name: dialectName, D: mysqld.New()}
	default:
		return nil, fmt.Errorf("attach: dialect %q is not supported (postgres or mysql)", dialectName)
	}
	db, txc, err := openCounting(dialectName, dsn)
	if err != nil {
		return nil, err
	}
	env.DB, env.Tx, env.DSN, env.Where = db, txc, dsn, "attached"
	env.drop = func() error { return nil }
	db.SetMaxOpenConns(poolSize)
	db.SetMaxIdleConns(poolSize)
	if err := warmPool(ctx, db, poolSize); err != nil {
		env.Close()
		return nil, err
	}
	return env, nil
}

// Close closes the pool and drops the isolated database.
func (e *Env) Close() {
	e.closeMu.Do(func() {
		_ = e.DB.Close()
		_ = e.drop()
	})
}

func redact(dsn string) string {
	if u, err := url.Parse(dsn); err == nil && u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "xxx")
			return u.String()
		}
	}
	if cfg, err := mysql.ParseDSN(dsn); err == nil && cfg.Passwd != "" {
		cfg.Passwd = "xxx"
		return cfg.FormatDSN()
	}
	return dsn
}

// ph returns the i-th (1-based) bind placeholder.
func (e *Env) ph(i int) string {
	if e.Name == "postgres" {
		return "$" + strconv.Itoa(i)
	}
	return "?"
}

func (e *Env) rawDDL() string {
	switch e.Name {
	case "postgres":
		return `CREATE TABLE bench_raw (id BIGSERIAL PRIMARY KEY, part INTEGER NOT NULL, payload BYTEA NOT NULL)`
	case "mysql":
		return `CREATE TABLE bench_raw (id BIGINT AUTO_INCREMENT PRIMARY KEY, part INT NOT NULL, payload BLOB NOT NULL) ENGINE=InnoDB`
	}
	return `CREATE TABLE bench_raw (id INTEGER PRIMARY KEY, part INTEGER NOT NULL, payload BLOB NOT NULL)`
}

// insertRawSQL is a plain multi-row INSERT of n rows into bench_raw.
func (e *Env) insertRawSQL(n int) string {
	var b strings.Builder
	b.WriteString("INSERT INTO bench_raw (part, payload) VALUES ")
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("(" + e.ph(2*i+1) + ", " + e.ph(2*i+2) + ")")
	}
	return b.String()
}

// claimRawSQL is the baseline queue read: the oldest 100 rows, skipping rows
// other workers hold. SQLite has no row locks; BEGIN IMMEDIATE (the DSN's
// _txlock) serialises the workers instead, the nearest equivalent.
func (e *Env) claimRawSQL(limit int) string {
	q := "SELECT id, part, payload FROM bench_raw ORDER BY id LIMIT " + strconv.Itoa(limit)
	if e.Name != "sqlite" {
		q += " FOR UPDATE SKIP LOCKED"
	}
	return q
}

func (e *Env) deleteRawSQL(n int) string {
	var b strings.Builder
	b.WriteString("DELETE FROM bench_raw WHERE id IN (")
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(e.ph(i + 1))
	}
	b.WriteString(")")
	return b.String()
}

// analyze refreshes planner statistics of the outbox and baseline tables,
// as autovacuum/persistent statistics would in a running system. SQLite has
// no automatic ANALYZE, so it is left alone there.
func (e *Env) analyze(ctx context.Context) error {
	var stmts []string
	switch e.Name {
	case "postgres":
		stmts = []string{"ANALYZE outbox_messages", "ANALYZE outbox_partitions", "ANALYZE outbox_processors", "ANALYZE bench_raw"}
	case "mysql":
		stmts = []string{"ANALYZE TABLE outbox_messages, outbox_partitions, outbox_processors, bench_raw"}
	}
	for _, s := range stmts {
		rows, err := e.DB.QueryContext(ctx, s)
		if err != nil {
			return fmt.Errorf("%s: %w", s, err)
		}
		for rows.Next() {
		}
		rows.Close()
	}
	return nil
}

// TableBytes reports the on-disk size of the outbox message table (with its
// indexes); for SQLite, the whole database file plus its WAL.
func (e *Env) TableBytes(ctx context.Context) (int64, error) {
	var n sql.NullInt64
	var err error
	switch e.Name {
	case "postgres":
		err = e.DB.QueryRowContext(ctx, "SELECT pg_total_relation_size('outbox_messages')").Scan(&n)
	case "mysql":
		// information_schema reflects InnoDB's (periodically refreshed)
		// statistics: an estimate.
		err = e.DB.QueryRowContext(ctx, `SELECT data_length + index_length FROM information_schema.tables
			WHERE table_schema = DATABASE() AND table_name = 'outbox_messages'`).Scan(&n)
	default:
		err = e.DB.QueryRowContext(ctx, "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()").Scan(&n)
	}
	return n.Int64, err
}

// openOutbox opens o's database and an Outbox over it with the bench
// queue declared; the caller closes env.
func openOutbox(ctx context.Context, o Options) (*Env, *outbox.Outbox, error) {
	env, err := OpenDriver(ctx, o.Dialect, o.Driver, o.DSN, o.poolSize())
	if err != nil {
		return nil, nil, err
	}
	ob, err := outbox.New(env.DB, env.D, o.config())
	if err == nil {
		err = ob.DeclareQueue(ctx, Queue, o.Partitions)
	}
	if err != nil {
		env.Close()
		return nil, nil, err
	}
	return env, ob, nil
}

// retryableOf reports the errors d classifies as transient conflicts.
func retryableOf(d dialect.Dialect) func(error) bool {
	return func(err error) bool { return d.ClassifyError(err) == dialect.ErrorRetryable }
}
