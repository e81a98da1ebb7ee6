//go:build !linux

package ledger

import "errors"

func mapFile(string) ([]byte, func(), error) { return nil, nil, errors.New("not supported") }
