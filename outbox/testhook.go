package outbox

import (
	"database/sql"

	"github.com/modkit-go/db/outbox/internal/testhook"
)

func init() {
	testhook.OnEnqueued = func(ob any, fn func(tx *sql.Tx, msgs any)) {
		ob.(*Outbox).onEnqueued = func(tx *sql.Tx, msgs []Message) { fn(tx, msgs) }
	}
}
