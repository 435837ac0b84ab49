package main

import (
	"fmt"
	"io"
)

// runRate is implemented by the rating work (issue 3).
func runRate(args []string, stdout, stderr io.Writer) error {
	return fmt.Errorf("rate: not implemented yet")
}
