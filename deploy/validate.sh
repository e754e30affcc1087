#!/usr/bin/env bash
# Offline validation of deploy/: Kubernetes overlays, Dockerfiles, compose.
#
#   deploy/validate.sh            (from anywhere; needs python3 with pip)
#
# 1. renders every overlay (and the components, through a test fixture) with
#    deploy/tools/kustomize_render.py, and, when a kubectl with kustomize v5
#    is on PATH, with `kubectl kustomize` too: any difference fails;
# 2. validates every rendered object with `kubernetes-validate --strict` at
#    Kubernetes 1.33 (CRDs such as KEDA's ScaledObject only warn there; the
#    property tests check them);
# 3. lints the Dockerfiles (hadolint) and validates compose.yaml against the
#    compose-spec JSON schema (plus `docker compose config` if available);
# 4. runs the property tests in deploy/tests with pytest.
# Tools are pip-installed (pinned, deploy/tools/requirements.txt) into a
# virtualenv outside the repository: $TESTRUNNER_DEPLOY_VENV, default
# ~/.cache/testrunner-deploy/venv. Exit status is non-zero if any step fails.

set -uo pipefail

DEPLOY="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
OUT="$DEPLOY/.render"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/testrunner-deploy"
VENV="${TESTRUNNER_DEPLOY_VENV:-$CACHE/venv}"
REQ="$DEPLOY/tools/requirements.txt"
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

# ---------------------------------------------------------------- render
header "render overlays (Python kustomize subset)"
rm -rf "$OUT" && mkdir -p "$OUT"
mapfile -t TARGETS < <(cd "$DEPLOY/tests" && "$PY" -c 'import checks; [print(f"{k} {v}") for k, v in checks.TARGETS.items()]')
if [ "${#TARGETS[@]}" -eq 0 ]; then fail "render: no targets"; summary; exit 1; fi
render_ok=1
for t in "${TARGETS[@]}"; do
  name="${t%% *}"; dir="${t#* }"
  if "$PY" "$DEPLOY/tools/kustomize_render.py" "$DEPLOY/$dir" -o "$OUT/$name.yaml"; then
    echo "  $name: $(grep -c '^kind:' "$OUT/$name.yaml") objects -> deploy/.render/$name.yaml"
  else
    render_ok=0
  fi
done
if [ "$render_ok" = 1 ]; then pass "render ${#TARGETS[@]} targets"; else fail "render"; fi

header "cross-check renders with kubectl kustomize"
if command -v kubectl >/dev/null && kubectl version --client 2>/dev/null | grep -q 'Kustomize Version: v5'; then
  kubectl version --client 2>/dev/null | sed 's/^/  /'
  cross_ok=1
  for t in "${TARGETS[@]}"; do
    name="${t%% *}"; dir="${t#* }"
    if kubectl kustomize "$DEPLOY/$dir" > "$OUT/$name.kubectl.yaml" \
       && "$PY" "$DEPLOY/tools/compare_renders.py" "$OUT/$name.yaml" "$OUT/$name.kubectl.yaml"; then
      echo "  $name: identical"
    else
      echo "  $name: DIFFERS from kubectl kustomize"; cross_ok=0
    fi
  done
  if [ "$cross_ok" = 1 ]; then pass "renders identical to kubectl kustomize"; else fail "kubectl cross-check"; fi
else
  echo "  no kubectl with kustomize v5 on PATH"
  skip "kubectl cross-check (no kubectl with kustomize v5)"
fi

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
