package main

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
)

// TestRateExamples runs "abacus rate" on every example of docs/pricing.md
// and checks the printed total.
func TestRateExamples(t *testing.T) {
	dir := filepath.Join("..", "..", "docs", "examples", "prices")
	tests := []struct {
		file string
		args []string
		want string // "total CUR amount" row of the table
	}{
		{"flat.json", nil, "total USD 49.00"},
		{"flat.json", []string{"--period-fraction", "10/31"}, "total USD 15.81"},
		{"per_unit.json", []string{"--quantity", "12345"}, "total USD 22.69"},
		{"per_unit.json", []string{"--quantity", "900"}, "total USD 10.00"},
		{"per_unit_package.json", []string{"--quantity", "2000.5"}, "total USD 15.00"},
		{"graduated.json", []string{"--quantity", "20"}, "total USD 127.50"},
		{"volume.json", []string{"--quantity", "20"}, "total USD 120.00"},
		{"package.json", []string{"--quantity", "101"}, "total EUR 9.00"},
		{"percentage.json", []string{"--amount", "100.00", "--events", "1"}, "total USD 3.20"},
		{"percentage_min_max.json", []string{"--amount", "1000", "--event-amounts", "10,40,950"}, "total USD 6.00"},
		{"graduated_percentage.json", []string{"--amount", "1050"}, "total USD 511.00"},
		{"discounted.json", []string{"--quantity", "40000000"}, "total USD 447.50"},
		{"volume_jpy.json", []string{"--quantity", "11"}, "total JPY 10995"},
		{"graduated_kwd.json", []string{"--quantity", "1234.5"}, "total KWD 13.157"},
	}
	for _, tt := range tests {
		t.Run(tt.file+strings.Join(tt.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			args := append([]string{"--price", filepath.Join(dir, tt.file)}, tt.args...)
			if err := runRate(args, &stdout, &stderr); err != nil {
				t.Fatalf("runRate: %v\n%s", err, stderr.String())
			}
			if got := strings.Join(strings.Fields(lastLine(stdout.String())), " "); got != tt.want {
				t.Errorf("last line %q, want %q\n%s", got, tt.want, stdout.String())
			}
			// --json prints the same total.
			stdout.Reset()
			if err := runRate(append(args, "--json"), &stdout, &stderr); err != nil {
				t.Fatal(err)
			}
			var res struct{ Total string }
			if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
				t.Fatal(err)
			}
			if f := strings.Fields(tt.want); res.Total != f[len(f)-1] {
				t.Errorf("json total %q, want %q", res.Total, f[len(f)-1])
			}
		})
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return lines[len(lines)-1]
}

func TestRateErrors(t *testing.T) {
	dir := filepath.Join("..", "..", "docs", "examples", "prices")
	tests := []struct {
		args []string
		want string
	}{
		{nil, "--price is required"},
		{[]string{"--price", "nope.json"}, "no such file"},
		{[]string{"--price", filepath.Join(dir, "graduated.json"), "--quantity", "abc"}, `--quantity: "abc" is not a decimal number`},
		{[]string{"--price", filepath.Join(dir, "graduated.json"), "--quantity", "-3"}, "must not be negative"},
		{[]string{"--price", filepath.Join(dir, "flat.json"), "--period-fraction", "32/31"}, "numerator <= denominator"},
		{[]string{"--price", filepath.Join(dir, "percentage_min_max.json"), "--amount", "5", "--events", "2"}, "one amount per event"},
		{[]string{"--bogus"}, "flag provided but not defined"},
	}
	for _, tt := range tests {
		var stdout, stderr bytes.Buffer
		err := runRate(tt.args, &stdout, &stderr)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("runRate(%q) = %v, want error containing %q", tt.args, err, tt.want)
		}
	}
}
