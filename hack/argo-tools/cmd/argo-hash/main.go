// argo-hash is Argo Rollouts' own pod-template hash, for the tests that check Aviary computes the
// same one (tests/argo_hash.rs), and the generator of the Go JSON layout Aviary hashes by.
//
//	argo-hash          reads lines of {"template": PodTemplateSpec, "collisionCount": n|null}
//	                   and writes, per line, {"hash": "...", "json": "<json.Marshal of it>"}
//	argo-hash layout   writes src/plan/go_json/layout.rs: every struct reachable from
//	                   PodTemplateSpec, its JSON fields in Go's order, with omitempty and kind
//
// The hash is built against k8s.io/api v0.34, as Argo Rollouts v1.9.1 is (its go.mod).
package main

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"os"
	"reflect"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/rand"
)

// computePodTemplateHash is Argo Rollouts v1.9.1's utils/hash.ComputePodTemplateHash, verbatim
// but for its name (Apache-2.0, github.com/argoproj/argo-rollouts).
func computePodTemplateHash(template *corev1.PodTemplateSpec, collisionCount *int32) string {
	podTemplateSpecHasher := fnv.New32a()
	stepsBytes, err := json.Marshal(template)
	if err != nil {
		panic(err)
	}
	_, err = podTemplateSpecHasher.Write(stepsBytes)
	if err != nil {
		panic(err)
	}
	if collisionCount != nil {
		collisionCountBytes := make([]byte, 8)
		binary.LittleEndian.PutUint32(collisionCountBytes, uint32(*collisionCount))
		_, err = podTemplateSpecHasher.Write(collisionCountBytes)
		if err != nil {
			panic(err)
		}
	}
	return rand.SafeEncodeString(fmt.Sprint(podTemplateSpecHasher.Sum32()))
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "layout" {
		layout()
		return
	}
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<24)
	out := json.NewEncoder(os.Stdout)
	for in.Scan() {
		var line struct {
			Template       corev1.PodTemplateSpec `json:"template"`
			CollisionCount *int32                 `json:"collisionCount"`
		}
		if err := json.Unmarshal(in.Bytes(), &line); err != nil {
			fmt.Fprintln(os.Stderr, "argo-hash:", err)
			os.Exit(1)
		}
		b, _ := json.Marshal(&line.Template)
		_ = out.Encode(map[string]string{
			"hash": computePodTemplateHash(&line.Template, line.CollisionCount),
			"json": string(b),
		})
	}
	if err := in.Err(); err != nil {
		fmt.Fprintln(os.Stderr, "argo-hash:", err)
		os.Exit(1)
	}
}

// ---- layout ---------------------------------------------------------------------------------

var (
	quantity    = reflect.TypeOf(resource.Quantity{})
	intOrString = reflect.TypeOf(intstr.IntOrString{})
	timeType    = reflect.TypeOf(metav1.Time{})
	microTime   = reflect.TypeOf(metav1.MicroTime{})
	fieldsV1    = reflect.TypeOf(metav1.FieldsV1{})
	marshaler   = reflect.TypeOf((*json.Marshaler)(nil)).Elem()
)

type field struct {
	json      string
	omitEmpty bool
	omitZero  bool
	ty        string
}

// structs maps a struct's Rust-side name to its fields; filled by visit.
var structs = map[string][]field{}

func structName(t reflect.Type) string {
	pkg := strings.TrimPrefix(t.PkgPath(), "k8s.io/api/")
	pkg = strings.TrimPrefix(pkg, "k8s.io/apimachinery/pkg/apis/")
	return pkg + "." + t.Name()
}

// ty renders the Rust `Ty` for a Go type, visiting the structs it reaches.
func ty(t reflect.Type) string {
	switch t {
	case quantity:
		return "Ty::Quantity"
	case intOrString:
		return "Ty::IntOrString"
	case timeType, microTime:
		return "Ty::Time"
	case fieldsV1:
		return "Ty::Raw"
	}
	if t.Kind() != reflect.Pointer && (t.Implements(marshaler) || reflect.PointerTo(t).Implements(marshaler)) {
		panic("a JSON marshaler the layout does not know: " + t.String())
	}
	switch t.Kind() {
	case reflect.String:
		return "Ty::Str"
	case reflect.Bool:
		return "Ty::Bool"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "Ty::Int"
	case reflect.Pointer:
		return "Ty::Ptr(&" + ty(t.Elem()) + ")"
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			return "Ty::Bytes"
		}
		return "Ty::Slice(&" + ty(t.Elem()) + ")"
	case reflect.Map:
		if t.Key().Kind() != reflect.String {
			panic("a map not keyed by strings: " + t.String())
		}
		return "Ty::Map(&" + ty(t.Elem()) + ")"
	case reflect.Struct:
		visit(t)
		return fmt.Sprintf("Ty::Struct(%q)", structName(t))
	}
	panic("a kind the layout does not know: " + t.String())
}

func visit(t reflect.Type) {
	name := structName(t)
	if _, done := structs[name]; done {
		return
	}
	structs[name] = nil // visiting: a recursive type refers to itself by name
	structs[name] = fields(t)
}

// fields lists a struct's JSON fields as encoding/json does: exported, "-" skipped, untagged
// embedded structs (and `json:",inline"` ones) promoted in place.
func fields(t reflect.Type) []field {
	var out []field
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct {
			out = append(out, fields(f.Type)...)
			continue
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		omit, zero := false, false
		for _, o := range strings.Split(opts, ",") {
			switch o {
			case "omitempty":
				omit = true
			case "omitzero":
				// Zero as Go's reflect sees it, or by an IsZero method: the Rust side knows
				// metav1.Time's (the only one of these so far), and refuses others.
				zero = true
				if _, ok := f.Type.MethodByName("IsZero"); ok && f.Type != timeType {
					panic(fmt.Sprintf("omitzero on %s.%s, whose IsZero the layout does not know", t, f.Name))
				}
			case "", "inline":
			default:
				panic(fmt.Sprintf("a JSON option the layout does not know: %s.%s %q", t, f.Name, o))
			}
		}
		out = append(out, field{json: name, omitEmpty: omit, omitZero: zero, ty: ty(f.Type)})
	}
	seen := map[string]bool{}
	for _, f := range out {
		if seen[f.json] {
			panic(fmt.Sprintf("%s: two fields named %q", t, f.json))
		}
		seen[f.json] = true
	}
	return out
}

func layout() {
	root := ty(reflect.TypeOf(corev1.PodTemplateSpec{}))
	names := make([]string, 0, len(structs))
	for n := range structs {
		names = append(names, n)
	}
	sort.Strings(names)
	w := bufio.NewWriter(os.Stdout)
	defer w.Flush()
	fmt.Fprintln(w, "// Generated by `argo-hash layout` (hack/argo-tools) from k8s.io/api v0.34; do not edit.")
	fmt.Fprintln(w, "// tests/argo_hash.rs fails when it differs from what the generator writes.")
	fmt.Fprintln(w, "")
	fmt.Fprintln(w, "use super::{Field, Ty};")
	fmt.Fprintln(w, "")
	fmt.Fprintf(w, "pub(super) const POD_TEMPLATE_SPEC: Ty = %s;\n", root)
	fmt.Fprintln(w, "")
	fmt.Fprintln(w, "/// A struct's JSON fields, in Go's order.")
	fmt.Fprintln(w, "pub(super) fn fields(name: &str) -> &'static [Field] {")
	fmt.Fprintln(w, "    match name {")
	for _, n := range names {
		fmt.Fprintf(w, "        %q => {\n", n)
		fmt.Fprintln(w, "            const FIELDS: &[Field] = &[")
		for _, f := range structs[n] {
			fmt.Fprintf(w, "                Field::new(%q, %t, %t, %s),\n", f.json, f.omitEmpty, f.omitZero, f.ty)
		}
		fmt.Fprintln(w, "            ];")
		fmt.Fprintln(w, "            FIELDS")
		fmt.Fprintln(w, "        }")
	}
	fmt.Fprintln(w, "        _ => &[],")
	fmt.Fprintln(w, "    }")
	fmt.Fprintln(w, "}")
}
