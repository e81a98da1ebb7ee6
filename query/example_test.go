package query_test

import (
	"fmt"

	"github.com/trailguard/trailguard/query"
)

func Example() {
	q, err := query.Parse(`user.name:alice AND event.outcome:failure and not source.ip:10.0.0.0/8`)
	if err != nil {
		fmt.Println(err)
		return
	}
	doc, _ := query.Flatten([]byte(`{"event":{"action":"authn_login_fail","outcome":"failure"},"source":{"ip":"203.0.113.66"},"user":{"name":"alice"}}`))
	fmt.Println(q)
	fmt.Println(q.Match(doc))

	_, err = query.Parse(`user.name:alice and http.response.status_code:`)
	fmt.Println(err)
	// Output:
	// user.name:alice and event.outcome:failure and not source.ip:10.0.0.0/8
	// true
	// query: position 46: expected a value after ':'
}
