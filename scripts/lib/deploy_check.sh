#!/usr/bin/env bash
# shellcheck shell=bash
#
# scripts/lib/deploy_check.sh — offline checks of the deployment material in deploy/:
# Kubernetes manifests, Prometheus rules, Grafana dashboard, Dockerfile. No cluster, no
# Prometheus server, no Docker daemon and no Rust build needed.
#
# Meant to be `source`d, never executed:
#
#     source scripts/lib/deploy_check.sh
#     deploy_check          # 0 when every check passes; 1 (and what failed) otherwise
#
# What it checks:
#   1. yamllint (relaxed rules: deploy/.yamllint) over every YAML file in deploy/.
#   2. kustomize: every kustomization.yaml's resources, components and patch files exist; when
#      `kubectl` (kubectl kustomize) or `kustomize` is installed, base, every overlay and every
#      example render, and the rendered objects are validated too.
#   3. Kubernetes schemas (kubernetes-validate, strict: unknown fields are errors, against
#      Kubernetes $DEPLOY_CHECK_KUBERNETES_VERSION) for every full object in deploy/kubernetes
#      (kustomization files and patches excepted: patches only need to parse and name a target)
#      and every rendered object; plus poolgate's own rules for its pods, on the files and on
#      the renders: numeric non-root user, read-only root, no privilege escalation, all
#      capabilities dropped, RuntimeDefault seccomp, no service-account token, a /tmp volume,
#      node grace period > preStop sleep + SHUTDOWN_GRACE_SECONDS; and a ConfigMap or Secret
#      template entry for every setting in shared/src/config/keys.rs (and no other).
#   4. promtool: `check rules` on alerts.yml and seed_alerts.yml, `test rules` on
#      alerts_test.yml and seed_alerts_test.yml, `check config` on prometheus.yml (its
#      Kubernetes discovery swapped for static targets: Debian's promtool lacks it); and
#      seed_alerts.yml still equals seed 000's text when ../shared/seeds is beside the repo.
#   5. deploy/grafana/pool-dashboard.json: valid JSON, datasource ${DS_PROMETHEUS}, the
#      server_id variable, unique panel ids, and only metric names of poolgate's contract.
#   6. deploy/Dockerfile: builds poolgate-node and poolgate-coordinator (--locked), installs
#      both, runtime stage runs as a numeric non-root USER with no `USER root` after it.
#
# Tools (installed once, reused afterwards):
#   - promtool: Debian's `prometheus` package when `promtool` is missing (root + apt-get).
#     The package's service is kept from starting (a temporary /usr/sbin/policy-rc.d that
#     answers 101), and any prometheus process that the install started anyway is stopped.
#   - yamllint and kubernetes-validate (pinned below) in the git-ignored venv
#     $DEPLOY_CHECK_VENV (default <repo>/.cache/deploy-venv), recreated when the pins change.
#
# Every check runs even if an earlier one failed; the summary names the failed ones. Log
# output goes to stderr.

set -euo pipefail

if [[ -n "${_DEPLOY_CHECK_LIB_LOADED:-}" ]]; then
    return 0
fi
_DEPLOY_CHECK_LIB_LOADED=1

# Pinned tool versions and the Kubernetes version the manifests are validated against (the
# oldest one they must run on). Override per run if needed.
: "${DEPLOY_CHECK_YAMLLINT_VERSION:=1.38.0}"
: "${DEPLOY_CHECK_KUBERNETES_VALIDATE_VERSION:=1.37.0}"
: "${DEPLOY_CHECK_KUBERNETES_VERSION:=1.29}"

_DC_ROOT="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd)"
: "${DEPLOY_CHECK_VENV:=${_DC_ROOT}/.cache/deploy-venv}"

_DC_MARKER=".poolgate-deploy-venv"

_dc_log() {
    printf '[deploy %(%H:%M:%S)T] %s\n' -1 "$*" >&2
}

_dc_err() {
    printf '[deploy %(%H:%M:%S)T] ERROR: %s\n' -1 "$*" >&2
}

# ---------------------------------------------------------------------------
# tools
# ---------------------------------------------------------------------------

# _dc_prometheus_pids — pids of running `prometheus` server processes (none: empty).
_dc_prometheus_pids() {
    pgrep -x prometheus 2>/dev/null | sort || true
}

# _dc_ensure_promtool — promtool on PATH, installing Debian's prometheus package if needed.
_dc_ensure_promtool() {
    if command -v promtool >/dev/null 2>&1; then
        return 0
    fi
    if ((EUID != 0)) || ! command -v apt-get >/dev/null 2>&1; then
        _dc_err "promtool not found: install Debian's 'prometheus' package (it ships promtool)"
        return 1
    fi
    local t0=$SECONDS before after pid policy=/usr/sbin/policy-rc.d own_policy=0 rc=0
    before=$(_dc_prometheus_pids)
    # Keep the package's service from starting: invoke-rc.d and deb-systemd-invoke ask
    # policy-rc.d, and 101 means "action forbidden". An existing policy is left alone.
    if [[ ! -e "$policy" ]]; then
        printf '#!/bin/sh\n# temporary, scripts/lib/deploy_check.sh\nexit 101\n' >"$policy"
        chmod 0755 "$policy"
        own_policy=1
    fi
    _dc_log "promtool missing: installing Debian's prometheus package (service kept stopped)"
    local -a install=(apt-get install -y -q --no-install-recommends prometheus)
    if ! DEBIAN_FRONTEND=noninteractive "${install[@]}" >&2; then
        # The package lists may be missing or stale: update once (unless services.sh did).
        if [[ "${_SVC_APT_UPDATED:-0}" != "1" ]]; then
            DEBIAN_FRONTEND=noninteractive apt-get update -q >&2 || rc=$?
            _SVC_APT_UPDATED=1
        fi
        if ((rc == 0)); then
            DEBIAN_FRONTEND=noninteractive "${install[@]}" >&2 || rc=$?
        fi
    fi
    if ((own_policy)); then
        rm -f -- "$policy"
    fi
    # Nothing may keep running: stop, by pid, any prometheus server the install started.
    after=$(_dc_prometheus_pids)
    for pid in $(comm -13 <(printf '%s\n' "$before") <(printf '%s\n' "$after")); do
        _dc_log "stopping prometheus (pid ${pid}) started by the package install"
        kill "$pid" 2>/dev/null || true
    done
    if ((rc != 0)) || ! command -v promtool >/dev/null 2>&1; then
        _dc_err "installing the prometheus package (for promtool) failed"
        return 1
    fi
    _dc_log "promtool installed in $((SECONDS - t0))s ($(promtool --version 2>&1 | head -n 1))"
}

_dc_venv_want() {
    printf 'yamllint=%s kubernetes-validate=%s' \
        "$DEPLOY_CHECK_YAMLLINT_VERSION" "$DEPLOY_CHECK_KUBERNETES_VALIDATE_VERSION"
}

# _dc_ensure_venv — the venv with yamllint and kubernetes-validate, (re)created when missing,
# half-written or pinned to other versions; the marker file is written last.
_dc_ensure_venv() {
    local dir=$DEPLOY_CHECK_VENV want
    want=$(_dc_venv_want)
    if [[ -f "${dir}/${_DC_MARKER}" && "$(cat -- "${dir}/${_DC_MARKER}")" == "$want" &&
        -x "${dir}/bin/yamllint" && -x "${dir}/bin/python" ]]; then
        return 0
    fi
    local py t0=$SECONDS log
    py=$(command -v python3 || true)
    if [[ -z "$py" ]]; then
        _dc_err "python3 not found (yamllint and kubernetes-validate need it)"
        return 1
    fi
    _dc_log "creating ${dir} (${want})"
    rm -rf -- "$dir"
    mkdir -p -- "$(dirname -- "$dir")" || return 1
    log="$(dirname -- "$dir")/deploy-venv-install.log"
    : >"$log"
    # As scripts/lib/peers.sh: a venv without its own pip, filled by the host's pip when it
    # has --python (pip >= 22.3); otherwise a classic venv.
    local -a pip
    if "$py" -m pip --python "$py" --version >>"$log" 2>&1 && "$py" -m venv --without-pip "$dir" >>"$log" 2>&1; then
        pip=("$py" -m pip --python "${dir}/bin/python")
    else
        rm -rf -- "$dir"
        if ! "$py" -m venv "$dir" >>"$log" 2>&1; then
            _dc_err "python3 -m venv ${dir} failed (see ${log}; Debian needs python3-venv)"
            return 1
        fi
        pip=("${dir}/bin/python" -m pip)
    fi
    if ! "${pip[@]}" install --disable-pip-version-check --quiet \
        "yamllint==${DEPLOY_CHECK_YAMLLINT_VERSION}" \
        "kubernetes-validate==${DEPLOY_CHECK_KUBERNETES_VALIDATE_VERSION}" </dev/null >>"$log" 2>&1; then
        _dc_err "pip install of yamllint/kubernetes-validate into ${dir} failed (see ${log})"
        tail -n 20 -- "$log" >&2 || true
        return 1
    fi
    if ! "${dir}/bin/python" -c 'import kubernetes_validate, yaml, yamllint' >>"$log" 2>&1; then
        _dc_err "the venv ${dir} lacks kubernetes_validate or yamllint (see ${log})"
        return 1
    fi
    printf '%s' "$want" >"${dir}/${_DC_MARKER}"
    _dc_log "venv ready in $((SECONDS - t0))s"
}

# _dc_quiet LOG CMD... — runs CMD with its output in LOG, shown on stderr only if CMD fails.
_dc_quiet() {
    local log=$1 rc=0
    shift
    "$@" >"$log" 2>&1 || rc=$?
    if ((rc != 0)); then
        cat -- "$log" >&2
    fi
    return "$rc"
}

# _dc_kustomize DIR — renders a kustomization to stdout with kubectl or kustomize.
_dc_kustomize() {
    if command -v kubectl >/dev/null 2>&1; then
        kubectl kustomize "$1"
    else
        kustomize build "$1"
    fi
}

# ---------------------------------------------------------------------------
# checks (each returns non-zero on failure and says why on stderr)
# ---------------------------------------------------------------------------

_dc_check_yamllint() {
    "${DEPLOY_CHECK_VENV}/bin/yamllint" --no-warnings -f parsable -c deploy/.yamllint deploy/ >&2
}

# _dc_check_kubernetes RENDER_DIR — schemas, kustomize references, poolgate's pod rules.
# RENDER_DIR holds NAME.yaml renders of the kustomizations (may be empty).
_dc_check_kubernetes() {
    "${DEPLOY_CHECK_VENV}/bin/python" - "$1" "$DEPLOY_CHECK_KUBERNETES_VERSION" <<'PY'
import glob, os, re, sys
import yaml
import kubernetes_validate
from kubernetes_validate import utils as kv

render_dir, k8s_version = sys.argv[1], sys.argv[2]
errors = []
def err(msg):
    errors.append(msg)

def load_all(path):
    try:
        with open(path) as f:
            return [d for d in yaml.safe_load_all(f) if d is not None]
    except yaml.YAMLError as e:
        err(f"{path}: not valid YAML: {e}")
        return []

def validate(obj, where):
    try:
        kubernetes_validate.validate(obj, k8s_version, strict=True)
    except kv.ValidationError as e:
        path = ".".join(str(p) for p in e.path)
        err(f"{where}: {obj.get('kind')}/{obj.get('metadata', {}).get('name')}: {path}: {e.message}")
    except kv.SchemaNotFoundError as e:
        err(f"{where}: {e.message}")
    except Exception as e:  # a malformed object (no kind, ...)
        err(f"{where}: cannot validate {obj!r:.80}: {e}")

# 1. kustomizations: every referenced path exists; collect the patch files.
kustomizations = sorted(glob.glob("deploy/kubernetes/**/kustomization.yaml", recursive=True))
patch_files = set()
for kpath in kustomizations:
    kdir = os.path.dirname(kpath)
    docs = load_all(kpath)
    if len(docs) != 1 or not isinstance(docs[0], dict):
        err(f"{kpath}: expected one mapping")
        continue
    k = docs[0]
    refs = list(k.get("resources", [])) + list(k.get("components", [])) + list(k.get("patchesStrategicMerge", []))
    for p in k.get("patches", []) + k.get("patchesJson6902", []):
        if "path" in p:
            refs.append(p["path"])
            patch_files.add(os.path.normpath(os.path.join(kdir, p["path"])))
        elif "patch" not in p:
            err(f"{kpath}: a patch needs `path` or `patch`")
    for p in k.get("patchesStrategicMerge", []):
        patch_files.add(os.path.normpath(os.path.join(kdir, p)))
    for gen in k.get("configMapGenerator", []) + k.get("secretGenerator", []):
        for f in gen.get("files", []) + gen.get("envs", []):
            refs.append(f.split("=", 1)[-1])
    for ref in refs:
        if "://" in ref:
            err(f"{kpath}: remote reference {ref} (everything must be in the repository)")
            continue
        target = os.path.normpath(os.path.join(kdir, ref))
        if os.path.isdir(target):
            if not any(os.path.isfile(os.path.join(target, n)) for n in ("kustomization.yaml", "kustomization.yml", "Kustomization")):
                err(f"{kpath}: {ref} is a folder without a kustomization.yaml")
        elif not os.path.isfile(target):
            err(f"{kpath}: {ref} does not exist")

# 2. every other YAML file: full objects are validated; patches only need to parse and
#    name what they patch.
count = 0
groups = []  # (where, objects) to check poolgate's pod rules on
for path in sorted(glob.glob("deploy/kubernetes/**/*.y*ml", recursive=True)):
    if os.path.basename(path) in ("kustomization.yaml", "kustomization.yml"):
        continue
    docs = load_all(path)
    if os.path.normpath(path) in patch_files:
        for d in docs:
            if isinstance(d, list):  # JSON 6902
                for op in d:
                    if not (isinstance(op, dict) and "op" in op and "path" in op):
                        err(f"{path}: JSON patch operation without op/path: {op!r:.80}")
            elif not (isinstance(d, dict) and d.get("apiVersion") and d.get("kind") and d.get("metadata", {}).get("name")):
                err(f"{path}: a strategic-merge patch needs apiVersion, kind and metadata.name")
        continue
    for d in docs:
        validate(d, path)
        count += 1
    groups.append((path, docs))

# 3. rendered kustomizations: schemas too.
rendered = sorted(glob.glob(os.path.join(render_dir, "*.yaml")))
for rpath in rendered:
    name = os.path.basename(rpath)[:-5].replace("__", "/")
    objs = load_all(rpath)
    for o in objs:
        validate(o, f"kustomize {name}")
        count += 1
    groups.append((f"kustomize {name}", objs))

# poolgate's rules for its own pods, on the files as written and on every render.
def configmap_data(objs):
    for o in objs:
        if isinstance(o, dict) and o.get("kind") == "ConfigMap" and o["metadata"]["name"].startswith("poolgate-config"):
            return o.get("data", {})
    return None

base_config = configmap_data(load_all("deploy/kubernetes/base/shared/configmap.yaml")) or {}
for label, objs in groups:
    data = configmap_data(objs) or base_config
    grace = int(data.get("SHUTDOWN_GRACE_SECONDS", "30"))
    for o in objs:
        if not isinstance(o, dict) or o.get("kind") not in ("Deployment", "StatefulSet", "Job"):
            continue
        labels = o["spec"]["template"]["metadata"].get("labels", {})
        if labels.get("app.kubernetes.io/name") != "poolgate":
            continue
        where = f"{label}: {o['kind']}/{o['metadata']['name']}"
        pod = o["spec"]["template"]["spec"]
        psc = pod.get("securityContext", {})
        if pod.get("automountServiceAccountToken") is not False:
            err(f"{where}: automountServiceAccountToken must be false")
        for c in pod.get("containers", []):
            sc = {**psc, **c.get("securityContext", {})}
            uid = sc.get("runAsUser")
            if not (sc.get("runAsNonRoot") is True and isinstance(uid, int) and uid > 0):
                err(f"{where}: container {c['name']} must run as a numeric non-root user (runAsNonRoot, runAsUser > 0)")
            if sc.get("readOnlyRootFilesystem") is not True:
                err(f"{where}: container {c['name']} needs readOnlyRootFilesystem: true")
            if sc.get("allowPrivilegeEscalation") is not False:
                err(f"{where}: container {c['name']} needs allowPrivilegeEscalation: false")
            if "ALL" not in sc.get("capabilities", {}).get("drop", []):
                err(f"{where}: container {c['name']} must drop ALL capabilities")
            if sc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
                err(f"{where}: container {c['name']} needs seccompProfile RuntimeDefault")
            if not any(m.get("mountPath") == "/tmp" for m in c.get("volumeMounts", [])):
                err(f"{where}: container {c['name']} needs a writable /tmp (emptyDir)")
            if labels.get("app.kubernetes.io/component") == "node":
                cmd = c.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
                pre = int(cmd[1]) if len(cmd) == 2 and cmd[0] == "sleep" and cmd[1].isdigit() else 0
                if pre == 0:
                    err(f"{where}: the node needs a preStop sleep so endpoints update before SIGTERM")
                tgp = pod.get("terminationGracePeriodSeconds", 30)
                if tgp <= pre + grace:
                    err(f"{where}: terminationGracePeriodSeconds {tgp} must exceed preStop {pre} + SHUTDOWN_GRACE_SECONDS {grace}")

# 4. every setting has an entry: the base ConfigMap or the Secret template.
keys_rs = "shared/src/config/keys.rs"
if os.path.isfile(keys_rs):
    text = open(keys_rs).read()
    names = set(re.findall(r'key\(\s*"([A-Z0-9_]+)"', text)) | set(re.findall(r'env:\s*"([A-Z0-9_]+)"', text))
    have = set()
    for f in ("deploy/kubernetes/base/shared/configmap.yaml", "deploy/kubernetes/base/secret.example.yaml"):
        for d in load_all(f):
            have |= set((d.get("data") or {}).keys()) | set((d.get("stringData") or {}).keys())
    missing = sorted(names - have)
    unknown = sorted(have - names)
    if not names:
        err(f"{keys_rs}: found no setting names (has its format changed?)")
    if missing:
        err(f"settings in {keys_rs} missing from the base ConfigMap/Secret template: {', '.join(missing)}")
    if unknown:
        err(f"ConfigMap/Secret template keys that are not settings in {keys_rs}: {', '.join(unknown)}")

for e in errors:
    print(f"  {e}", file=sys.stderr)
print(f"  {count} Kubernetes objects validated against {k8s_version} ({len(rendered)} kustomize renders), "
      f"{len(kustomizations)} kustomizations, {len(errors)} problem(s)", file=sys.stderr)
sys.exit(1 if errors else 0)
PY
}

# _dc_check_prometheus TMPDIR
_dc_check_prometheus() {
    local rc=0 tmp=$1
    # promtool's output is shown only when it fails.
    _dc_quiet "${tmp}/promtool.log" promtool check rules deploy/prometheus/alerts.yml deploy/prometheus/seed_alerts.yml || rc=1
    _dc_quiet "${tmp}/promtool.log" promtool test rules deploy/prometheus/alerts_test.yml deploy/prometheus/seed_alerts_test.yml || rc=1
    # Debian's promtool is built without Kubernetes service discovery: check a copy of
    # prometheus.yml whose kubernetes_sd_configs are swapped for static targets (everything
    # else, relabelling and rule files included, is checked as written).
    "${DEPLOY_CHECK_VENV}/bin/python" - deploy/prometheus/prometheus.yml "${tmp}/prometheus.yml" <<'PY' || rc=1
import os, sys, yaml
src, dst = sys.argv[1], sys.argv[2]
cfg = yaml.safe_load(open(src))
base = os.path.dirname(os.path.abspath(src))
cfg["rule_files"] = [os.path.join(base, f) for f in cfg.get("rule_files", [])]
for job in cfg.get("scrape_configs", []):
    if job.pop("kubernetes_sd_configs", None) is not None:
        job.setdefault("static_configs", []).append({"targets": ["localhost:4444"]})
yaml.safe_dump(cfg, open(dst, "w"), sort_keys=False)
PY
    _dc_quiet "${tmp}/promtool.log" promtool check config "${tmp}/prometheus.yml" || rc=1
    if ((rc == 0)); then
        printf '  promtool: rules, unit tests (alerts_test.yml, seed_alerts_test.yml) and prometheus.yml ok\n' >&2
    fi
    return "$rc"
}

# seed_alerts.yml minus its leading comment must equal seed 000's alert block.
_dc_check_seed_alerts() {
    local seed
    seed=$(compgen -G "${_DC_ROOT}/../shared/seeds/000_*.txt" | head -n 1 || true)
    if [[ -z "$seed" ]]; then
        _dc_log "seed 000 not beside the repository (../shared/seeds): verbatim check skipped"
        return 0
    fi
    if ! diff <(awk '/^Add to `prometheus-alerts.yml`:/{f=1;next} f&&/^```yaml/{g=1;next} g&&/^```/{exit} g{print}' "$seed") \
        <(sed '/^#/d' deploy/prometheus/seed_alerts.yml) >&2; then
        _dc_err "deploy/prometheus/seed_alerts.yml no longer equals the alert rules of ${seed}"
        return 1
    fi
}

_dc_check_dashboard() {
    "${DEPLOY_CHECK_VENV}/bin/python" - deploy/grafana/pool-dashboard.json <<'PY'
import json, re, sys
path = sys.argv[1]
# poolgate's metric contract (node /metrics, coordinator /metrics).
CONTRACT = {
    "mcpgateway_pool_sessions_total", "mcpgateway_pool_acquisitions_total",
    "mcpgateway_pool_releases_total", "mcpgateway_pool_creates_total",
    "mcpgateway_pool_destroys_total", "mcpgateway_pool_timeouts_total",
    "mcpgateway_pool_errors_total", "mcpgateway_pool_rebinds_total",
    "mcpgateway_pool_wait_time_seconds_bucket", "mcpgateway_pool_wait_time_seconds_sum",
    "mcpgateway_pool_wait_time_seconds_count", "mcpgateway_pool_session_age_seconds",
    "mcpgateway_pool_health_score", "mcpgateway_pool_max_size", "mcpgateway_pool_min_size",
    "poolgate_leader_present", "poolgate_leader_term",
    "mcp_gateway_request_duration_seconds_bucket", "mcp_gateway_request_duration_seconds_sum",
    "mcp_gateway_request_duration_seconds_count", "mcp_gateway_requests_total",
    "poolgate_control_plane_up", "poolgate_node_draining", "poolgate_build_info",
    "poolgate_coordinator_is_leader",
}
WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
         "sum", "max", "min", "avg", "count", "rate", "irate", "increase", "histogram_quantile",
         "label_values", "le", "bool", "offset", "absent", "topk", "bottomk"}
errors = []
try:
    d = json.load(open(path))
except Exception as e:
    print(f"  {path}: not valid JSON: {e}", file=sys.stderr)
    sys.exit(1)
if not isinstance(d.get("schemaVersion"), int) or not d.get("uid") or not d.get("title"):
    errors.append("needs schemaVersion, uid and title")
tpl = {v.get("name"): v for v in d.get("templating", {}).get("list", [])}
if tpl.get("DS_PROMETHEUS", {}).get("type") != "datasource":
    errors.append("needs the datasource variable DS_PROMETHEUS")
sid = tpl.get("server_id", {})
q = sid.get("query")
q = q.get("query") if isinstance(q, dict) else q
if q != "label_values(mcpgateway_pool_sessions_total, server_id)":
    errors.append("needs the server_id variable from label_values(mcpgateway_pool_sessions_total, server_id)")
ids = []
exprs = 0
for p in d.get("panels", []):
    ids.append(p.get("id"))
    if p.get("type") == "row":
        continue
    if p.get("datasource", {}).get("uid") != "${DS_PROMETHEUS}":
        errors.append(f"panel {p.get('title')!r}: datasource must be ${{DS_PROMETHEUS}}")
    if not p.get("targets"):
        errors.append(f"panel {p.get('title')!r}: no query")
    for t in p.get("targets", []):
        expr = t.get("expr", "")
        exprs += 1
        if t.get("datasource", {}).get("uid") != "${DS_PROMETHEUS}":
            errors.append(f"panel {p.get('title')!r} {t.get('refId')}: datasource must be ${{DS_PROMETHEUS}}")
        bare = re.sub(r'\{[^}]*\}|"[^"]*"|\[[^\]]*\]', " ", expr)
        for name in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", bare):
            if name in WORDS or name in CONTRACT:
                continue
            if re.fullmatch(r"(server_id|status|node|kind|quantile|version|le|instance)", name):
                continue
            errors.append(f"panel {p.get('title')!r}: {name!r} is not a metric of poolgate's contract")
if len(ids) != len(set(ids)) or None in ids:
    errors.append("panel ids must be unique")
for e in errors:
    print(f"  {path}: {e}", file=sys.stderr)
print(f"  {path}: {len(ids)} panels, {exprs} queries, {len(errors)} problem(s)", file=sys.stderr)
sys.exit(1 if errors else 0)
PY
}

_dc_check_dockerfile() {
    "${DEPLOY_CHECK_VENV}/bin/python" - deploy/Dockerfile <<'PY'
import re, sys
path = sys.argv[1]
lines = []
cont = ""
for raw in open(path):
    line = raw.rstrip("\n")
    if line.lstrip().startswith("#"):
        continue
    if line.endswith("\\"):
        cont += line[:-1] + " "
        continue
    lines.append((cont + line).strip())
    cont = ""
lines = [l for l in lines if l]
errors = []
text = "\n".join(lines)
build = [l for l in lines if re.search(r"\bcargo build\b", l)]
if not build:
    errors.append("no `cargo build` step")
for l in build:
    for need in ("--release", "--locked", "-p poolgate-node", "-p poolgate-coordinator"):
        if need not in l:
            errors.append(f"`cargo build` lacks {need}")
    for binary in ("target/release/poolgate-node", "target/release/poolgate-coordinator"):
        if binary not in l:
            errors.append(f"the build step does not install {binary}")
froms = [i for i, l in enumerate(lines) if l.upper().startswith("FROM ")]
if len(froms) < 2:
    errors.append("expected a multi-stage build (builder and runtime)")
final = lines[froms[-1]:] if froms else []
users = [(i, l.split(None, 1)[1] if len(l.split(None, 1)) > 1 else "") for i, l in enumerate(final) if l.upper().startswith("USER ")]
if not users:
    errors.append("the runtime stage has no USER")
else:
    for i, u in users:
        m = re.fullmatch(r"(\d+)(?::(\d+))?", u.strip())
        if not m:
            errors.append(f"USER {u!r} must be numeric (uid or uid:gid) so runAsNonRoot can verify it")
        elif int(m.group(1)) == 0 or (m.group(2) is not None and int(m.group(2)) == 0):
            errors.append(f"USER {u!r} is root")
    last = users[-1][0]
    if any(l.upper().startswith("RUN ") for l in final[last:]):
        errors.append("no RUN after the final USER (it would run as that user anyway; keep USER last)")
if not any(l.upper().startswith("COPY ") and "--from=builder" in l for l in final):
    errors.append("the runtime stage copies nothing from the builder")
if not re.search(r"^EXPOSE\b.*\b4444\b", text, re.M):
    errors.append("EXPOSE 4444 (the node's default PORT) missing")
if re.search(r"^HEALTHCHECK\b", text, re.M):
    errors.append("no HEALTHCHECK: Kubernetes probes check health")
for e in errors:
    print(f"  {path}: {e}", file=sys.stderr)
sys.exit(1 if errors else 0)
PY
}

# ---------------------------------------------------------------------------
# deploy_check — runs every check; 0 when all pass
# ---------------------------------------------------------------------------

# Runs in a subshell: its cd, temp files and trap stay inside.
deploy_check() (
    set -euo pipefail
    cd -- "$_DC_ROOT" || exit 1
    local t0=$SECONDS
    _dc_ensure_promtool || exit 1
    _dc_ensure_venv || exit 1

    local render
    render=$(mktemp -d "${TMPDIR:-/tmp}/poolgate-deploy-check.XXXXXX") || exit 1
    trap 'rm -rf -- "$render"' EXIT

    local -a failed=()
    local name

    # Renders: base, overlays and examples (NAME.yaml with / as __).
    if command -v kubectl >/dev/null 2>&1 || command -v kustomize >/dev/null 2>&1; then
        local dir
        while IFS= read -r dir; do
            dir=${dir%/kustomization.yaml}
            case "$dir" in
            */overlays/*/* | */base/* | */components/*) continue ;; # parts of a bigger one
            esac
            name=${dir#deploy/kubernetes/}
            if ! _dc_kustomize "$dir" >"${render}/${name//\//__}.yaml" 2>"${render}/err"; then
                _dc_err "kustomize cannot render ${dir}:"
                cat -- "${render}/err" >&2
                rm -f -- "${render}/${name//\//__}.yaml"
                failed+=("kustomize:${name}")
            fi
        done < <(find deploy/kubernetes -name kustomization.yaml | sort)
        rm -f -- "${render}/err"
    else
        _dc_log "neither kubectl nor kustomize installed: kustomizations checked for missing files only"
    fi

    for name in yamllint kubernetes prometheus seed_alerts dashboard dockerfile; do
        local s=$SECONDS rc=0
        case $name in
        kubernetes) _dc_check_kubernetes "$render" || rc=$? ;;
        prometheus) _dc_check_prometheus "$render" || rc=$? ;;
        *) "_dc_check_${name}" || rc=$? ;;
        esac
        if ((rc == 0)); then
            _dc_log "ok: ${name} ($((SECONDS - s))s)"
        else
            _dc_err "FAILED: ${name}"
            failed+=("$name")
        fi
    done

    if ((${#failed[@]} > 0)); then
        _dc_err "deploy checks failed: ${failed[*]} ($((SECONDS - t0))s)"
        exit 1
    fi
    _dc_log "all deploy checks passed ($((SECONDS - t0))s)"
)
