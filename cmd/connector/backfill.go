package main

import (
	"context"
	"errors"
	"io"
)

func runBackfill(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("backfill: not implemented yet")
}
