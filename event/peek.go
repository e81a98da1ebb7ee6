package event

// PeekID returns the event.id of an encoded event, nested
// ({"event":{"id":…}}) or dotted ({"event.id":…}), without decoding the
// rest: shippers derive idempotency keys from it and the ledger searches by
// it. ok is false when the document is not a JSON object, is malformed
// before the id is found, or has no string event.id.
func PeekID(doc []byte) (id string, ok bool) {
	s := newScanner(doc, 0)
	if s.Peek() != '{' {
		return "", false
	}
	s.Pos++
	if s.Peek() == '}' {
		return "", false
	}
	for {
		k, err := s.key()
		if err != nil || s.Expect(':') != nil {
			return "", false
		}
		switch string(k) {
		case "event.id":
			if s.Peek() == '"' {
				v, err := s.Str()
				return v, err == nil
			}
		case "event":
			if s.Peek() == '{' {
				if v, found, err := s.member("id"); err != nil {
					return "", false
				} else if found {
					return v, true
				}
				break
			}
			fallthrough
		default:
			if _, err := s.Skip(1); err != nil {
				return "", false
			}
		}
		switch s.Peek() {
		case ',':
			s.Pos++
		default:
			return "", false
		}
	}
}

// member reads an object and returns the string value of its member name,
// consuming the whole object when the member is absent or not a string.
func (s *scanner) member(name string) (string, bool, error) {
	s.Pos++ // '{'
	if s.Peek() == '}' {
		s.Pos++
		return "", false, nil
	}
	for {
		k, err := s.key()
		if err != nil {
			return "", false, err
		}
		if err := s.Expect(':'); err != nil {
			return "", false, err
		}
		if string(k) == name && s.Peek() == '"' {
			v, err := s.Str()
			return v, err == nil, err
		}
		if _, err := s.Skip(2); err != nil {
			return "", false, err
		}
		switch s.Peek() {
		case ',':
			s.Pos++
		case '}':
			s.Pos++
			return "", false, nil
		default:
			return "", false, s.Fail("want ',' or '}'")
		}
	}
}
