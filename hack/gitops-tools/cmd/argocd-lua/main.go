// Command argocd-lua runs an Argo CD resource customization (health.lua, an action's
// action.lua or discovery.lua) on a Kubernetes object read as JSON from stdin, in the Lua VM
// Argo CD uses (gopher-lua) set up as Argo CD's util/lua sets it up for argocd-cm scripts:
// only the package, base and table libraries, `require("os")` with `time` and `date` alone,
// a one-second timeout, and the globals `obj` and `actionParams`. It prints one JSON line:
//
//	health    {"status": …, "message": …}
//	action    {"object": …, "patch": <JSON merge patch from the object to the result>}
//	discovery the table discovery.lua returned
//
// Usage: argocd-lua [-open-libs] health|action|discovery SCRIPT < object.json
// (-open-libs: every standard library, as Argo CD runs its built-in health scripts.)
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"reflect"
	"time"

	lua "github.com/yuin/gopher-lua"
)

func main() {
	openLibs := flag.Bool("open-libs", false, "open every standard library (Argo CD's built-in health scripts)")
	flag.Parse()
	if flag.NArg() != 2 {
		fmt.Fprintln(os.Stderr, "usage: argocd-lua [-open-libs] health|action|discovery SCRIPT < object.json")
		os.Exit(2)
	}
	out, err := run(flag.Arg(0), flag.Arg(1), *openLibs, os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "argocd-lua:", err)
		os.Exit(1)
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fmt.Fprintln(os.Stderr, "argocd-lua:", err)
		os.Exit(1)
	}
}

func run(mode, scriptPath string, openLibs bool, in io.Reader) (any, error) {
	script, err := os.ReadFile(scriptPath)
	if err != nil {
		return nil, err
	}
	raw, err := io.ReadAll(in)
	if err != nil {
		return nil, err
	}
	var obj map[string]any
	if err := json.Unmarshal(raw, &obj); err != nil {
		return nil, fmt.Errorf("decode object: %w", err)
	}
	l := newState(openLibs)
	defer l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("actionParams", l.CreateTable(0, 0))
	l.SetGlobal("obj", toLua(l, obj))
	if err := l.DoString(string(script)); err != nil {
		return nil, err
	}
	ret := l.Get(-1)
	switch mode {
	case "health":
		return health(ret)
	case "discovery":
		return fromLua(ret), nil
	case "action":
		table, ok := ret.(*lua.LTable)
		if !ok {
			return nil, fmt.Errorf("action returned %s, not an object", ret.Type())
		}
		after, ok := fromLua(table).(map[string]any)
		if !ok {
			// A list of impacted resources (Argo CD's newer return form) is not used here.
			return nil, errors.New("action returned a list, not the object")
		}
		after = clean(after, obj)
		return map[string]any{"object": after, "patch": mergePatch(obj, after)}, nil
	}
	return nil, fmt.Errorf("unknown mode %q", mode)
}

// newState opens what Argo CD opens for argocd-cm scripts (util/lua: package, base, table; a
// safe os module), or every library.
func newState(openLibs bool) *lua.LState {
	l := lua.NewState(lua.Options{SkipOpenLibs: !openLibs})
	if !openLibs {
		for _, lib := range []struct {
			name string
			fn   lua.LGFunction
		}{{lua.LoadLibName, lua.OpenPackage}, {lua.BaseLibName, lua.OpenBase}, {lua.TabLibName, lua.OpenTable}} {
			if err := l.CallByParam(lua.P{Fn: l.NewFunction(lib.fn), NRet: 0, Protect: true}, lua.LString(lib.name)); err != nil {
				panic(err)
			}
		}
	}
	l.PreloadModule("os", safeOs)
	return l
}

// safeOs is `require("os")` as Argo CD serves it: `time` and `date` only.
func safeOs(l *lua.LState) int {
	mod := l.NewTable()
	for _, name := range []string{"time", "date"} {
		mod.RawSetString(name, l.NewFunction(osFuncs[name]))
	}
	l.Push(mod)
	return 1
}

// Argo CD's `os.time` and `os.date`, as gopher-lua implements them (only what scripts use:
// `os.time()` and `os.date(format)` with an optional time; "!" for UTC).
var osFuncs = map[string]lua.LGFunction{
	"time": func(l *lua.LState) int {
		l.Push(lua.LNumber(time.Now().Unix()))
		return 1
	},
	"date": func(l *lua.LState) int {
		format := l.OptString(1, "%c")
		t := time.Now()
		if l.GetTop() >= 2 {
			t = time.Unix(int64(l.CheckNumber(2)), 0)
		}
		if len(format) > 0 && format[0] == '!' {
			format = format[1:]
			t = t.UTC()
		}
		l.Push(lua.LString(strftime(t, format)))
		return 1
	},
}

func strftime(t time.Time, format string) string {
	out := []byte{}
	for i := 0; i < len(format); i++ {
		if format[i] != '%' || i+1 == len(format) {
			out = append(out, format[i])
			continue
		}
		i++
		switch format[i] {
		case 'Y':
			out = fmt.Appendf(out, "%04d", t.Year())
		case 'm':
			out = fmt.Appendf(out, "%02d", int(t.Month()))
		case 'd':
			out = fmt.Appendf(out, "%02d", t.Day())
		case 'H':
			out = fmt.Appendf(out, "%02d", t.Hour())
		case 'M':
			out = fmt.Appendf(out, "%02d", t.Minute())
		case 'S':
			out = fmt.Appendf(out, "%02d", t.Second())
		case 'X':
			out = fmt.Appendf(out, "%02d:%02d:%02d", t.Hour(), t.Minute(), t.Second())
		case '%':
			out = append(out, '%')
		default:
			out = append(out, '%', format[i])
		}
	}
	return string(out)
}

// health reads a health script's result as Argo CD does: a table with a valid status, or
// Unknown.
func health(ret lua.LValue) (map[string]string, error) {
	table, ok := ret.(*lua.LTable)
	if !ok {
		if ret == lua.LNil {
			return map[string]string{"status": "", "message": ""}, nil
		}
		return nil, fmt.Errorf("health script returned %s, not a table", ret.Type())
	}
	status := lua.LVAsString(table.RawGetString("status"))
	message := lua.LVAsString(table.RawGetString("message"))
	switch status {
	case "Healthy", "Progressing", "Suspended", "Degraded", "Missing", "Unknown":
	default:
		// A table without a valid status (none at all included), as Argo CD judges it.
		return map[string]string{"status": "Unknown", "message": "Lua returned an invalid health status"}, nil
	}
	return map[string]string{"status": status, "message": message}, nil
}

// toLua converts decoded JSON as Argo CD's decodeValue does: empty objects and arrays both
// become empty tables.
func toLua(l *lua.LState, v any) lua.LValue {
	switch v := v.(type) {
	case bool:
		return lua.LBool(v)
	case float64:
		return lua.LNumber(v)
	case string:
		return lua.LString(v)
	case []any:
		t := l.CreateTable(len(v), 0)
		for _, item := range v {
			t.Append(toLua(l, item))
		}
		return t
	case map[string]any:
		t := l.CreateTable(0, len(v))
		for k, item := range v {
			t.RawSetH(lua.LString(k), toLua(l, item))
		}
		return t
	}
	return lua.LNil
}

// fromLua converts a result back as Argo CD's JSON encoder does: a table whose keys are 1..n
// is an array (an empty table too), any other a map; numbers are floats.
func fromLua(v lua.LValue) any {
	switch v := v.(type) {
	case lua.LBool:
		return bool(v)
	case lua.LNumber:
		return float64(v)
	case lua.LString:
		return string(v)
	case *lua.LTable:
		n := v.MaxN()
		keys := 0
		v.ForEach(func(lua.LValue, lua.LValue) { keys++ })
		if keys == n {
			arr := make([]any, 0, n)
			for i := 1; i <= n; i++ {
				arr = append(arr, fromLua(v.RawGetInt(i)))
			}
			return arr
		}
		m := map[string]any{}
		v.ForEach(func(k, item lua.LValue) { m[lua.LVAsString(k)] = fromLua(item) })
		return m
	}
	return nil
}

// clean turns an empty array back into an object where the original held an object, as Argo
// CD's cleanReturnedObj does.
func clean(after, before map[string]any) map[string]any {
	for k, old := range before {
		switch n := after[k].(type) {
		case map[string]any:
			if o, ok := old.(map[string]any); ok {
				after[k] = clean(n, o)
			}
		case []any:
			switch o := old.(type) {
			case map[string]any:
				if len(n) == 0 {
					after[k] = map[string]any{}
				}
			case []any:
				after[k] = cleanArray(n, o)
			}
		}
	}
	return after
}

// cleanArray is Argo CD's cleanReturnedArray: [clean] inside arrays, item by item.
func cleanArray(after, before []any) []any {
	for i := range after {
		if i >= len(before) {
			break
		}
		switch n := after[i].(type) {
		case map[string]any:
			if o, ok := before[i].(map[string]any); ok {
				after[i] = clean(n, o)
			}
		case []any:
			if o, ok := before[i].([]any); ok {
				after[i] = cleanArray(n, o)
			}
		}
	}
	return after
}

// mergePatch is the JSON merge patch (RFC 7386) that turns `before` into `after`, as Argo CD
// computes an action's patch.
func mergePatch(before, after map[string]any) map[string]any {
	patch := map[string]any{}
	for k, b := range before {
		a, ok := after[k]
		if !ok {
			patch[k] = nil
			continue
		}
		bm, bIsMap := b.(map[string]any)
		am, aIsMap := a.(map[string]any)
		if bIsMap && aIsMap {
			if sub := mergePatch(bm, am); len(sub) > 0 {
				patch[k] = sub
			}
			continue
		}
		if !equal(a, b) {
			patch[k] = a
		}
	}
	for k, a := range after {
		if _, ok := before[k]; !ok {
			patch[k] = a
		}
	}
	return patch
}

// equal compares decoded JSON values, numbers by value.
func equal(a, b any) bool {
	return reflect.DeepEqual(a, b)
}
