#!/usr/bin/env bash
# Checks Coffer's monitoring files: the Prometheus alert rules (syntax and
# unit tests, with promtool) and the Grafana dashboard (structure, and that
# every query names only metrics that internal/metrics/metrics.go exports).
#
#   bash deploy/check.sh
#
# Needs promtool (Debian/Ubuntu: apt-get install -y prometheus) and python3
# (PyYAML, if present, extends the metric-name check to the alert rules).
# DASHBOARD, ALERTS and METRICS_GO override the files checked.
set -euo pipefail
cd "$(dirname "$0")/.."

DASHBOARD=${DASHBOARD:-deploy/grafana/coffer.json}
ALERTS=${ALERTS:-deploy/prometheus/alerts.yml}
ALERT_TESTS=${ALERT_TESTS:-deploy/prometheus/alerts_test.yml}
METRICS_GO=${METRICS_GO:-internal/metrics/metrics.go}

if ! command -v promtool >/dev/null 2>&1; then
  echo "check.sh: promtool not found (apt-get install -y prometheus)" >&2
  exit 1
fi

echo "== promtool check rules $ALERTS"
promtool check rules "$ALERTS"
echo "== promtool test rules $ALERT_TESTS"
promtool test rules "$ALERT_TESTS"

echo "== dashboard and metric names"
exprs=$(mktemp --suffix=.yml)
trap 'rm -f "$exprs"' EXIT
python3 - "$DASHBOARD" "$ALERTS" "$METRICS_GO" "$exprs" <<'PY'
import json
import re
import sys

dashboard_path, alerts_path, metrics_path, exprs_path = sys.argv[1:5]
problems = []
promql = []  # every dashboard query, Grafana variables filled in, for promtool

# Metric names come from the collectors' Name fields in metrics.go;
# histograms and summaries also export _bucket/_sum/_count series.
src = open(metrics_path, encoding="utf-8").read()
known = set()
for ctor, name in re.findall(r'prometheus\.New(\w+)\(\s*prometheus\.\w+Opts\{[^}]*?Name:\s*"([a-zA-Z_:][a-zA-Z0-9_:]*)"', src, re.S):
    known.add(name)
    if ctor.startswith(("Histogram", "Summary")):
        known.update({name + "_bucket", name + "_sum", name + "_count"})
prefixes = []
if "NewGoCollector" in src:
    prefixes.append("go_")
if "NewProcessCollector" in src:
    prefixes.append("process_")
if len(known) < 5:
    problems.append(f"{metrics_path}: found only {len(known)} metric names; has the file changed shape?")

KEYWORDS = {"and", "or", "unless", "offset", "bool", "by", "without", "on", "ignoring",
            "group_left", "group_right", "inf", "nan", "start", "end"}

def metric_names(expr):
    """Returns the metric names an expression selects."""
    e = re.sub(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`', '""', expr)  # strings
    e = re.sub(r"\{[^{}]*\}", "{}", e)                                           # label matchers
    e = re.sub(r"\[[^\[\]]*\]", "[]", e)                                         # ranges
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", " ", e)
    e = re.sub(r"\boffset\s+-?[\w$]+", " ", e)
    e = re.sub(r"\$\{?\w+(:\w+)?\}?", " ", e)                                    # Grafana variables
    names = []
    for m in re.finditer(r"(?<![\w.:])[a-zA-Z_:][a-zA-Z0-9_:]*", e):
        word = m.group(0)
        if word.lower() in KEYWORDS or re.match(r"\s*\(", e[m.end():]):
            continue  # a keyword, a function or an aggregation
        names.append(word)
    return names

def check_expr(where, expr, extra=()):
    if not expr or not expr.strip():
        problems.append(f"{where}: empty expr")
        return
    names = metric_names(expr)
    if not names:
        problems.append(f"{where}: selects no metric: {expr}")
    for n in names:
        if n not in known and n not in extra and not n.startswith(tuple(prefixes)):
            problems.append(f"{where}: metric {n!r} is not exported by {metrics_path}")

try:
    dash = json.load(open(dashboard_path, encoding="utf-8"))
except (OSError, ValueError) as err:
    sys.exit(f"{dashboard_path}: not valid JSON: {err}")

if not isinstance(dash.get("schemaVersion"), int) or dash["schemaVersion"] < 36:
    problems.append(f"{dashboard_path}: schemaVersion must be >= 36, is {dash.get('schemaVersion')!r}")
for key in ("uid", "title"):
    if not dash.get(key):
        problems.append(f"{dashboard_path}: missing {key}")
variables = dash.get("templating", {}).get("list", [])
ds_vars = [v["name"] for v in variables if v.get("type") == "datasource" and v.get("query") == "prometheus"]
if not ds_vars:
    problems.append(f"{dashboard_path}: no Prometheus datasource variable in templating")

def all_panels(panels):
    for p in panels:
        yield p
        yield from all_panels(p.get("panels", []))

panels = list(all_panels(dash.get("panels", [])))
if not [p for p in panels if p.get("type") != "row"]:
    problems.append(f"{dashboard_path}: no panels")
ids = set()
for p in panels:
    where = f"{dashboard_path}: panel {p.get('id')} {p.get('title')!r}"
    if p.get("id") in ids:
        problems.append(f"{where}: duplicate id")
    ids.add(p.get("id"))
    if not p.get("title"):
        problems.append(f"{where}: no title")
    if not all(k in p.get("gridPos", {}) for k in ("h", "w", "x", "y")):
        problems.append(f"{where}: incomplete gridPos")
    if p.get("type") == "row":
        continue
    if ds_vars and "${" + ds_vars[0] + "}" not in json.dumps(p.get("datasource")):
        problems.append(f"{where}: datasource is not the ${{{ds_vars[0]}}} variable")
    targets = p.get("targets") or []
    if not targets:
        problems.append(f"{where}: no targets")
    refs = [t.get("refId") for t in targets]
    if len(set(refs)) != len(refs) or None in refs:
        problems.append(f"{where}: refIds missing or repeated")
    for t in targets:
        check_expr(f"{where} target {t.get('refId')}", t.get("expr", ""))
        promql.append(t.get("expr", ""))
for v in variables:
    q = v.get("query")
    if v.get("type") == "query":
        q = q.get("query") if isinstance(q, dict) else q
        inner = re.search(r"label_values\((.*),\s*\w+\)\s*$", q or "")
        if inner:
            check_expr(f"{dashboard_path}: variable {v.get('name')}", inner.group(1))

alert_count = 0
try:
    import yaml
except ImportError:
    print(f"(PyYAML not installed: metric names in {alerts_path} not checked)")
else:
    rules = yaml.safe_load(open(alerts_path, encoding="utf-8"))
    for g in rules.get("groups", []):
        for r in g.get("rules", []):
            alert_count += 1
            check_expr(f"{alerts_path}: {r.get('alert') or r.get('record')}", str(r.get("expr", "")), extra={"up"})
            if r.get("alert") and r.get("labels", {}).get("severity") not in ("warning", "critical"):
                problems.append(f"{alerts_path}: {r.get('alert')}: severity must be warning or critical")

# Fill in Grafana's variables so promtool can parse each query as a rule.
filled = []
for e in promql:
    e = e.replace("$__rate_interval", "5m").replace("$__interval", "1m").replace("$__range", "1h")
    e = re.sub(r"\$\{?\w+(:\w+)?\}?", ".*", e)
    filled.append(e)
with open(exprs_path, "w", encoding="utf-8") as f:
    json.dump({"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query{i}", "expr": e} for i, e in enumerate(filled)]}]}, f)

if problems:
    print("\n".join(problems), file=sys.stderr)
    sys.exit(1)
print(f"ok: {len(panels)} panels, {alert_count} alert rules, {len(known)} metric names from {metrics_path}")
PY
echo "== dashboard queries parse (promtool)"
promtool check rules "$exprs" >/dev/null || { promtool check rules "$exprs"; echo "check.sh: a dashboard query is not valid PromQL" >&2; exit 1; }
echo "ok: dashboard queries are valid PromQL"
