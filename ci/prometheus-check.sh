#!/usr/bin/env bash
# RuLake's Grafana dashboards and alert rules, checked by a real Prometheus.
#
# Starts `rulake serve` (shard + coordinator) and a one-member `rulake meta`
# with their metrics ports on loopback, creates a collection from a small
# Parquet lake written by `rulake demo`, runs a short query load over gRPC,
# lets Debian's `prometheus` scrape both every second, then evaluates every
# PromQL expression of every dashboard panel and every alert rule through
# Prometheus's HTTP API: each must be valid, and each panel's expression must
# return at least one series. The targets carry the `namespace` and
# `rulake_cluster` labels the operator's ServiceMonitor gives them, and every
# dashboard must filter every query by its `namespace` and `cluster`
# variables. The lake counters must show that loading the collection read
# Parquet bytes, without errors. `promtool check rules` must pass too, and
# `promtool test rules` must pass the alerts' unit tests
# (charts/rulake/prometheus/rules.test.yaml: synthetic series of a
# three-shard cluster).
#
# Needs: prometheus and promtool (Debian: apt-get install -y prometheus), a
# Python with grpcio and PyYAML ($RULAKE_PYTHON, default python3), and the
# rulake binary ($RULAKE_BIN, default: built here with cargo).
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "prometheus-check: $*" >&2; exit 1; }
for tool in prometheus promtool; do
  command -v "$tool" >/dev/null || fail "$tool not found (Debian: apt-get install -y prometheus)"
done
PY="${RULAKE_PYTHON:-python3}"
"$PY" -c 'import grpc, yaml' 2>/dev/null || fail "$PY lacks grpcio or PyYAML (pip install grpcio pyyaml)"

echo "== promtool check rules"
promtool check rules charts/rulake/prometheus/rules.yaml
echo "== promtool test rules"
(cd charts/rulake/prometheus && promtool test rules rules.test.yaml)

if [[ -z "${RULAKE_BIN:-}" ]]; then
  cargo build --quiet --locked -p rulake --bin rulake
  RULAKE_BIN="${CARGO_TARGET_DIR:-target}/debug/rulake"
fi
[[ -x "$RULAKE_BIN" ]] || fail "no rulake binary at $RULAKE_BIN"

work="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# Five free loopback ports.
read -r GRPC SERVE_METRICS META META_METRICS PROM < <("$PY" - <<'PY'
import socket
socks = [socket.socket() for _ in range(5)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])
PY
)

echo "== lake"
"$RULAKE_BIN" demo --n 3000 --dim 16 --clusters 4 --queries 10 --k 5 --lake "$work/lake" >"$work/demo.log" 2>&1 \
  || { cat "$work/demo.log"; fail "rulake demo failed"; }
lake="$work/lake/n3000-d16-c4"

echo "== rulake serve and rulake meta"
"$RULAKE_BIN" serve --listen "127.0.0.1:$GRPC" --data-dir "$work/data" \
  --metrics-listen "127.0.0.1:$SERVE_METRICS" --recall-sample 1 --recall-max-scans 100 \
  --source-allow "file://$work/lake/" \
  >"$work/serve.log" 2>&1 &
pids+=($!)
"$RULAKE_BIN" meta --id 1 --listen "127.0.0.1:$META" --peers "1=127.0.0.1:$META" --cluster-insecure \
  --data-dir "$work/meta" --metrics-listen "127.0.0.1:$META_METRICS" \
  >"$work/meta.log" 2>&1 &
pids+=($!)

cat >"$work/prometheus.yml" <<YML
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: rulake-serve
    static_configs:
      - targets: ["127.0.0.1:$SERVE_METRICS"]
        labels: {namespace: ci, rulake_cluster: ci}
  - job_name: rulake-meta
    static_configs:
      - targets: ["127.0.0.1:$META_METRICS"]
        labels: {namespace: ci, rulake_cluster: ci}
YML
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/tsdb" \
  --web.listen-address="127.0.0.1:$PROM" >"$work/prometheus.log" 2>&1 &
pids+=($!)

status=0
"$PY" - "$GRPC" "$SERVE_METRICS" "$META_METRICS" "$PROM" "$lake" <<'PY' || status=$?
import glob, json, re, struct, sys, time, urllib.parse, urllib.request
import grpc, yaml

grpc_port, serve_metrics, meta_metrics, prom, lake = sys.argv[1:]
DIM = 16

def http_get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError as e:
        return None, str(e)

def wait(what, check, timeout=60):
    t = time.time()
    while time.time() - t < timeout:
        if check():
            return
        time.sleep(0.2)
    sys.exit(f"timed out waiting for {what}")

wait("rulake serve /healthz", lambda: http_get(f"http://127.0.0.1:{serve_metrics}/healthz")[0] == 200)
wait("rulake meta /readyz (a leader)", lambda: http_get(f"http://127.0.0.1:{meta_metrics}/readyz")[0] == 200)

# Protobuf by hand (field numbers of proto/rulake/v1), so no generated code is needed.
def varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])
def ld(field, payload):
    return varint(field << 3 | 2) + varint(len(payload)) + payload
def s(field, text):
    return ld(field, text.encode())
def u(field, n):
    return varint(field << 3) + varint(n)

parquet = s(1, lake) + s(2, "id") + s(3, "vector")
spec = s(1, "ci") + ld(2, ld(1, parquet)) + u(3, DIM) + u(4, 1) + u(5, 2)
channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
create = channel.unary_unary("/rulake.v1.CollectionService/CreateCollection")
search = channel.unary_unary("/rulake.v1.SearchService/Search")
create(ld(1, spec), timeout=60)
wait("rulake serve /readyz (collection warm)", lambda: http_get(f"http://127.0.0.1:{serve_metrics}/readyz")[0] == 200)

def query(i, name="ci"):
    v = [((i * 7919 + d * 104729) % 1000) / 1000.0 for d in range(DIM)]
    return s(1, name) + ld(2, ld(1, struct.pack(f"<{DIM}f", *v))) + ld(3, u(1, 5))

# About 15 s of load, so rates over the last minute are not empty.
t = time.time()
i = 0
while time.time() - t < 15:
    search(query(i), timeout=10)
    if i % 50 == 0:
        try:
            search(query(i, "no-such-collection"), timeout=10)
            sys.exit("a search of a missing collection succeeded")
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.NOT_FOUND, e
    i += 1
    time.sleep(0.02)
print(f"ran {i} searches")

def promql(expr):
    code, body = http_get(f"http://127.0.0.1:{prom}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    return code, json.loads(body) if body.startswith("{") else {"error": body}

# Enough scrapes of both targets for rate() over the last minute.
wait("five scrapes of each target",
     lambda: len(promql('count_over_time(up[1m]) >= 5')[1].get("data", {}).get("result", [])) == 2, 60)

# The namespace and cluster variables take the targets' label values, so a
# query filtering on a label the targets lack returns nothing and fails.
SUBST = {"$__rate_interval": "1m", "$__interval": "1m", "$__range": "5m", "${collection}": ".*", "$collection": ".*",
         "${namespace}": "ci", "$namespace": "ci", "${cluster}": "ci", "$cluster": "ci"}
def substitute(expr):
    for k, v in SUBST.items():
        expr = expr.replace(k, v)
    if "$" in expr:
        raise ValueError(f"unsubstituted template variable in {expr!r}")
    return expr

failures = []
checked = 0

# The collection's load read the lake: the lake I/O panels show real
# reads, not only the zero series every kind exports.
for expr in ('sum(rulake_lake_read_bytes_total{kind="parquet"}) > 0',
             'sum(rulake_lake_read_requests_total{kind="parquet"}) > 0',
             'sum(rulake_lake_read_errors_total{kind="parquet"}) == 0'):
    checked += 1
    code, r = promql(expr)
    if not r.get("data", {}).get("result"):
        failures.append(f"lake reads: no series for {expr}")
for path in sorted(glob.glob("charts/rulake/dashboards/*.json")):
    d = json.load(open(path))
    for key in ("uid", "title", "panels"):
        if key not in d:
            failures.append(f"{path}: no {key}")
    if "id" in d:
        failures.append(f"{path}: has an id (provisioned dashboards must not)")
    names = [v["name"] for v in d.get("templating", {}).get("list", [])]
    for var in ("datasource", "namespace", "cluster"):
        if var not in names:
            failures.append(f"{path}: no {var} template variable")
    # Each query variable must offer the targets' values of its label.
    for v in d.get("templating", {}).get("list", []):
        m = re.fullmatch(r"label_values\((.+), *(\w+)\)", v.get("definition", ""))
        if v.get("type") != "query":
            continue
        checked += 1
        if not m:
            failures.append(f"{path}: variable {v['name']}: not label_values(selector, label)")
            continue
        selector, label = m.groups()
        code, r = promql(f"count by ({label}) ({substitute(selector)})")
        values = [x["metric"].get(label) for x in r.get("data", {}).get("result", [])]
        if not any(values):
            failures.append(f"{path}: variable {v['name']}: no {label} values from {selector}")
    for p in d["panels"]:
        if p.get("datasource", {}).get("uid") != "${datasource}":
            failures.append(f"{path}: panel {p['title']!r} does not use the datasource variable")
        for t in p.get("targets", []):
            checked += 1
            where = f"{path}: panel {p['title']!r} target {t['refId']}"
            for var in ("$namespace", "$cluster"):
                if var not in t["expr"]:
                    failures.append(f"{where}: does not filter by {var}")
            try:
                expr = substitute(t["expr"])
            except ValueError as e:
                failures.append(f"{where}: {e}")
                continue
            code, r = promql(expr)
            if r.get("status") != "success":
                failures.append(f"{where}: invalid: {r.get('error')} in {expr}")
            elif not r["data"]["result"]:
                failures.append(f"{where}: no series for {expr}")

rules = yaml.safe_load(open("charts/rulake/prometheus/rules.yaml"))
for g in rules["groups"]:
    for rule in g["rules"]:
        checked += 1
        code, r = promql(rule["expr"])
        if r.get("status") != "success":
            failures.append(f"rule {rule.get('alert') or rule.get('record')}: invalid: {r.get('error')}")

for f in failures:
    print("FAIL", f)
print(f"{checked - len(failures)} passed, {len(failures)} failed")
sys.exit(1 if failures else 0)
PY
if [[ $status -ne 0 ]]; then
  for log in serve meta prometheus; do
    echo "---- $log.log (tail)"; tail -n 20 "$work/$log.log" || true
  done
  fail "dashboard or rule check failed"
fi
echo "prometheus-check: ok"
