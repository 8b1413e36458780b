package mysql_test

import (
	"testing"

	"github.com/modkit-go/db/internal/testdb"
)

func TestMain(m *testing.M) { testdb.MainSkipUnless(m, testdb.MySQLEnv, "MariaDB/MySQL") }
