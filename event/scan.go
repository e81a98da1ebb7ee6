package event

import (
	"fmt"
	"strconv"

	"github.com/trailguard/trailguard/internal/jsonscan"
)

// scanner is the strict, single-pass JSON lexer Decode, PeekID, CheckECS
// and the normaliser read with, instead of encoding/json: ingest decodes
// every event a collector receives, and building maps of raw messages per
// object level cost tens of microseconds and hundreds of allocations per
// event. The methods here are what they read on top of its tokens.
type scanner struct{ jsonscan.Scanner }

// syntaxError is malformed JSON, as opposed to a field of the wrong type.
type syntaxError = jsonscan.SyntaxError

// newScanner returns a scanner at data[pos]: Skip bounded at
// MaxDecodeDepth, strings read as Decode has always read them.
func newScanner(data []byte, pos int) scanner {
	return scanner{jsonscan.Scanner{Data: data, Pos: pos, MaxDepth: MaxDecodeDepth}}
}

// int reads an integer value. JSON numbers with a fraction or exponent
// that are whole (1e3, 5.0) are accepted, as Elasticsearch does.
func (s *scanner) int() (int64, error) {
	num, err := s.Number()
	if err != nil {
		return 0, err
	}
	var n int64
	neg := false
	b := num
	if len(b) > 0 && b[0] == '-' {
		neg, b = true, b[1:]
	}
	simple := len(b) > 0 && len(b) <= 18
	for _, c := range b {
		if c < '0' || c > '9' {
			simple = false
			break
		}
		n = n*10 + int64(c-'0')
	}
	if simple {
		if neg {
			n = -n
		}
		return n, nil
	}
	f, err := strconv.ParseFloat(string(num), 64)
	if err != nil || f != float64(int64(f)) {
		if i, err2 := strconv.ParseInt(string(num), 10, 64); err2 == nil {
			return i, nil
		}
		return 0, fmt.Errorf("want an integer, got %s", num)
	}
	return int64(f), nil
}
