// Package testhook lets package outboxtest observe an Outbox without
// adding a public API for it. Package outbox sets the variables when it is
// initialised.
package testhook

import "database/sql"

// OnEnqueued makes ob, an *outbox.Outbox, call fn after each Enqueue and
// EnqueueBatch that wrote its messages, with the caller's transaction and
// the messages (a []outbox.Message). Call it before ob is used.
var OnEnqueued func(ob any, fn func(tx *sql.Tx, msgs any))
