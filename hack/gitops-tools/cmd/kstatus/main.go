// Command kstatus prints the kstatus of a Kubernetes object read as JSON from stdin, computed by
// the library Flux, `kubectl wait`-style tools and cli-utils use
// (sigs.k8s.io/cli-utils/pkg/kstatus/status), as one JSON line: {"status": …, "message": …}.
// Aviary's e2e tests feed it live Rollouts to prove what those tools will see.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

func main() {
	if err := run(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "kstatus:", err)
		os.Exit(1)
	}
}

func run(in io.Reader, out io.Writer) error {
	raw, err := io.ReadAll(in)
	if err != nil {
		return err
	}
	// As a client decodes it: whole numbers as int64.
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(raw); err != nil {
		return fmt.Errorf("decode object: %w", err)
	}
	res, err := status.Compute(u)
	if err != nil {
		return fmt.Errorf("compute status: %w", err)
	}
	return json.NewEncoder(out).Encode(map[string]string{
		"status":  res.Status.String(),
		"message": res.Message,
	})
}
