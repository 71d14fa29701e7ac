package channels

import (
	"encoding/json"
	"testing"
)

func TestSplitParams(t *testing.T) {
	since := `{"since":{"epoch":"e","offset":7}}`
	tests := []struct {
		name, in, rest string
		hearth         bool // a reserved key was found (with offset 7 when since is given)
		err            bool
	}{
		{name: "empty", in: ``, rest: `{}`},
		{name: "no key", in: `{"a":1}`, rest: `{"a":1}`},
		{name: "the text as a value", in: `{"nick":"$hearth"}`, rest: `{"nick":"$hearth"}`},
		{name: "the key nested", in: `{"a":{"$hearth":1}}`, rest: `{"a":{"$hearth":1}}`},
		{name: "the text inside a key", in: `{"my $hearth":1}`, rest: `{"my $hearth":1}`},
		{name: "not an object", in: `["$hearth"]`, rest: `["$hearth"]`},
		{name: "alone", in: `{"$hearth":` + since + `}`, rest: `{}`, hearth: true},
		{name: "first", in: `{ "$hearth" : ` + since + ` , "a":1}`, rest: `{  "a":1}`, hearth: true},
		{name: "last", in: `{"a":1,"$hearth":` + since + `}`, rest: `{"a":1}`, hearth: true},
		{name: "middle", in: `{"a":1,"$hearth":` + since + `,"b":"$hearth"}`, rest: `{"a":1,"b":"$hearth"}`, hearth: true},
		{name: "escaped", in: `{"\u0024hearth":` + since + `,"a":1}`, rest: `{"a":1}`, hearth: true},
		{name: "escaped letters", in: `{"a":1,"$h\u0065arth":` + since + `}`, rest: `{"a":1}`, hearth: true},
		{name: "twice, first", in: `{"$hearth":{},"$hearth":` + since + `,"a":[1]}`, rest: `{"a":[1]}`, hearth: true},
		{name: "an escape elsewhere", in: `{"a":"\u00e9"}`, rest: `{"a":"\u00e9"}`},
		{name: "bad reserved value", in: `{"$hearth":{"since":5}}`, err: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rest, hj, err := splitParams([]byte(tt.in))
			if tt.err {
				if err == nil {
					t.Fatalf("splitParams(%s) = %s, want an error", tt.in, rest)
				}
				return
			}
			if err != nil || string(rest) != tt.rest || (hj != nil) != tt.hearth {
				t.Fatalf("splitParams(%s) = %s, %+v, %v; want %s, reserved %v", tt.in, rest, hj, err, tt.rest, tt.hearth)
			}
			if !json.Valid(rest) {
				t.Fatalf("rest %s is not JSON", rest)
			}
			if hj != nil && hj.Since != nil && hj.Since.Offset != 7 {
				t.Fatalf("since %+v", hj.Since)
			}
		})
	}
}
