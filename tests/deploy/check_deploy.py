#!/usr/bin/env python3
"""Consistency checks of deploy/ against the Dockerfile and the binaries.

Usage: check_deploy.py REPO_ROOT BUILD_DIR

- Every YAML file under deploy/ parses (multi-document).
- Compose build targets exist in the Dockerfile; published ports are EXPOSEd
  by the target; every --flag given to a binary (compose command, k8s args,
  healthcheck) appears in that binary's own help text.
- Prometheus scrape ports match the metrics ports the services listen on.
- promtool accepts the Prometheus config and the alert rules.
- Every care_* metric used by the Grafana dashboard and the alert rules is
  registered by care-server or care-worker (their metrics.cc).
Prints one line per problem and exits 1 if there is any.
"""
import json
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile

import yaml

root = pathlib.Path(sys.argv[1])
build = pathlib.Path(sys.argv[2])
deploy = root / "deploy"
problems = []


def problem(msg):
    problems.append(msg)
    print("FAIL:", msg)


def help_text(argv):
    out = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    return out.stdout + out.stderr


# The binaries' own help is the truth about their flags.
HELP = {
    "care-server": help_text([build / "server/care-server", "--help"]),
    "serve": help_text([build / "worker/cli/care-worker", "help", "serve"]),
    "carectl": help_text([build / "client/carectl", "help", "health"]),
}


def check_flags(where, binary, args):
    text = HELP[binary]
    for arg in args:
        m = re.match(r"--([a-z0-9-]+)", str(arg))
        if m and f"--{m.group(1)}" not in text:
            problem(f"{where}: flag --{m.group(1)} is not a {binary} flag")


# 1. YAML parses.
docs = {}
for path in sorted(list(deploy.rglob("*.yaml")) + list(deploy.rglob("*.yml"))):
    try:
        docs[path.relative_to(deploy).as_posix()] = [
            d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    except yaml.YAMLError as e:
        problem(f"{path}: does not parse: {e}")
for path in deploy.rglob("*.json"):
    try:
        json.loads(path.read_text())
    except ValueError as e:
        problem(f"{path}: invalid JSON: {e}")

# 2. Compose against the Dockerfile and the binaries.
dockerfile = (root / "Dockerfile").read_text()
stages = {}
current = None
for line in dockerfile.splitlines():
    m = re.match(r"FROM\s+\S+\s+AS\s+(\S+)", line, re.I)
    if m:
        current = m.group(1)
        stages[current] = {"expose": set()}
    m = re.match(r"EXPOSE\s+(.*)", line)
    if m and current:
        stages[current]["expose"] |= {int(p) for p in m.group(1).split()}
# EXPOSE is inherited from the parent stage (runtime) by FROM runtime AS x.
compose = docs["compose.yaml"][0]
metrics_ports = {}
for name, svc in compose["services"].items():
    target = (svc.get("build") or {}).get("target")
    if target is None:
        continue
    if target not in stages:
        problem(f"compose {name}: build target {target} not in Dockerfile")
        continue
    binary = {"server": "care-server", "worker": "serve"}[target]
    command = svc.get("command", [])
    args = command[1:] if target == "worker" else command
    if target == "worker" and command[:1] != ["serve"]:
        problem(f"compose {name}: worker command must start with serve")
    check_flags(f"compose {name}", binary, args)
    for port in svc.get("ports", []):
        container_port = int(str(port).split(":")[-1])
        if container_port not in stages[target]["expose"]:
            problem(f"compose {name}: port {container_port} not EXPOSEd by "
                    f"Dockerfile target {target}")
    for arg in args:
        m = re.match(r"--metrics-listen=.*:(\d+)$", arg)
        if m:
            metrics_ports[name] = int(m.group(1))
            if int(m.group(1)) not in stages[target]["expose"]:
                problem(f"compose {name}: metrics port {m.group(1)} not "
                        f"EXPOSEd by target {target}")
    hc = (svc.get("healthcheck") or {}).get("test", [])
    if hc[:3] == ["CMD", "carectl", "health"]:
        check_flags(f"compose {name} healthcheck", "carectl", hc[3:])

# 3. Prometheus targets point at the services' metrics ports.
prom = docs["prometheus/prometheus.yml"][0]
for job in prom["scrape_configs"]:
    for sc in job["static_configs"]:
        for target in sc["targets"]:
            host, port = target.rsplit(":", 1)
            if host not in metrics_ports:
                problem(f"prometheus {job['job_name']}: unknown host {host}")
            elif metrics_ports[host] != int(port):
                problem(f"prometheus {job['job_name']}: {target} but {host} "
                        f"serves metrics on {metrics_ports[host]}")

# 4. Kubernetes: flags, ports, images.
for fname in ("k8s/server.yaml", "k8s/worker.yaml"):
    for doc in docs[fname]:
        if doc.get("kind") not in ("StatefulSet", "Deployment"):
            continue
        pod = doc["spec"]["template"]
        for c in pod["spec"]["containers"]:
            args = c.get("args", [])
            binary = "serve" if args[:1] == ["serve"] else "care-server"
            check_flags(f"{fname} {c['name']}", binary,
                        args[1:] if binary == "serve" else args)
            target = "worker" if binary == "serve" else "server"
            for p in c.get("ports", []):
                if p["containerPort"] not in stages[target]["expose"]:
                    problem(f"{fname}: containerPort {p['containerPort']} not "
                            f"EXPOSEd by Dockerfile target {target}")
            ann = pod["metadata"].get("annotations", {})
            port = ann.get("prometheus.io/port")
            if port and int(port) not in [p["containerPort"]
                                          for p in c.get("ports", [])]:
                problem(f"{fname}: scrape port {port} is not a container port")
kust = docs["k8s/kustomization.yaml"][0]
for res in kust["resources"]:
    if not (deploy / "k8s" / res).exists():
        problem(f"k8s/kustomization.yaml: missing resource {res}")

# 5. promtool.
promtool = shutil.which("promtool")
if promtool is None:
    problem("promtool not found (apt package prometheus)")
else:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = dict(prom)
        shutil.copy(deploy / "prometheus/alerts.yml", tmp + "/alerts.yml")
        cfg["rule_files"] = [tmp + "/alerts.yml"]
        pathlib.Path(tmp, "prometheus.yml").write_text(yaml.safe_dump(cfg))
        for argv in ([promtool, "check", "config", tmp + "/prometheus.yml"],
                     [promtool, "check", "rules", tmp + "/alerts.yml"]):
            r = subprocess.run(argv, capture_output=True, text=True)
            if r.returncode != 0:
                problem(f"{' '.join(argv[1:3])}: {r.stdout}{r.stderr}")

# 6. Metric names used by dashboards and alerts are exported.
exported = set()
for src in ("server/metrics.cc", "worker/service/metrics.cc"):
    exported |= set(re.findall(r'"(care_[a-z0-9_]+)"', (root / src).read_text()))
if not exported:
    problem("no care_* metric names found in the services' metrics.cc")


def used_names(text):
    names = set()
    for n in re.findall(r"\bcare_[a-z0-9_]+", text):
        names.add(re.sub(r"_(bucket|sum|count)$", "", n))
    return names


used = {}
for path in deploy.rglob("*.json"):
    for n in used_names(path.read_text()):
        used.setdefault(n, path.name)
for group in docs["prometheus/alerts.yml"][0]["groups"]:
    for rule in group["rules"]:
        for n in used_names(rule["expr"]):
            used.setdefault(n, "alerts.yml")
for n, where in sorted(used.items()):
    if n not in exported:
        problem(f"{where}: metric {n} is not exported by any service")
if len(used) < 10:
    problem(f"only {len(used)} metrics used by dashboards/alerts")

print(f"{len(problems)} problems; {len(used)} metrics used, "
      f"{len(exported)} exported")
sys.exit(1 if problems else 0)
