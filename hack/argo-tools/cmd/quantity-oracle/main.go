// Command quantity-oracle prints, for each quantity text read from stdin (one per
// line, backslash-escaped as quantity-vectors.py writes them), what Go's json.Marshal writes for
// a resource.Quantity after json.Unmarshal of the JSON-quoted text: the
// marshalled string without quotes, "ERR" when unmarshalling fails, or
// "PANIC" when the apimachinery code panics. With QTY_ERRMSG set it prints
// "ERR:" and Go's error message instead of "ERR".
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/api/resource"
)

// unescape decodes \\, \t, \n, \r, \xHH and \u{HEX}, the escapes the vector
// generator uses for characters a TSV line cannot hold.
func unescape(s string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' {
			b.WriteByte(s[i])
			continue
		}
		i++
		if i >= len(s) {
			return "", fmt.Errorf("dangling backslash in %q", s)
		}
		switch s[i] {
		case '\\':
			b.WriteByte('\\')
		case 't':
			b.WriteByte('\t')
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 'x':
			v, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
			if err != nil {
				return "", err
			}
			b.WriteByte(byte(v))
			i += 2
		case 'u':
			end := strings.IndexByte(s[i:], '}')
			if end < 0 || s[i+1] != '{' {
				return "", fmt.Errorf("bad \\u in %q", s)
			}
			v, err := strconv.ParseUint(s[i+2:i+end], 16, 32)
			if err != nil {
				return "", err
			}
			b.WriteRune(rune(v))
			i += end
		default:
			return "", fmt.Errorf("bad escape in %q", s)
		}
	}
	return b.String(), nil
}

// roundTrip unmarshals raw JSON into a Quantity and marshals it back.
func roundTrip(raw []byte) (out string) {
	defer func() {
		if r := recover(); r != nil {
			out = "PANIC"
		}
	}()
	var q resource.Quantity
	if err := json.Unmarshal(raw, &q); err != nil {
		if os.Getenv("QTY_ERRMSG") != "" {
			return "ERR:" + err.Error()
		}
		return "ERR"
	}
	b, err := json.Marshal(q)
	if err != nil {
		return "MARSHALERR"
	}
	s, err := strconv.Unquote(string(b))
	if err != nil {
		return "BADJSON:" + string(b)
	}
	return s
}

func main() {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<26)
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	for in.Scan() {
		text, err := unescape(in.Text())
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		quoted, err := json.Marshal(text)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		got := roundTrip(quoted)
		// A text that is itself a JSON number may also be sent bare; Go must
		// treat both forms alike, since the canonical form takes one text.
		var n json.Number
		if text != "" && (text[0] == '-' || (text[0] >= '0' && text[0] <= '9')) && json.Unmarshal([]byte(text), &n) == nil && string(n) == text {
			if bare := roundTrip([]byte(text)); bare != got {
				fmt.Fprintf(os.Stderr, "bare/quoted differ for %q: %q vs %q\n", text, bare, got)
			}
		}
		fmt.Fprintln(out, got)
	}
	if err := in.Err(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
}
