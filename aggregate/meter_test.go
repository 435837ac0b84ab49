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
}

// decodeFlat must give what encoding/json gives, or defer to it.
func TestDecodeFlatMatchesEncodingJSON(t *testing.T) {
	for _, raw := range propertiesCorpus {
		checkDecodeFlat(t, []byte(raw))
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
