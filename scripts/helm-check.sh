#!/usr/bin/env bash
# helm-check.sh: lint the gridstream Helm chart, validate its rendered manifests offline with
# kubeconform in strict mode, and assert the chart's guarantees (restricted security context,
# existingSecret instead of a chart Secret, ServiceMonitor / NetworkPolicy toggles).
#
# Tools are pinned and installed with `go install` into $(go env GOPATH)/bin when missing or at
# another version. Kubernetes JSON schemas are generated once (cached) from the OpenAPI document
# shipped in the k8s.io/kubernetes Go module and the ServiceMonitor CRD shipped in the
# prometheus-operator Go module, both fetched through the Go module proxy: no other network.
# Idempotent; a few seconds when the tools and schemas are cached.
set -euo pipefail

HELM_VERSION=v3.22.0
KUBECONFORM_VERSION=v0.8.0
K8S_SCHEMA_VERSION=v1.35.4            # k8s.io/kubernetes module: api/openapi-spec/swagger.json
PROM_OPERATOR_VERSION=v0.85.0         # ServiceMonitor CRD (jsonnet/prometheus-operator/servicemonitors-crd.json)
KUBE_VERSION=1.35.0                   # --kube-version for helm (Chart.yaml needs >= 1.25)

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
chart="$root/deploy/helm/gridstream"
gobin=$(go env GOBIN)
[[ -n "$gobin" ]] || gobin="$(go env GOPATH)/bin"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/gridstream/helm-check"
schemas="$cache/schemas-k8s-$K8S_SCHEMA_VERSION-po-$PROM_OPERATOR_VERSION-strict"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

failures=0
passes=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
pass() { echo "ok:   $*"; passes=$((passes + 1)); }

# ensure_tool NAME MODULE VERSION PACKAGE: go install PACKAGE@VERSION unless NAME is that version.
ensure_tool() {
  local name=$1 module=$2 version=$3 pkg=$4
  if [[ -x "$gobin/$name" ]] && go version -m "$gobin/$name" 2>/dev/null | grep -qE "^\s+mod\s+$module\s+$version(\s|$)"; then
    return
  fi
  echo "installing $name $version" >&2
  (cd "$work" && GOFLAGS= go install "$pkg@$version")
}
ensure_tool helm helm.sh/helm/v3 "$HELM_VERSION" helm.sh/helm/v3/cmd/helm
ensure_tool kubeconform github.com/yannh/kubeconform "$KUBECONFORM_VERSION" github.com/yannh/kubeconform/cmd/kubeconform
helm="$gobin/helm"
kubeconform="$gobin/kubeconform"

# module_dir MODULE@VERSION: download a module through the Go proxy and print its directory.
module_dir() {
  (cd "$work" && GOFLAGS= go mod download -json "$1") | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p'
}

mkdir -p "$cache"
cat > "$cache/kubeschema.go" <<'GO'
// Command kubeschema turns the Kubernetes OpenAPI v2 document (swagger.json) and CRD JSON files
// into the strict, standalone JSON schemas kubeconform reads: one file per kind named
// <kind>-<group>-<version>.json, objects closed with additionalProperties:false, int-or-string
// as oneOf, optional values nullable.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: kubeschema OUTDIR swagger.json [crd.json...] | kubeschema -check-json FILE...")
		os.Exit(2)
	}
	if os.Args[1] == "-check-json" { // validate JSON files (the Grafana dashboard)
		for _, p := range os.Args[2:] {
			_ = load(p)
		}
		return
	}
	out := os.Args[1]
	if err := os.MkdirAll(out, 0o755); err != nil {
		fail(err)
	}
	n := fromSwagger(out, os.Args[2])
	for _, crd := range os.Args[3:] {
		n += fromCRD(out, crd)
	}
	fmt.Printf("kubeschema: %d schemas in %s\n", n, out)
}

func fail(err error) { fmt.Fprintln(os.Stderr, "kubeschema:", err); os.Exit(1) }

func load(path string) map[string]any {
	b, err := os.ReadFile(path)
	if err != nil {
		fail(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		fail(fmt.Errorf("%s: %w", path, err))
	}
	return m
}

func fileName(kind, group, version string) string {
	suffix := "-" + strings.ToLower(strings.Split(group, ".")[0])
	if group == "" {
		suffix = ""
	}
	return strings.ToLower(kind) + suffix + "-" + strings.ToLower(version) + ".json"
}

func write(out, name string, schema map[string]any) {
	b, err := json.Marshal(schema)
	if err != nil {
		fail(err)
	}
	if err := os.WriteFile(filepath.Join(out, name), b, 0o644); err != nil {
		fail(err)
	}
}

// refs collects the definitions a schema references, transitively.
func refs(node any, defs map[string]any, seen map[string]bool) {
	switch v := node.(type) {
	case map[string]any:
		if r, ok := v["$ref"].(string); ok {
			name := strings.TrimPrefix(r, "#/definitions/")
			if !seen[name] {
				seen[name] = true
				refs(defs[name], defs, seen)
			}
		}
		for _, c := range v {
			refs(c, defs, seen)
		}
	case []any:
		for _, c := range v {
			refs(c, defs, seen)
		}
	}
}

// tighten rewrites a schema in place for kubeconform's strict mode.
func tighten(node any) any {
	switch v := node.(type) {
	case map[string]any:
		if v["format"] == "int-or-string" || v["x-kubernetes-int-or-string"] == true {
			return map[string]any{"oneOf": []any{map[string]any{"type": "string"}, map[string]any{"type": "integer"}, map[string]any{"type": "null"}}}
		}
		for k, c := range v {
			if k == "properties" || k == "definitions" || k == "patternProperties" {
				if m, ok := c.(map[string]any); ok {
					for pk, pc := range m {
						m[pk] = tighten(pc)
					}
				}
				continue
			}
			v[k] = tighten(c)
		}
		if _, ok := v["properties"]; ok && v["x-kubernetes-preserve-unknown-fields"] != true {
			if _, set := v["additionalProperties"]; !set {
				v["additionalProperties"] = false
			}
		}
		if t, ok := v["type"].(string); ok && t != "null" {
			v["type"] = []any{t, "null"}
		}
		return v
	case []any:
		for i, c := range v {
			v[i] = tighten(c)
		}
		return v
	}
	return node
}

func fromSwagger(out, path string) int {
	defs, _ := load(path)["definitions"].(map[string]any)
	// Quantities are written as strings or numbers (cpu: 1, memory: 64Mi).
	if _, ok := defs["io.k8s.apimachinery.pkg.api.resource.Quantity"]; ok {
		defs["io.k8s.apimachinery.pkg.api.resource.Quantity"] = map[string]any{"oneOf": []any{map[string]any{"type": "string"}, map[string]any{"type": "number"}}}
	}
	n := 0
	for _, d := range defs {
		def, _ := d.(map[string]any)
		gvks, _ := def["x-kubernetes-group-version-kind"].([]any)
		if len(gvks) == 0 {
			continue
		}
		// Deep copy through JSON so tightening one kind does not change another.
		raw, _ := json.Marshal(def)
		seen := map[string]bool{}
		refs(def, defs, seen)
		closure := map[string]any{}
		for r := range seen {
			closure[r] = defs[r]
		}
		rawDefs, _ := json.Marshal(closure)
		for _, g := range gvks {
			gvk, _ := g.(map[string]any)
			var schema, sub map[string]any
			_ = json.Unmarshal(raw, &schema)
			_ = json.Unmarshal(rawDefs, &sub)
			schema["$schema"] = "http://json-schema.org/draft-07/schema#"
			schema["definitions"] = sub
			schema = tighten(schema).(map[string]any)
			group, _ := gvk["group"].(string)
			version, _ := gvk["version"].(string)
			kind, _ := gvk["kind"].(string)
			write(out, fileName(kind, group, version), schema)
			n++
		}
	}
	return n
}

func fromCRD(out, path string) int {
	crd := load(path)
	spec, _ := crd["spec"].(map[string]any)
	group, _ := spec["group"].(string)
	names, _ := spec["names"].(map[string]any)
	kind, _ := names["kind"].(string)
	versions, _ := spec["versions"].([]any)
	n := 0
	for _, v := range versions {
		ver, _ := v.(map[string]any)
		name, _ := ver["name"].(string)
		sch, _ := ver["schema"].(map[string]any)
		schema, _ := sch["openAPIV3Schema"].(map[string]any)
		if schema == nil {
			continue
		}
		schema["$schema"] = "http://json-schema.org/draft-07/schema#"
		// metadata is validated by the API server, not by the CRD schema.
		schema = tighten(schema).(map[string]any)
		write(out, fileName(kind, group, name), schema)
		n++
	}
	return n
}
GO

if [[ ! -f "$schemas/.complete" ]]; then
  echo "generating Kubernetes JSON schemas into $schemas" >&2
  k8s=$(module_dir "k8s.io/kubernetes@$K8S_SCHEMA_VERSION")
  po=$(module_dir "github.com/prometheus-operator/prometheus-operator@$PROM_OPERATOR_VERSION")
  [[ -f "$k8s/api/openapi-spec/swagger.json" ]] || { echo "no swagger.json in $k8s" >&2; exit 1; }
  rm -rf "$schemas"
  (cd "$cache" && GOFLAGS= go run kubeschema.go "$schemas" "$k8s/api/openapi-spec/swagger.json" \
    "$po/jsonnet/prometheus-operator/servicemonitors-crd.json")
  touch "$schemas/.complete"
fi
schema_location="$schemas/{{ .ResourceKind }}{{ .KindSuffix }}.json"

render() { # render NAME [helm args...]: template the chart into $work/NAME.yaml
  local name=$1; shift
  "$helm" template gs "$chart" --namespace energy --kube-version "$KUBE_VERSION" "$@" > "$work/$name.yaml"
}
has() { grep -qE -- "$2" "$work/$1.yaml"; }
expect() { # expect NAME REGEX DESCRIPTION
  if has "$1" "$2"; then pass "$1: $3"; else fail "$1: $3 (no match for /$2/)"; fi
}
expect_not() {
  if has "$1" "$2"; then fail "$1: $3 (unexpected /$2/)"; else pass "$1: $3"; fi
}
count() { grep -cE -- "$2" "$work/$1.yaml" || true; }

# 1. helm lint (schema-validates values too).
"$helm" lint --strict "$chart" --kube-version "$KUBE_VERSION" >/dev/null && pass "helm lint (defaults)" || fail "helm lint (defaults)"
"$helm" lint --strict "$chart" --kube-version "$KUBE_VERSION" \
  --set serviceMonitor.enabled=true,networkPolicy.enabled=true,grafanaDashboard.enabled=true,grexLogin.enabled=true \
  >/dev/null && pass "helm lint (everything enabled)" || fail "helm lint (everything enabled)"

# 2. Render the cases.
render defaults
render all --set serviceMonitor.enabled=true,networkPolicy.enabled=true,grafanaDashboard.enabled=true,grexLogin.enabled=true \
  --set secrets.values.GRIDSTREAM_INGRID_CLIENT_SECRET=s3cret --set secrets.values.GRIDSTREAM_TOKEN_KEY=k3y \
  --set nats.credsSecret=nats-user --set-string config.INGRID_ENABLED=true \
  --set 'networkPolicy.natsTo[0].podSelector.matchLabels.app\.kubernetes\.io/name=nats'
render existing --set secrets.existingSecret=gridstream-prod --set 'secrets.keys={GRIDSTREAM_INGRID_CLIENT_SECRET,GRIDSTREAM_TOKEN_KEY}' \
  --set secrets.values.GRIDSTREAM_NATS_TOKEN=ignored --set grexLogin.enabled=true
render envmode --set secrets.existingSecret=gridstream-prod --set secrets.mode=env --set secrets.values.GRIDSTREAM_NATS_USER=u

# 3. kubeconform, strict, against the offline schemas.
for f in defaults all existing envmode; do
  if out=$("$kubeconform" -strict -summary -schema-location "$schema_location" "$work/$f.yaml" 2>&1); then
    pass "kubeconform $f: ${out##*$'\n'}"
  else
    fail "kubeconform $f:"$'\n'"$out"
  fi
done
# The validation itself must bite: a misspelt field is rejected.
sed 's/^  revisionHistoryLimit: 5$/  revisionHistoryLimt: 5/' "$work/defaults.yaml" > "$work/broken.yaml"
if "$kubeconform" -strict -schema-location "$schema_location" "$work/broken.yaml" >/dev/null 2>&1; then
  fail "kubeconform accepted a misspelt Deployment field"
else
  pass "kubeconform rejects a misspelt field"
fi

# 4. Assertions.
expect defaults '^  replicas: 2$' "two replicas by default"
expect defaults 'runAsNonRoot: true' "runAsNonRoot"
expect defaults 'readOnlyRootFilesystem: true' "read-only root filesystem"
expect defaults 'allowPrivilegeEscalation: false' "no privilege escalation"
[[ $(count defaults '^ +- ALL$') -ge 1 ]] && pass "defaults: capabilities drop ALL" || fail "defaults: capabilities drop ALL"
[[ $(count defaults 'type: RuntimeDefault') -ge 2 ]] && pass "defaults: seccomp RuntimeDefault (pod and container)" || fail "defaults: seccomp RuntimeDefault"
expect defaults 'automountServiceAccountToken: false' "no service account token"
expect defaults 'path: /healthz' "liveness on /healthz"
expect defaults 'path: /readyz' "readiness on /readyz"
expect defaults 'value: ":9090"' "GRIDSTREAM_HTTP_ADDR=:9090"
expect defaults '^kind: PodDisruptionBudget$' "PodDisruptionBudget"
expect defaults '^kind: ServiceAccount$' "ServiceAccount"
expect defaults '^kind: Service$' "metrics Service"
expect_not defaults '^kind: ServiceMonitor$' "no ServiceMonitor unless enabled"
expect_not defaults '^kind: NetworkPolicy$' "no NetworkPolicy unless enabled"
expect_not defaults '^kind: Secret$' "no Secret without secret values"
expect_not defaults '^kind: Job$' "no login Job unless enabled"
expect_not defaults '^kind: ConfigMap$' "no dashboard unless enabled"
expect defaults 'name: GRIDSTREAM_LOG_LEVEL' "config map becomes GRIDSTREAM_* env"

expect all '^kind: ServiceMonitor$' "ServiceMonitor when enabled"
expect all '^kind: NetworkPolicy$' "NetworkPolicy when enabled"
expect all 'port: 4222' "NetworkPolicy egress to NATS"
expect all 'port: 443' "NetworkPolicy egress to HTTPS"
expect all '^kind: Secret$' "chart Secret from secrets.values"
expect all 'name: gs-gridstream-secrets' "chart Secret mounted"
expect all 'name: GRIDSTREAM_INGRID_CLIENT_SECRET_FILE' "_FILE variable per secret key"
expect all 'value: "/var/run/secrets/gridstream/GRIDSTREAM_TOKEN_KEY"' "_FILE points into the secret volume"
expect_not all 's3cret' "secret value only base64 in the Secret"
expect all 'checksum/secret:' "pods roll when the chart Secret changes"
expect all 'value: "/etc/gridstream/nats/nats.creds"' "GRIDSTREAM_NATS_CREDS_FILE from nats.credsSecret"
expect all 'secretName: nats-user' "NATS credentials volume"
expect all '^kind: Job$' "login Job when enabled"
expect all 'args: \["login", "grex"\]' "login Job runs connector login grex"
expect all 'gridstream_polls_total' "Grafana dashboard ConfigMap"
expect all 'grafana_dashboard: "1"' "dashboard labelled for the Grafana sidecar"
(cd "$cache" && GOFLAGS= go run kubeschema.go -check-json "$chart/dashboards/gridstream.json") \
  && pass "dashboard JSON parses" || fail "dashboard JSON does not parse"

expect_not existing '^kind: Secret$' "existingSecret: no chart Secret"
expect existing 'secretName: gridstream-prod' "existingSecret mounted"
expect existing 'name: GRIDSTREAM_TOKEN_KEY_FILE' "existingSecret keys get _FILE variables"
expect_not existing "GRIDSTREAM_NATS_TOKEN" "secrets.values ignored with existingSecret"
expect_not existing 'checksum/secret' "no checksum of a Secret the chart does not own"

expect envmode 'secretRef:' "secrets.mode=env uses envFrom secretRef"
expect_not envmode '_FILE' "secrets.mode=env sets no _FILE variables"

# 5. values.schema.json rejects unsafe or malformed values.
for bad in securityContext.readOnlyRootFilesystem=false securityContext.allowPrivilegeEscalation=true \
  podSecurityContext.runAsNonRoot=false secrets.mode=plain nats.url=http://nats:4222 http.port=80 \
  secrets.values.GRIDSTREAM_GREX_CLIENT_ID=x; do
  if "$helm" template gs "$chart" --kube-version "$KUBE_VERSION" --set "$bad" >/dev/null 2>&1; then
    fail "values schema accepted $bad"
  else
    pass "values schema rejects $bad"
  fi
done

echo "helm-check: $passes passed, $failures failed"
((failures == 0))
