package main

import (
	"fmt"
	"go/ast"
	"go/build"
	"go/importer"
	"go/parser"
	"go/token"
	"go/types"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
)

// The layers of the one flat package, lowest first. A file may refer to
// names declared in its own layer or a lower one, never a higher one:
// with packages, each such reference would be an import cycle. Every
// source file has its layer here (the code map in README.md says the
// same in words); a file with none fails the test.
const (
	layerDomain = iota // the user, events, errors, rules and answers: no SQL, no HTTP parsing
	layerStore         // the SQL and its plumbing
	layerEdge          // HTTP, the workers, metrics, hashing, configuration: what serves the store
	layerMain          // start-up and commands
)

var layerNames = []string{"domain", "store", "edge", "main"}

// fileLayers gives each source file (not _test.go) its layer.
var fileLayers = map[string]int{
	"answers.go":     layerDomain,
	"errors.go":      layerDomain,
	"events.go":      layerDomain,
	"json.go":        layerDomain,
	"rules.go":       layerDomain,
	"scim_filter.go": layerDomain,
	"user.go":        layerDomain,
	"user_valid.go":  layerDomain,
	"webhook.go":     layerDomain,

	"dbtls.go":             layerStore,
	"dbtrouble.go":         layerStore,
	"store.go":             layerStore,
	"store_conn.go":        layerStore,
	"store_commit.go":      layerStore,
	"store_errors.go":      layerStore,
	"store_events.go":      layerStore,
	"store_fastpath.go":    layerStore,
	"store_feed.go":        layerStore,
	"store_idempotency.go": layerStore,
	"store_locking.go":     layerStore,
	"store_list.go":        layerStore,
	"store_schema.go":      layerStore,
	"store_scim.go":        layerStore,
	"store_tokens.go":      layerStore,
	"store_users.go":       layerStore,
	"store_webhooks.go":    layerStore,

	"store_webhook_delivery.go": layerStore,

	"access.go":           layerEdge,
	"apidoc.go":           layerEdge,
	"auth.go":             layerEdge,
	"config.go":           layerEdge,
	"config_env.go":       layerEdge,
	"dotenv.go":           layerEdge,
	"cors.go":             layerEdge,
	"etag.go":             layerEdge,
	"events_workers.go":   layerEdge,
	"handlers.go":         layerEdge,
	"handlers_auth.go":    layerEdge,
	"handlers_events.go":  layerEdge,
	"handlers_health.go":  layerEdge,
	"handlers_update.go":  layerEdge,
	"handlers_users.go":   layerEdge,
	"handlers_tokens.go":  layerEdge,
	"scim.go":             layerEdge,
	"scim_discovery.go":   layerEdge,
	"scim_patch.go":       layerEdge,
	"scim_user.go":        layerEdge,
	"scim_values.go":      layerEdge,
	"httpio.go":           layerEdge,
	"idempotency.go":      layerEdge,
	"list.go":             layerEdge,
	"listener.go":         layerEdge,
	"logbuffer.go":        layerEdge,
	"metrics.go":          layerEdge,
	"metrics_runtime.go":  layerEdge,
	"middleware.go":       layerEdge,
	"password.go":         layerEdge,
	"password_pool.go":    layerEdge,
	"priority_linux.go":   layerEdge,
	"priority_other.go":   layerEdge,
	"problems.go":         layerEdge,
	"ratelimit.go":        layerEdge,
	"user_body.go":        layerEdge,
	"webhooks.go":         layerEdge,
	"webhook_delivery.go": layerEdge,
	"webhook_ssrf.go":     layerEdge,

	"main.go":    layerMain,
	"migrate.go": layerMain,
}

// TestLayersPointOneWay type-checks the package and fails on each
// reference from a file to a name declared in a higher layer, naming the
// file, the line and the name.
func TestLayersPointOneWay(t *testing.T) {
	t.Parallel()
	for _, v := range wrongWayReferences(t, ".") {
		t.Error(v)
	}
}

// wrongWayReferences type-checks the package in dir and lists the
// references that point up the layers, and the files without a layer.
func wrongWayReferences(t *testing.T, dir string) []string {
	t.Helper()
	fset := token.NewFileSet()
	files, problems := parseSources(t, fset, dir)
	info := &types.Info{Uses: map[*ast.Ident]types.Object{}, Selections: map[*ast.SelectorExpr]*types.Selection{}}
	conf := types.Config{Importer: importer.ForCompiler(fset, "source", nil)}
	pkg, err := conf.Check("main", fset, files, info)
	if err != nil {
		t.Fatalf("type-check: %v", err)
	}
	for id, obj := range info.Uses {
		if v := wrongWay(fset, pkg, id.Pos(), obj); v != "" {
			problems = append(problems, v)
		}
	}
	sort.Strings(problems)
	return slices.Compact(problems)
}

// parseSources parses the package's source files (not tests) in dir, and
// lists those that have no layer.
func parseSources(t *testing.T, fset *token.FileSet, dir string) ([]*ast.File, []string) {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	var files []*ast.File
	var problems []string
	for _, name := range names {
		base := filepath.Base(name)
		if match, err := build.Default.MatchFile(dir, base); strings.HasSuffix(base, "_test.go") || err != nil || !match {
			continue // a test, or a file for another system
		}
		if _, ok := fileLayers[base]; !ok {
			problems = append(problems, fmt.Sprintf("%s has no layer: add it to fileLayers (layers_test.go)", base))
		}
		f, err := parser.ParseFile(fset, name, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	return files, problems
}

// wrongWay describes the use at pos of obj when obj is declared in this
// package, in a file of a higher layer than pos's; otherwise "".
func wrongWay(fset *token.FileSet, pkg *types.Package, pos token.Pos, obj types.Object) string {
	if obj == nil || obj.Pkg() != pkg || !obj.Pos().IsValid() {
		return ""
	}
	if v, ok := obj.(*types.Var); ok && !v.IsField() && obj.Parent() != pkg.Scope() {
		return "" // a local variable or parameter
	}
	if _, ok := obj.(*types.Label); ok {
		return ""
	}
	user, decl := fset.Position(pos), fset.Position(obj.Pos())
	from, to := fileLayers[filepath.Base(user.Filename)], fileLayers[filepath.Base(decl.Filename)]
	if to <= from {
		return ""
	}
	return fmt.Sprintf("%s:%d (%s) refers to %s, declared in %s (%s)", filepath.Base(user.Filename), user.Line,
		layerNames[from], obj.Name(), filepath.Base(decl.Filename), layerNames[to])
}

// TestLayersTestCatchesWrongWays: the check fails, naming the file, the
// line and the name, when a store file refers to an HTTP-layer name, and
// names a source file that has no layer. It runs on a copy of the package.
func TestLayersTestCatchesWrongWays(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	names, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range append(names, "go.mod", "go.sum", "common-passwords.txt", "common-passwords-zxcvbn.txt", "openapi.json", "docs.html", "schema.sql") {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		data, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if name == "store.go" {
			data = append(data, "\nvar _ = badRequest\n"...)
		}
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "stray.go"), []byte("package main\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got := strings.Join(wrongWayReferences(t, dir), "\n")
	for _, want := range []string{"(store) refers to badRequest, declared in problems.go (edge)", "stray.go has no layer"} {
		if !strings.Contains(got, want) {
			t.Errorf("the layer check did not report %q; it said:\n%s", want, got)
		}
	}
}

// TestCodeMapNamesEveryFile: the README's code map names every source
// file, so a newcomer finds each one's job.
func TestCodeMapNamesEveryFile(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	for name := range fileLayers {
		if !strings.Contains(string(readme), "`"+name+"`") {
			t.Errorf("README.md's code map does not name %s", name)
		}
	}
}
