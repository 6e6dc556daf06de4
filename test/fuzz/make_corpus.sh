#!/usr/bin/env bash
# make_corpus.sh - regenerate test/fuzz/corpus/ from the mock API
#
# Starts test/mock_nimble.py on a free loopback port, fetches the bodies of
# the list, details and progress endpoints, of its error statuses and of its
# JSON faults, adds a few hand-written edge cases, and writes them to
# corpus/ (replacing what is there).  Bodies over 16 KiB (batch 3 has 1000
# tasks) are cut down to their first tasks, still as valid JSON.  Files named
# regress-* (inputs that once crashed the target) are kept.  Needs python3
# only; the batch ids are test/lib/ids.py's.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
mock="$here/../mock_nimble.py"
out="$here/corpus"
tmp=$(mktemp -d)
pid=

cleanup() {
	if [ -n "$pid" ]; then
		kill "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	fi
	rm -rf "$tmp" "$out.new"
}
trap cleanup EXIT

python3 "$mock" --port 0 --port-file "$tmp/port" >"$tmp/mock.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do
	[ -s "$tmp/port" ] && break
	kill -0 "$pid" 2>/dev/null || { cat "$tmp/mock.log" >&2; exit 1; }
	sleep 0.1
done
[ -s "$tmp/port" ] || { echo "make_corpus.sh: the mock did not start" >&2; exit 1; }

rm -rf "$out.new"
mkdir -p "$out.new"

PYTHONPATH="$here/../lib" python3 - "$(cat "$tmp/port")" "$out.new" <<'EOF'
import json
import sys
import urllib.error
import urllib.request

from ids import batch_id as bid

port, out = int(sys.argv[1]), sys.argv[2]
base = "http://127.0.0.1:%d" % port
MAX = 16 * 1024


def get(path):
    req = urllib.request.Request(base + path,
                                 headers={"Authorization": "Bearer test-key"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.read()
    except urllib.error.HTTPError as e:
        return e.read()


def shrink(body):
    """Cut a big body's task lists down, keeping it valid JSON."""
    if len(body) <= MAX:
        return body
    obj = json.loads(body)
    for holder in [obj] + (obj.get("data") or []):
        if isinstance(holder, dict) and isinstance(holder.get("tasks"), list):
            holder["tasks"] = holder["tasks"][:12]
    small = json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()
    assert len(small) <= MAX, len(small)
    return small


def save(name, body, trim=True):
    if trim:
        body = shrink(body)
    with open("%s/%s.json" % (out, name), "wb") as f:
        f.write(body)


# the list, page by page
path, page = "/v1/batches?limit=5", 1
while True:
    body = get(path)
    save("list-page%d" % page, body)
    cur = json.loads(body)["pagination"]["next_cursor"]
    if cur is None:
        break
    path, page = "/v1/batches?limit=5&cursor=" + cur, page + 1
save("list-limit1", get("/v1/batches?limit=1"))
save("list-bad-limit", get("/v1/batches?limit=0"))
save("list-bad-cursor", get("/v1/batches?cursor=nope"))

# every batch's details and progress
for n in range(1, 13):
    save("details-%x" % n, get("/v1/batches/%s" % bid(n)))
    save("progress-%x" % n, get("/v1/batches/%s/progress" % bid(n)))
# the 1000-task batch also cut in the middle of a task: not valid JSON
save("details-3-cut", get("/v1/batches/%s" % bid(3))[:3000], trim=False)
save("details-unknown", get("/v1/batches/nope"))
save("not-found", get("/v1/nothing"))

# error bodies, for nimble_json_string_at
for code in (400, 401, 402, 403, 404, 408, 409, 429, 500, 503, 555):
    save("status-%d" % code, get("/fault=status/status=%d/v1/batches" % code))
save("html-502", get("/fault=html/v1/batches"))

# the JSON faults, on each endpoint they change
ep = {"list": "/v1/batches?limit=5",
      "details": "/v1/batches/%s" % bid(1),
      "details-empty": "/v1/batches/%s" % bid(2),
      "progress": "/v1/batches/%s/progress" % bid(1)}
faults = {
    "list": ["invalid_utf8", "nul_escape", "wrong_type", "repeat_cursor",
             "null_cursor", "data_not_array", "missing_pagination"],
    "details": ["invalid_utf8", "nul_escape", "wrong_type", "data_not_array"],
    "details-empty": ["invalid_utf8", "nul_escape", "wrong_type"],
    "progress": ["invalid_utf8", "nul_escape", "wrong_type"],
}
for where, kinds in faults.items():
    for kind in kinds:
        save("fault-%s-%s" % (kind, where), get("/fault=%s%s" % (kind, ep[where])))
for kind in ("not_json", "empty"):
    save("fault-%s" % kind, get("/fault=%s%s" % (kind, ep["progress"])))
# nesting around the 512 limit: details puts it 3 levels down
for where, depths in (("details", (509, 510, 600)), ("progress", (511, 600)),
                      ("list", (600,))):
    for d in depths:
        save("fault-deep_nesting-%s-%d" % (where, d),
             get("/fault=deep_nesting/depth=%d%s" % (d, ep[where])))

# hand-written edge cases of json_doc.c's semantics
edge = {
    "rows-null": b'{"data":null,"pagination":{"has_next":false}}',
    "rows-with-nulls": b'{"data":[null,{"id":"a","tasks":[]},null,{"id":"b","tasks":["x",null]}]}',
    "rows-scalar": b'{"data":[1]}',
    "rows-array": b'{"data":[[{"id":"a"}]]}',
    "rows-twice": b'{"data":[{"id":"a","id":"b"}],"data":[{"id":"c"}],"pagination":{"next_cursor":"c1","next_cursor":null}}',
    "top-array": b'[{"id":"a"}]',
    "top-string": b'"hello"',
    "top-null": b'null',
    "top-empty-object": b'{}',
    "spaces": b' \t\r\n{ "data" : [ { "id" : "a" , "tasks" : [ ] , "completed" : true } ] , "pagination" : { "has_next" : false , "total" : 1 } } \n',
    "nested-input": b'{"tasks":[{"id":"t","input":{"url":"http://x/","url":{"a":[1,2]}},"_query":{"k":2}},{"input":"flat"}]}',
    "error-object": b'{"error":{"message":"nested message","code":7}}',
    "error-first-wins": b'{"message":"m","error":"e","msg":1}',
    "escapes": b'{"msg":"\\ud83d\\ude00 caf\\u00e9 \\"q\\" \\\\ \\/ \\b\\f\\n\\r\\t","id":"\\u6771\\u4eac"}',
    "lone-surrogate": b'{"msg":"\\ud83d"}',
    "low-surrogate": b'{"msg":"\\ude00"}',
    "numbers": b'{"id":-0.5e+10,"completed":0,"completed_count":1E3,"progress":0.667,"completed_at":null}',
    "bad-number": b'{"id":01}',
    "stress": b'{"result":{"count":2,"items":[{"a":{"b":{"c":[1,2,[3]],"b":"x"}},"x":{"y":null},"input":{"url":{"host":"h"}},"k1":1,"k2":2,"k3":3,"k4":4,"k5":5,"k6":6,"k7":7,"k8":8,"k9":9,"k10":10},null]},"meta":{"next":"n"},"data":[1,[2],{"3":3}]}',
    "stress-result-scalar": b'{"result":7,"meta":[],"data":"d"}',
}
for name, body in edge.items():
    save("edge-" + name, body)
EOF

# regression seeds (inputs that once crashed the target) are kept as they are
if compgen -G "$out/regress-*" >/dev/null; then
	cp -p "$out"/regress-* "$out.new"/
fi
rm -rf "$out"
mv "$out.new" "$out"
echo "make_corpus.sh: $(ls "$out" | wc -l) seeds, $(du -sb "$out" | cut -f1) bytes in $out"
