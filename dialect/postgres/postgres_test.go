package postgres

import "testing"

func TestArrayLiterals(t *testing.T) {
	if got := textArray(nil); got != "{}" {
		t.Errorf("textArray(nil) = %s", got)
	}
	if got := textArray([]string{"orders", `a"b\c`, ""}); got != `{"orders","a\"b\\c",""}` {
		t.Errorf("textArray = %s", got)
	}
}
