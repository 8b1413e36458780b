// Package console is a web page for the people who watch an outbox: its
// queues (backlog, oldest message, delivery rate, retrying, leased and
// blocked partitions, dead letters by status) refreshed every few seconds,
// a chart of backlog and deliveries per second per queue, each queue's
// partitions that are not idle, and the dead letters with the filters and
// paging of [outbox.Outbox.DeadLetterPage], a detail view of each, and the
// operator's actions: requeue or discard dead letters (one, selected, or
// all that a filter selects) and retry or skip the head of a blocked
// partition, each confirmed on a page that says how many rows it will
// touch, and answered with how many it did. The same data is served as
// JSON under {prefix}/api/, in the shapes of outboxctl's --json output.
//
// A Console is an [net/http.Handler]; mount it under any path prefix:
//
//	c, err := console.New(ob, console.Options{Prefix: "/ops/outbox"})
//	...
//	mux.Handle("/ops/outbox/", c)
//	_ = c.Start(ctx) // samples the status for the chart; Stop(ctx) at shutdown
//
// outboxctl serve runs it over a database given by --dialect and --dsn.
//
// # Pages and assets
//
// Pages are rendered on the server with html/template. A small embedded
// script (no build step, no asset from another site) refreshes tables in
// place and draws the charts as SVG; without it every page still works,
// refreshed by hand. Confirmations are pages, not script dialogs.
//
// # Security
//
// Everything a page shows from the database (reasons, payload types,
// headers, payloads) was written by whoever sent or rejected a message, so
// it is treated as hostile: html/template escapes it for its context,
// payloads are shown as text only when they are valid UTF-8 without
// control characters and as a hex dump otherwise, no database string
// becomes a link, and every response carries a Content-Security-Policy
// that allows scripts, styles and connections from the console's own
// origin only (no inline script, no inline style, no frames).
//
// When Options.Token is set, every request must carry it, as
// "Authorization: Bearer TOKEN" or as the password of HTTP Basic
// authentication (any user name; browsers ask for it); it is compared in
// constant time. Without a token, the console answers only requests whose
// Host is a loopback address, "localhost" or one of Options.Hosts, so that
// a web site cannot reach a console on the operator's machine through a
// DNS name that resolves to 127.0.0.1.
//
// Actions are POST requests only. Each must carry the console's
// anti-forgery token (the form field "csrf", or the X-CSRF-Token header;
// GET {prefix}/api/csrf returns it to API clients) and must not come from
// another origin (the Origin and Sec-Fetch-Site headers, see
// [net/http.CrossOriginProtection]); otherwise the answer is 403 and
// nothing changes. With Options.ReadOnly every action is refused with 403
// and no page offers one.
package console
