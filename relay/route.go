package relay

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/modkit-go/db/outbox"
)

// Template parses a routing template: literal text with fields in braces,
// replaced per message.
//
//	{queue}         the queue's name
//	{partition}     the partition index
//	{key}           the message's key (a message without one is not routed)
//	{payload_type}  the payload type
//	{header:NAME}   the message header NAME (a message without it is not routed)
//
// For example "orders.{partition}" or "{queue}.{key}". A message the
// template cannot route gets an error wrapping ErrRoute (and is
// dead-lettered); a template that does not parse returns an error.
func Template(t string) (Route, error) {
	type part struct {
		lit   string
		field string // "" for a literal
		arg   string
	}
	var parts []part
	rest := t
	for rest != "" {
		i := strings.IndexAny(rest, "{}")
		if i < 0 {
			parts = append(parts, part{lit: rest})
			break
		}
		if rest[i] == '}' {
			return nil, fmt.Errorf("relay: template %q: unmatched '}'", t)
		}
		if i > 0 {
			parts = append(parts, part{lit: rest[:i]})
		}
		j := strings.IndexByte(rest[i:], '}')
		if j < 0 {
			return nil, fmt.Errorf("relay: template %q: unclosed '{'", t)
		}
		field := rest[i+1 : i+j]
		p := part{field: field}
		switch {
		case field == "queue" || field == "partition" || field == "key" || field == "payload_type":
		case strings.HasPrefix(field, "header:") && len(field) > len("header:"):
			p.field, p.arg = "header", field[len("header:"):]
		default:
			return nil, fmt.Errorf("relay: template %q: unknown field {%s}", t, field)
		}
		parts = append(parts, p)
		rest = rest[i+j+1:]
	}
	if len(parts) == 0 {
		return nil, fmt.Errorf("relay: empty template")
	}
	return func(d outbox.Delivery) (string, error) {
		var b strings.Builder
		for _, p := range parts {
			switch p.field {
			case "":
				b.WriteString(p.lit)
			case "queue":
				b.WriteString(d.Queue)
			case "partition":
				b.WriteString(strconv.Itoa(d.Partition))
			case "payload_type":
				b.WriteString(d.PayloadType)
			case "key":
				k := messageKey(d)
				if k == "" {
					return "", fmt.Errorf("%w: template %q needs a key and the message has none", ErrRoute, t)
				}
				b.WriteString(k)
			case "header":
				v, ok := d.Headers[p.arg]
				if !ok || v == "" {
					return "", fmt.Errorf("%w: template %q needs header %q and the message has none", ErrRoute, t, p.arg)
				}
				b.WriteString(v)
			}
		}
		return b.String(), nil
	}, nil
}
