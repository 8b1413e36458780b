package postgres

import "testing"

func TestArrayLiterals(t *testing.T) {
	if got := int64Array(nil); got != "{}" {
		t.Errorf("int64Array(nil) = %s", got)
	}
	if got := int64Array([]int64{1, -2, 9223372036854775807}); got != "{1,-2,9223372036854775807}" {
		t.Errorf("int64Array = %s", got)
	}
	if got := textArray([]string{"orders", `a"b\c`, ""}); got != `{"orders","a\"b\\c",""}` {
		t.Errorf("textArray = %s", got)
	}
}
