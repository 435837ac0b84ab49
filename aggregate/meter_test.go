package aggregate

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
)

var propertiesCorpus = []string{
	`{}`, `{"tokens":12,"model":"m-large","ok":true,"no":false,"n":null}`, `{"x":1.50e3,"y":-0}`,
	`{"a":1,"a":2}`, `{"s":"\u00e9\n\"q\""}`, "{\"s\":\"\xff\"}", `{"o":{"a":1}}`, `{"l":[1,2]}`,
	`{"a":1} {"b":2}`, `{"a":1} x`, `[1]`, `"s"`, `{"a":`, `{"big":123456789012345678901234567890.123}`,
	` { "a" : 1 , "b" : "x" } `, "{\"a\":\t1\r\n}", `{"a":01}`, `{"a":1.}`, `{"a":.5}`, `{"a":1e}`, `{"a":1e+}`,
	`{"a":-}`, `{"a":+1}`, `{"a":1E-7}`, `{"a":-0.0e+0}`, `{"a":tru}`, `{"a":truex}`, `{"a":nul}`, `{"a":1,}`,
	`{,"a":1}`, `{"a" 1}`, `{"a":1 "b":2}`, `{"a":"x}`, "{\"a\":\"\x01\"}", `{"é":"ü"}`, `{"":""}`, `{}x`, ``,
	`{"a":1}}`, `{"a":NaN}`, `{"a":Infinity}`,
}

// decodeFlat must give what encoding/json gives, or defer to it; and it
// must not defer what it is for.
func TestDecodeFlatMatchesEncodingJSON(t *testing.T) {
	for _, raw := range propertiesCorpus {
		checkDecodeFlat(t, []byte(raw))
	}
	for _, raw := range []string{`{}`, `{"tokens":12,"model":"m-large","ok":true,"no":false,"n":null}`,
		`{"x":1.50e3,"y":-0}`, ` { "a" : 1 , "b" : "x" } `, `{"a":1E-7}`, `{"é":"ü"}`} {
		if _, ok := decodeFlat([]byte(raw)); !ok {
			t.Errorf("%s: not decoded by the fast path", raw)
		}
	}
}

func FuzzDecodeFlat(f *testing.F) {
	for _, raw := range propertiesCorpus {
		f.Add([]byte(raw))
	}
	f.Fuzz(func(t *testing.T, raw []byte) { checkDecodeFlat(t, raw) })
}

func checkDecodeFlat(t *testing.T, raw []byte) {
	t.Helper()
	got, ok := decodeFlat(raw)
	if !ok {
		return
	}
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var want properties
	if err := d.Decode(&want); err != nil {
		t.Fatalf("%q: fast path decoded %v, encoding/json failed: %v", raw, got, err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%q: fast path %#v, encoding/json %#v", raw, got, want)
	}
}

// BenchmarkDecodeFlat decodes the properties of an `abacus bench` event.
func BenchmarkDecodeFlat(b *testing.B) {
	raw := []byte(`{"tokens":4211,"model":"m-large","region":"eu-west-1","latency_ms":812,"request_id":"0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9"}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := decodeFlat(raw); !ok {
			b.Fatal("not flat")
		}
	}
}
