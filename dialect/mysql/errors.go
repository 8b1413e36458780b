package mysql

import (
	"errors"

	"github.com/go-sql-driver/mysql"
)

// MySQL/MariaDB error numbers that mean "try again".
const (
	erLockWaitTimeout = 1205 // ER_LOCK_WAIT_TIMEOUT
	erLockDeadlock    = 1213 // ER_LOCK_DEADLOCK
	erCheckRead       = 1020 // ER_CHECKREAD: record changed since last read (MariaDB snapshot isolation)
	erXARBDeadlock    = 1614 // ER_XA_RBDEADLOCK
)

// retryable: deadlocks (1213), lock wait timeouts (1205), "record has
// changed since last read" (1020) and any error with SQLSTATE 40001
// (serialization failure).
func retryable(err error) bool {
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		switch me.Number {
		case erLockWaitTimeout, erLockDeadlock, erCheckRead, erXARBDeadlock:
			return true
		}
		return string(me.SQLState[:]) == "40001"
	}
	// Other drivers (or wrappers) that expose the number as a method.
	var n interface{ Number() uint16 }
	if errors.As(err, &n) {
		switch n.Number() {
		case erLockWaitTimeout, erLockDeadlock, erCheckRead, erXARBDeadlock:
			return true
		}
	}
	return false
}
