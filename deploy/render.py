#!/usr/bin/env python3
"""Renders the deployment files from seeds/network.toml, so a city enabled there is deployed too.

Writes deploy/compose.yaml and deploy/compose/network.toml (one machine, Docker Compose), and
deploy/k8s/*.yaml (a namespace per city and one for the clearing house). `--check` renders into
memory and fails when a committed file differs: CI runs it, so the files never drift from the
network file. Standard library only.
"""

import base64
import hashlib
import pathlib
import sys
import tomllib

ROOT = pathlib.Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
SERVICES = ("identity", "catalog", "settlement")
GRPC_NAMES = {
    "identity": "yitong.identity.v1.IdentityService",
    "catalog": "yitong.catalog.v1.CatalogService",
    "settlement": "yitong.settlement.v1.SettlementService",
    "ledger": "yitong.ledger.v1.LedgerService",
}
HEADER = "# Rendered by deploy/render.py from seeds/network.toml: edit those, then run it again.\n"


def port(endpoint: str) -> int:
    return int(endpoint.rsplit(":", 1)[1].strip("/"))


def slug(city: dict) -> str:
    return city["name"].lower().replace("'", "")


def dev_key(purpose: str, code: str) -> str:
    """The well-known development keys `yitong dev` uses (yitong_identity::PiiKeys and
    VoucherSigner::for_development): fine for a demonstration, never for real data."""
    text = f"yitong development {purpose} key for {code}"
    return base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


def network_toml(network: dict, host) -> str:
    """The network file with every endpoint rewritten by `host(city_or_None, service, port)`."""
    house = network["clearing_house"]
    lines = [
        HEADER.rstrip(),
        "",
        "[clearing_house]",
        f'name = "{house["name"]}"',
        f'ledger = "http://{host(None, "ledger", port(house["ledger"]))}"',
    ]
    for city in network["city"]:
        lines += [
            "",
            "[[city]]",
            f'code = "{city["code"]}"',
            f'name = "{city["name"]}"',
            f'name_zh = "{city["name_zh"]}"',
            f'enabled = {"true" if city["enabled"] else "false"}',
        ]
        for service in SERVICES:
            lines.append(f'{service} = "http://{host(city, service, port(city[service]))}"')
        lines.append(f'e_voucher_key = "{city["e_voucher_key"]}"')
        if "prepaid_low_balance" in city:
            lines.append(f'prepaid_low_balance = "{city["prepaid_low_balance"]}"')
    return "\n".join(lines) + "\n"


def compose(network: dict) -> dict:
    enabled = [city for city in network["city"] if city["enabled"]]
    files = {}
    files["compose/network.toml"] = network_toml(
        network, lambda city, service, p: f"{slug(city) + '-' if city else ''}{service}:{p}"
    )
    out = [
        HEADER,
        "# Yitong on one machine: PostgreSQL, the enabled cities' identity, catalog and settlement",
        "# services and the clearing house's ledger, each its own container from one image.",
        "# Development keys and seed data: a demonstration, not a production deployment.",
        "# Run from the repository root: docker compose -f deploy/compose.yaml up",
        "name: yitong",
        "",
        "x-yitong: &yitong",
        "  image: yitong:latest",
        "  build:",
        "    context: ..",
        "    dockerfile: deploy/Containerfile",
        "  restart: unless-stopped",
        "  volumes:",
        "    - ./compose/network.toml:/etc/yitong/network.toml:ro",
        "  depends_on:",
        "    prepare:",
        "      condition: service_completed_successfully",
        "",
        "services:",
        "  postgres:",
        "    image: postgres:15",
        "    environment:",
        "      POSTGRES_USER: yitong",
        "      POSTGRES_PASSWORD: yitong",
        "      POSTGRES_DB: yitong",
        "    volumes:",
        "      - postgres:/var/lib/postgresql/data",
        "    healthcheck:",
        '      test: ["CMD", "pg_isready", "-U", "yitong"]',
        "      interval: 2s",
        "      retries: 30",
        "",
        "  # Creates every store and loads the seeds, sealed with the development keys.",
        "  prepare:",
        "    image: yitong:latest",
        "    build:",
        "      context: ..",
        "      dockerfile: deploy/Containerfile",
        "    environment:",
        "      YITONG_DATABASE_URL: postgres://yitong:yitong@postgres:5432/yitong",
        '    entrypoint: ["sh", "-c"]',
        "    command:",
        '      - "yitong migrate --seeds /etc/yitong/seeds && yitong seed --dev-keys --seeds /etc/yitong/seeds"',
        "    depends_on:",
        "      postgres:",
        "        condition: service_healthy",
        "",
    ]
    for city in enabled:
        for service in SERVICES:
            p = port(city[service])
            out += [
                f"  {slug(city)}-{service}:",
                "    <<: *yitong",
                f'    command: ["serve", "{service}", "--city", "{city["code"]}", "--listen", "0.0.0.0:{p}"]',
                "    environment:",
                "      YITONG_DATABASE_URL: postgres://yitong:yitong@postgres:5432/yitong",
                "      YITONG_NETWORK: /etc/yitong/network.toml",
            ]
            if service == "identity":
                out += [
                    f"      YITONG_PII_SEAL_KEY: {dev_key('seal', city['code'])}",
                    f"      YITONG_PII_HASH_KEY: {dev_key('hash', city['code'])}",
                    f"      YITONG_E_VOUCHER_SIGNING_KEY: {dev_key('e-voucher', city['code'])}",
                ]
            out += ["    ports:", f'      - "{p}:{p}"', ""]
    ledger = port(network["clearing_house"]["ledger"])
    out += [
        "  ledger:",
        "    <<: *yitong",
        f'    command: ["serve", "ledger", "--listen", "0.0.0.0:{ledger}"]',
        "    environment:",
        "      YITONG_DATABASE_URL: postgres://yitong:yitong@postgres:5432/yitong",
        "      YITONG_NETWORK: /etc/yitong/network.toml",
        "    ports:",
        f'      - "{ledger}:{ledger}"',
        "",
        "volumes:",
        "  postgres: {}",
    ]
    files["compose.yaml"] = "\n".join(out) + "\n"
    return files


def namespace(city) -> str:
    return f"yitong-{slug(city)}" if city else "yitong-clearing"


def k8s_workload(city, service: str, p: int, code: str | None) -> list[str]:
    ns = namespace(city)
    args = ["serve", service] + (["--city", code] if code else []) + ["--listen", f"0.0.0.0:{p}"]
    env = [
        "            - name: YITONG_NETWORK",
        "              value: /etc/yitong/network.toml",
        "            - name: YITONG_DATABASE_URL",
        "              valueFrom:",
        "                secretKeyRef:",
        "                  name: yitong-db-app",
        "                  key: uri",
    ]
    if service == "identity":
        for name in ("YITONG_PII_SEAL_KEY", "YITONG_PII_HASH_KEY", "YITONG_E_VOUCHER_SIGNING_KEY"):
            env += [
                f"            - name: {name}",
                "              valueFrom:",
                "                secretKeyRef:",
                "                  name: yitong-identity-keys",
                f"                  key: {name}",
            ]
    probe = lambda kind, delay: [  # noqa: E731
        f"          {kind}:",
        "            grpc:",
        f"              port: {p}",
        f"              service: {GRPC_NAMES[service]}",
        f"            initialDelaySeconds: {delay}",
        "            periodSeconds: 5",
    ]
    return [
        "---",
        "apiVersion: apps/v1",
        "kind: Deployment",
        "metadata:",
        f"  name: {service}",
        f"  namespace: {ns}",
        "  labels:",
        f"    app.kubernetes.io/name: {service}",
        "    app.kubernetes.io/part-of: yitong",
        "spec:",
        "  replicas: 2",
        "  selector:",
        "    matchLabels:",
        f"      app.kubernetes.io/name: {service}",
        "  template:",
        "    metadata:",
        "      labels:",
        f"        app.kubernetes.io/name: {service}",
        "        app.kubernetes.io/part-of: yitong",
        "    spec:",
        "      securityContext:",
        "        runAsNonRoot: true",
        "        runAsUser: 10001",
        "      containers:",
        "        - name: yitong",
        "          image: yitong:latest",
        f"          args: [{', '.join(chr(34) + a + chr(34) for a in args)}]",
        "          ports:",
        "            - name: grpc",
        f"              containerPort: {p}",
        "          env:",
        *env,
        *probe("readinessProbe", 2),
        *probe("livenessProbe", 10),
        "          resources:",
        "            requests:",
        "              cpu: 250m",
        "              memory: 128Mi",
        "            limits:",
        "              memory: 512Mi",
        "          securityContext:",
        "            allowPrivilegeEscalation: false",
        "            readOnlyRootFilesystem: true",
        "          volumeMounts:",
        "            - name: network",
        "              mountPath: /etc/yitong/network.toml",
        "              subPath: network.toml",
        "      volumes:",
        "        - name: network",
        "          configMap:",
        "            name: yitong-network",
        "---",
        "apiVersion: v1",
        "kind: Service",
        "metadata:",
        f"  name: {service}",
        f"  namespace: {ns}",
        "spec:",
        "  selector:",
        f"    app.kubernetes.io/name: {service}",
        "  ports:",
        "    - name: grpc",
        f"      port: {p}",
        "      targetPort: grpc",
        "      appProtocol: grpc",
        "---",
        "apiVersion: policy/v1",
        "kind: PodDisruptionBudget",
        "metadata:",
        f"  name: {service}",
        f"  namespace: {ns}",
        "spec:",
        "  minAvailable: 1",
        "  selector:",
        "    matchLabels:",
        f"      app.kubernetes.io/name: {service}",
    ]


def k8s_namespace_files(network: dict, city) -> list[str]:
    """The ConfigMap holding the cluster's network file, for one namespace."""
    cluster_network = network_toml(
        network,
        lambda c, service, p: f"{service}.{namespace(c)}.svc.cluster.local:{p}",
    )
    data = "\n".join("    " + line if line else "" for line in cluster_network.splitlines())
    return [
        "---",
        "apiVersion: v1",
        "kind: ConfigMap",
        "metadata:",
        "  name: yitong-network",
        f"  namespace: {namespace(city)}",
        "data:",
        "  network.toml: |",
        data,
    ]


def k8s_database(city) -> list[str]:
    """PostgreSQL through the CloudNativePG operator: a primary and a standby; the operator
    writes the `yitong-db-app` secret whose `uri` the services read."""
    return [
        "---",
        "apiVersion: postgresql.cnpg.io/v1",
        "kind: Cluster",
        "metadata:",
        "  name: yitong-db",
        f"  namespace: {namespace(city)}",
        "spec:",
        "  instances: 2",
        "  imageName: ghcr.io/cloudnative-pg/postgresql:15",
        "  storage:",
        "    size: 20Gi",
        "  bootstrap:",
        "    initdb:",
        "      database: yitong",
        "      owner: yitong",
    ]


def k8s(network: dict) -> dict:
    enabled = [city for city in network["city"] if city["enabled"]]
    files = {}
    namespaces = [HEADER.rstrip()]
    for ns in [namespace(c) for c in enabled] + [namespace(None)]:
        namespaces += ["---", "apiVersion: v1", "kind: Namespace", "metadata:", f"  name: {ns}"]
    files["k8s/namespaces.yaml"] = "\n".join(namespaces) + "\n"
    for city in enabled:
        docs = [HEADER.rstrip(), f"# {city['name']} ({city['name_zh']}, {city['code']}): identity, catalog, settlement."]
        docs += k8s_namespace_files(network, city)
        for service in SERVICES:
            docs += k8s_workload(city, service, port(city[service]), city["code"])
        files[f"k8s/{slug(city)}.yaml"] = "\n".join(docs) + "\n"
        files[f"k8s/{slug(city)}-database.yaml"] = "\n".join([HEADER.rstrip(), *k8s_database(city)]) + "\n"
    ledger = [HEADER.rstrip(), "# The clearing house: the ledger."]
    ledger += k8s_namespace_files(network, None)
    ledger += k8s_workload(None, "ledger", port(network["clearing_house"]["ledger"]), None)
    files["k8s/clearing.yaml"] = "\n".join(ledger) + "\n"
    files["k8s/clearing-database.yaml"] = "\n".join([HEADER.rstrip(), *k8s_database(None)]) + "\n"
    return files


def main() -> int:
    network = tomllib.loads((ROOT / "seeds" / "network.toml").read_text())
    files = {**compose(network), **k8s(network)}
    check = "--check" in sys.argv[1:]
    stale = []
    for name, text in sorted(files.items()):
        path = DEPLOY / name
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote deploy/{name}")
    if stale:
        print("out of date (run python3 deploy/render.py):", ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
