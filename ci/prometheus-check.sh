#!/usr/bin/env bash
# RuLake's Grafana dashboards and alert rules, checked by a real Prometheus.
#
# Starts two clusters with their metrics ports on loopback: `rulake serve`
# (every role in one process) with a one-member `rulake meta` (cluster
# label `ci`), and a multi-process one (cluster `dist`: a one-member meta
# group, two `rulake shard` nodes, a `rulake coordinator`). It creates a
# collection in each from a small Parquet lake written by `rulake demo`
# (replication 2 in `dist`, so both shards hold every partition), runs a
# short query load over gRPC on both, lets Debian's `prometheus` scrape
# every process every second, then evaluates every PromQL expression of
# every dashboard panel and every alert rule through Prometheus's HTTP API:
# each must be valid; each panel's expression must return at least one
# series for each cluster; and no alert may fire for either healthy
# cluster (its expression returns nothing for that cluster). The targets
# carry the `namespace` and `rulake_cluster` labels the operator's
# ServiceMonitor gives them, and every dashboard must filter every query by
# its `namespace` and `cluster` variables. The lake counters must show that loading the collection read
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

# Free loopback ports.
read -r GRPC SERVE_METRICS META META_METRICS PROM \
  DMETA DMETA_METRICS S1 S1_METRICS S2 S2_METRICS DGRPC DGRPC_METRICS < <("$PY" - <<'PY'
import socket
socks = [socket.socket() for _ in range(13)]
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

echo "== a multi-process cluster: rulake meta, two rulake shard, rulake coordinator"
"$RULAKE_BIN" meta --id 1 --listen "127.0.0.1:$DMETA" --peers "1=127.0.0.1:$DMETA" --cluster-insecure \
  --data-dir "$work/dist/meta" --metrics-listen "127.0.0.1:$DMETA_METRICS" \
  >"$work/dist-meta.log" 2>&1 &
pids+=($!)
for n in 1 2; do
  port_var="S$n"; metrics_var="S${n}_METRICS"
  "$RULAKE_BIN" shard --id "$n" --listen "127.0.0.1:${!port_var}" --meta "127.0.0.1:$DMETA" --cluster-insecure \
    --data-dir "$work/dist/shard-$n" --metrics-listen "127.0.0.1:${!metrics_var}" \
    --recall-sample 1 --recall-max-scans 100 --source-allow "file://$work/lake/" \
    >"$work/dist-shard-$n.log" 2>&1 &
  pids+=($!)
done
"$RULAKE_BIN" coordinator --listen "127.0.0.1:$DGRPC" --meta "127.0.0.1:$DMETA" --cluster-insecure \
  --data-dir "$work/dist/coordinator" --metrics-listen "127.0.0.1:$DGRPC_METRICS" \
  --recall-sample 1 --recall-max-scans 100 --source-allow "file://$work/lake/" \
  >"$work/dist-coordinator.log" 2>&1 &
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
  - job_name: rulake-dist
    static_configs:
      - targets: ["127.0.0.1:$DMETA_METRICS", "127.0.0.1:$S1_METRICS", "127.0.0.1:$S2_METRICS", "127.0.0.1:$DGRPC_METRICS"]
        labels: {namespace: ci, rulake_cluster: dist}
YML
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/tsdb" \
  --web.listen-address="127.0.0.1:$PROM" >"$work/prometheus.log" 2>&1 &
pids+=($!)

status=0
"$PY" - "$GRPC" "$SERVE_METRICS" "$META_METRICS" "$PROM" "$lake" \
  "$DGRPC" "$DMETA_METRICS $S1_METRICS $S2_METRICS $DGRPC_METRICS" <<'PY' || status=$?
import glob, json, re, struct, sys, time, urllib.parse, urllib.request
import grpc, yaml

grpc_port, serve_metrics, meta_metrics, prom, lake, dist_grpc, dist_metrics = sys.argv[1:]
dist_metrics = dist_metrics.split()
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
for port in dist_metrics:
    wait(f"the multi-process cluster's /healthz on {port}",
         lambda: http_get(f"http://127.0.0.1:{port}/healthz")[0] == 200)

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
def spec(replication):
    # name, source, dimension, metric l2, partitions 2, replication
    return s(1, "ci") + ld(2, ld(1, parquet)) + u(3, DIM) + u(4, 1) + u(5, 2) + u(6, replication)
channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
create = channel.unary_unary("/rulake.v1.CollectionService/CreateCollection")
search = channel.unary_unary("/rulake.v1.SearchService/Search")
create(ld(1, spec(1)), timeout=60)
wait("rulake serve /readyz (collection warm)", lambda: http_get(f"http://127.0.0.1:{serve_metrics}/readyz")[0] == 200)

def query(i, name="ci"):
    v = [((i * 7919 + d * 104729) % 1000) / 1000.0 for d in range(DIM)]
    return s(1, name) + ld(2, ld(1, struct.pack(f"<{DIM}f", *v))) + ld(3, u(1, 5))

# The multi-process cluster: the coordinator follows the catalog, so the
# create retries until it can; then both shards load every partition
# (replication 2) and report ready.
dist = grpc.insecure_channel(f"127.0.0.1:{dist_grpc}")
dist_create = dist.unary_unary("/rulake.v1.CollectionService/CreateCollection")
dist_search = dist.unary_unary("/rulake.v1.SearchService/Search")
def created():
    try:
        dist_create(ld(1, spec(2)), timeout=30)
        return True
    except grpc.RpcError as e:
        return e.code() == grpc.StatusCode.ALREADY_EXISTS
wait("the collection created on the multi-process cluster", created)
for port in dist_metrics[1:3]:
    wait(f"shard /readyz on {port} (its partitions warm)",
         lambda: http_get(f"http://127.0.0.1:{port}/readyz")[0] == 200)

# About 15 s of load on both clusters, so rates over the last minute are
# not empty.
t = time.time()
i = 0
while time.time() - t < 15:
    search(query(i), timeout=10)
    dist_search(query(i), timeout=10)
    if i % 50 == 0:
        for call in (search, dist_search):
            try:
                call(query(i, "no-such-collection"), timeout=10)
                sys.exit("a search of a missing collection succeeded")
            except grpc.RpcError as e:
                assert e.code() == grpc.StatusCode.NOT_FOUND, e
    i += 1
    time.sleep(0.02)
print(f"ran {i} searches on each cluster")

def promql(expr):
    code, body = http_get(f"http://127.0.0.1:{prom}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    return code, json.loads(body) if body.startswith("{") else {"error": body}

# Enough scrapes of every target for rate() over the last minute.
targets = 2 + len(dist_metrics)
wait("five scrapes of each target",
     lambda: len(promql('count_over_time(up[1m]) >= 5')[1].get("data", {}).get("result", [])) == targets, 60)

# The namespace and cluster variables take the targets' label values, so a
# query filtering on a label the targets lack returns nothing and fails.
CLUSTERS = ("ci", "dist")
def substitute(expr, cluster="ci"):
    subst = {"$__rate_interval": "1m", "$__interval": "1m", "$__range": "5m", "${collection}": ".*",
             "$collection": ".*", "${namespace}": "ci", "$namespace": "ci", "${cluster}": cluster,
             "$cluster": cluster}
    for k, v in subst.items():
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
            for cluster in CLUSTERS:
                try:
                    expr = substitute(t["expr"], cluster)
                except ValueError as e:
                    failures.append(f"{where}: {e}")
                    break
                code, r = promql(expr)
                if r.get("status") != "success":
                    failures.append(f"{where}: invalid: {r.get('error')} in {expr}")
                elif not r["data"]["result"]:
                    failures.append(f"{where}: no series for cluster {cluster}: {expr}")

# Every alert is valid, and none fires for either healthy cluster.
rules = yaml.safe_load(open("charts/rulake/prometheus/rules.yaml"))
for g in rules["groups"]:
    for rule in g["rules"]:
        checked += 1
        name = rule.get("alert") or rule.get("record")
        code, r = promql(rule["expr"])
        if r.get("status") != "success":
            failures.append(f"rule {name}: invalid: {r.get('error')}")
        elif "alert" in rule:
            for x in r["data"]["result"]:
                if x["metric"].get("rulake_cluster") in CLUSTERS:
                    failures.append(f"rule {name}: fires on the healthy cluster: {x['metric']} = {x['value'][1]}")

for f in failures:
    print("FAIL", f)
print(f"{checked - len(failures)} passed, {len(failures)} failed")
sys.exit(1 if failures else 0)
PY
if [[ $status -ne 0 ]]; then
  for log in serve meta dist-meta dist-shard-1 dist-shard-2 dist-coordinator prometheus; do
    echo "---- $log.log (tail)"; tail -n 20 "$work/$log.log" || true
  done
  fail "dashboard or rule check failed"
fi
echo "prometheus-check: ok"
