package capture

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// needTool returns name's path, or skips the test when it is missing,
// unless CI=true, where every consumer must run.
func needTool(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is required with CI=true: %v", name, err)
		}
		t.Skipf("%s not installed", name)
	}
	return path
}

// harRequired is a HAR reader apart from Go: Python's json module and
// the fields the HAR 1.2 spec marks required, with their types.
const harRequired = `
import json, sys
doc = json.load(open(sys.argv[1]))
log = doc["log"]
assert log["version"] == "1.2" and isinstance(log["creator"]["name"], str) and isinstance(log["creator"]["version"], str)
num = (int, float)
for i, e in enumerate(log["entries"]):
    where = "entry %d" % i
    assert isinstance(e["startedDateTime"], str) and isinstance(e["time"], num) and e["time"] >= 0, where
    assert isinstance(e["cache"], dict), where
    for k in ("send", "wait", "receive"):
        assert isinstance(e["timings"][k], num) and e["timings"][k] >= 0, where + " timings." + k
    rq, rs = e["request"], e["response"]
    for k, ty in (("method", str), ("url", str), ("httpVersion", str), ("cookies", list), ("headers", list),
                  ("queryString", list), ("headersSize", int), ("bodySize", int)):
        assert isinstance(rq[k], ty), where + " request." + k
    for k, ty in (("status", int), ("statusText", str), ("httpVersion", str), ("cookies", list), ("headers", list),
                  ("content", dict), ("redirectURL", str), ("headersSize", int), ("bodySize", int)):
        assert isinstance(rs[k], ty), where + " response." + k
    assert isinstance(rs["content"]["size"], int) and isinstance(rs["content"]["mimeType"], str), where + " content"
    for h in rq["headers"] + rs["headers"] + rq["queryString"] + rq["cookies"] + rs["cookies"]:
        assert isinstance(h["name"], str) and isinstance(h["value"], str), where + " name/value"
    if "postData" in rq:
        assert isinstance(rq["postData"]["mimeType"], str), where + " postData"
print(len(log["entries"]), "entries")
`

func TestHarPythonReader(t *testing.T) {
	py := needTool(t, "python3")
	path := writeSample(t)
	out, err := exec.Command(py, "-c", harRequired, path).CombinedOutput()
	if err != nil || string(out) != "9 entries\n" {
		t.Fatalf("python: %v\n%s", err, out)
	}
}

// harValidate runs har-validator (the JSON Schema of HAR 1.2 that
// request and other HTTP tools check HAR files with) on a file.
const harValidate = `
const v = require(process.argv[1] + "/node_modules/har-validator/lib/promise");
v.har(JSON.parse(require("fs").readFileSync(process.argv[2])))
  .then(() => console.log("valid"))
  .catch(e => { console.log(JSON.stringify(e.errors || e.message, null, 1)); process.exit(1); });
`

// TestHarValidator checks a HAR file with har-validator from npm,
// installed into a temporary directory: skipped without npm or without
// the registry, except with CI=true.
func TestHarValidator(t *testing.T) {
	npm := needTool(t, "npm")
	node := needTool(t, "node")
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	install := exec.CommandContext(ctx, npm, "install", "--no-audit", "--no-fund", "--prefix", dir, "har-validator@5.1.5")
	if out, err := install.CombinedOutput(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("npm install har-validator: %v\n%s", err, out)
		}
		t.Skipf("npm install har-validator: %v", err)
	}
	path := writeSample(t)
	out, err := exec.Command(node, "-e", harValidate, filepath.Clean(dir), path).CombinedOutput()
	if err != nil || string(out) != "valid\n" {
		t.Fatalf("har-validator: %v\n%s", err, out)
	}
}
