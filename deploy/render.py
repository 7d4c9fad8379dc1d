#!/usr/bin/env python3
"""Renders the deployment files from seeds/network.toml, so a pool enabled there is deployed too.

Writes deploy/compose.yaml, deploy/compose/ (the network file, Prometheus' scrape configuration,
the OpenTelemetry collector's) and deploy/grafana/ (the pools' dashboard and its provisioning)
for one machine (Docker Compose), and deploy/k8s/*.yaml (a namespace per pool, each pool's node
its own, and one for the clearing house). A network file of one `[[city]]` per city, as written
before pools, renders as one pool per city. `--check` renders into
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
# Every yitong container serves its Prometheus metrics here (`YITONG_METRICS_LISTEN`).
METRICS_PORT = 9464
# The OTLP/gRPC endpoint of the compose file's OpenTelemetry collector.
COMPOSE_OTLP = "http://otel-collector:4317"
# In Kubernetes, the collector the cluster's observability stack runs (not rendered here).
K8S_OTLP = "http://otel-collector.observability.svc.cluster.local:4317"


def port(endpoint: str) -> int:
    return int(endpoint.rsplit(":", 1)[1].strip("/"))


def slug(city: dict) -> str:
    return city["name"].lower().replace("'", "").replace(" ", "-")


def pools(network: dict) -> list:
    """Every pool of the network file: each `[[city]]` of a file written before pools is its
    own city's pool, then every `[[pool]]`, in file order."""
    return [{**city, "city": city["code"]} for city in network.get("city", [])] + list(
        network.get("pool", [])
    )


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
    for city in pools(network):
        lines += [
            "",
            "[[pool]]",
            f'code = "{city["code"]}"',
            f'name = "{city["name"]}"',
            f'name_zh = "{city["name_zh"]}"',
            f'city = "{city["city"]}"',
            f'enabled = {"true" if city["enabled"] else "false"}',
        ]
        for service in SERVICES:
            lines.append(f'{service} = "http://{host(city, service, port(city[service]))}"')
        lines.append(f'e_voucher_key = "{city["e_voucher_key"]}"')
        if "prepaid_low_balance" in city:
            lines.append(f'prepaid_low_balance = "{city["prepaid_low_balance"]}"')
    return "\n".join(lines) + "\n"


def compose(network: dict) -> dict:
    enabled = [city for city in pools(network) if city["enabled"]]
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
        "    # Made once with `yitong pki init --network deploy/compose/network.toml --out deploy/pki`;",
        "    # API keys with `yitong key issue --keys deploy/keys.toml <caller>`. Never committed.",
        "    - ./pki:/etc/yitong/pki:ro",
        "    - ./keys.toml:/etc/yitong/keys.toml:ro",
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
                *compose_telemetry_env(),
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
        *compose_telemetry_env(),
        "    ports:",
        f'      - "{ledger}:{ledger}"',
        "",
        "  # Traces: every service exports OTLP to the collector, which passes them to Jaeger.",
        "  otel-collector:",
        "    image: otel/opentelemetry-collector:0.139.0",
        '    command: ["--config=/etc/otelcol/config.yaml"]',
        "    volumes:",
        "      - ./compose/otel-collector.yaml:/etc/otelcol/config.yaml:ro",
        "    depends_on:",
        "      - jaeger",
        "",
        "  # The trace viewer: http://localhost:16686 (`yitong settlement show` links to it).",
        "  jaeger:",
        "    image: jaegertracing/all-in-one:1.74.0",
        "    environment:",
        '      COLLECTOR_OTLP_ENABLED: "true"',
        "    ports:",
        '      - "16686:16686"',
        "",
        f"  # Metrics: scrapes every service's :{METRICS_PORT}/metrics; http://localhost:9090.",
        "  prometheus:",
        "    image: prom/prometheus:v3.7.3",
        "    command:",
        '      - "--config.file=/etc/prometheus/prometheus.yml"',
        "    volumes:",
        "      - ./compose/prometheus.yml:/etc/prometheus/prometheus.yml:ro",
        "    ports:",
        '      - "9090:9090"',
        "",
        "  # The dashboard of the cities: http://localhost:3000 (admin / admin).",
        "  grafana:",
        "    image: grafana/grafana:12.2.1",
        "    volumes:",
        "      - ./grafana/provisioning:/etc/grafana/provisioning:ro",
        "      - ./grafana/dashboards:/var/lib/grafana/dashboards:ro",
        "    ports:",
        '      - "3000:3000"',
        "    depends_on:",
        "      - prometheus",
        "",
        "volumes:",
        "  postgres: {}",
    ]
    files["compose.yaml"] = "\n".join(out) + "\n"
    files["compose/prometheus.yml"] = prometheus_config(enabled)
    files["compose/otel-collector.yaml"] = OTEL_COLLECTOR
    files["grafana/dashboards/yitong.json"] = dashboard(enabled)
    return files


def compose_telemetry_env() -> list[str]:
    return [
        # Every server speaks mutual TLS with its node certificate and checks API keys.
        "      YITONG_PKI: /etc/yitong/pki",
        "      YITONG_KEYS: /etc/yitong/keys.toml",
        f"      YITONG_METRICS_LISTEN: 0.0.0.0:{METRICS_PORT}",
        f"      OTEL_EXPORTER_OTLP_ENDPOINT: {COMPOSE_OTLP}",
        "      OTEL_TRACES_SAMPLER: parentbased_always_on",
    ]


OTEL_COLLECTOR = HEADER + """# The OpenTelemetry collector: OTLP in from every service, batched, OTLP out to Jaeger.
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 0.0.0.0:4317
processors:
  batch: {}
exporters:
  otlp:
    endpoint: jaeger:4317
    tls:
      insecure: true
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [otlp]
"""


def prometheus_config(enabled: list[dict]) -> str:
    """One scrape job for the services (each target labelled with its pool, the pool's host
    city and the service). The metrics' own labels win over the targets' (`honor_labels`):
    `yitong_prepaid_available_fen` and `yitong_settlements_in_doubt` carry the `city` and
    `pool` they are about, which the ledger's target label `city: clearing` must not rename to
    `exported_city`."""
    lines = [
        HEADER.rstrip(),
        "global:",
        "  scrape_interval: 15s",
        "scrape_configs:",
        "  - job_name: yitong",
        "    honor_labels: true",
        "    static_configs:",
    ]
    for city in enabled:
        for service in SERVICES:
            lines += [
                f'      - targets: ["{slug(city)}-{service}:{METRICS_PORT}"]',
                "        labels:",
                f'          city: "{city["city"]}"',
                f'          pool: "{city["code"]}"',
                f"          service: {service}",
            ]
    lines += [
        f'      - targets: ["ledger:{METRICS_PORT}"]',
        "        labels:",
        "          city: clearing",
        "          service: ledger",
    ]
    return "\n".join(lines) + "\n"


def dashboard(enabled: list[dict]) -> str:
    """The Grafana dashboard of the enabled cities: a row per city (its settlements by
    partner and outcome, fund pay, RPC errors and latency, settlements in doubt), then the
    clearing house (prepaid funds, reconciliation breaks)."""
    import json

    panels = []
    y = 0

    def panel(title: str, exprs: list[tuple[str, str]], x: int, w: int, unit: str = "short") -> dict:
        return {
            "type": "timeseries",
            "title": title,
            "datasource": {"type": "prometheus", "uid": "prometheus"},
            "gridPos": {"x": x, "y": y, "w": w, "h": 8},
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "targets": [
                {"refId": chr(65 + i), "expr": expr, "legendFormat": legend}
                for i, (expr, legend) in enumerate(exprs)
            ],
        }

    for city in enabled:
        code = city["code"]
        panels.append({
            "type": "row",
            "title": f"{city['name']} {city['name_zh']} ({code})",
            "gridPos": {"x": 0, "y": y, "w": 24, "h": 1},
            "collapsed": False,
            "panels": [],
        })
        y += 1
        panels += [
            panel("Settlements treated here, by insured pool and outcome (per second)", [
                (f'sum by (insured_pool, outcome) (rate(yitong_settlements_total{{treatment_pool="{code}"}}[5m]))',
                 "{{insured_pool}} {{outcome}}"),
            ], 0, 8, "ops"),
            panel("Fund pay for its insured persons, by treatment pool (yuan per second)", [
                (f'sum by (treatment_pool) (rate(yitong_fund_paid_fen_total{{insured_pool="{code}"}}[5m])) / 100',
                 "at {{treatment_pool}}"),
            ], 8, 8, "currencyCNY"),
            # A method without errors has no series of a code other than OK: it shows 0.
            panel("RPC errors (share of calls not OK)", [
                (f'(sum by (method) (rate(yitong_rpc_requests_total{{owner="{code}",code!="OK"}}[5m]))'
                 f' or 0 * sum by (method) (rate(yitong_rpc_requests_total{{owner="{code}"}}[5m])))'
                 f' / sum by (method) (rate(yitong_rpc_requests_total{{owner="{code}"}}[5m]))',
                 "{{method}}"),
            ], 16, 8, "percentunit"),
        ]
        y += 8
        panels += [
            panel("RPC latency p95 by method", [
                (f'histogram_quantile(0.95, sum by (le, method) (rate(yitong_rpc_duration_seconds_bucket{{owner="{code}"}}[5m])))',
                 "{{method}}"),
            ], 0, 8, "s"),
            panel("Settles refused here, by reason (per second)", [
                (f'sum by (reason) (rate(yitong_settlement_refusals_total{{treatment_pool="{code}"}}[5m]))',
                 "{{reason}}"),
            ], 8, 8, "ops"),
            panel("Settlements in doubt (left by the recovery sweep)", [
                (f'max(yitong_settlements_in_doubt{{pool="{code}"}})', "in doubt"),
            ], 16, 8),
        ]
        y += 8
    panels.append({
        "type": "row",
        "title": "Clearing house",
        "gridPos": {"x": 0, "y": y, "w": 24, "h": 1},
        "collapsed": False,
        "panels": [],
    })
    y += 1
    panels += [
        panel("Available prepaid funds (yuan)", [
            ("max by (pool) (yitong_prepaid_available_fen) / 100", "{{pool}}"),
        ], 0, 12, "currencyCNY"),
        panel("Reconciliation breaks by class (per hour)", [
            ("sum by (subject, class) (increase(yitong_reconciliation_breaks_total[1h]))", "{{subject}} {{class}}"),
        ], 12, 12),
    ]
    y += 8
    panels += [
        # A city's pools summed: the `*_city` labels name each pool's host city.
        panel("Settled visits between cities, their pools summed (per second)", [
            ('sum by (treatment_city, insured_city) (rate(yitong_settlements_total{outcome="settled"}[5m]))',
             "{{treatment_city}} to {{insured_city}}"),
        ], 0, 24, "ops"),
    ]
    board = {
        "uid": "yitong-cities",
        "title": "Yitong: the cities",
        "tags": ["yitong"],
        "timezone": "browser",
        "schemaVersion": 41,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "panels": [dict(p, id=i + 1) for i, p in enumerate(panels)],
    }
    return json.dumps(board, indent=2, ensure_ascii=False) + "\n"


GRAFANA_DATASOURCE = HEADER + """apiVersion: 1
datasources:
  - name: Prometheus
    uid: prometheus
    type: prometheus
    access: proxy
    url: http://prometheus:9090
    isDefault: true
"""

GRAFANA_DASHBOARDS = HEADER + """apiVersion: 1
providers:
  - name: yitong
    type: file
    options:
      path: /var/lib/grafana/dashboards
"""


def namespace(city) -> str:
    return f"yitong-{slug(city)}" if city else "yitong-clearing"


def k8s_workload(city, service: str, p: int, code: str | None) -> list[str]:
    ns = namespace(city)
    args = ["serve", service] + (["--city", code] if code else []) + ["--listen", f"0.0.0.0:{p}"]
    env = [
        "            - name: YITONG_NETWORK",
        "              value: /etc/yitong/network.toml",
        "            - name: YITONG_PKI",
        "              value: /etc/yitong/pki",
        "            - name: YITONG_KEYS",
        "              value: /etc/yitong/keys/keys.toml",
        "            - name: YITONG_METRICS_LISTEN",
        f'              value: "0.0.0.0:{METRICS_PORT}"',
        "            - name: OTEL_EXPORTER_OTLP_ENDPOINT",
        f"              value: {K8S_OTLP}",
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
    # The gRPC port speaks mutual TLS only, which the kubelet's gRPC probe cannot: the probes
    # open a TCP connection to it (see deploy/README.md).
    probe = lambda kind, delay: [  # noqa: E731
        f"          {kind}:",
        "            tcpSocket:",
        f"              port: {p}",
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
        "      annotations:",
        '        prometheus.io/scrape: "true"',
        f'        prometheus.io/port: "{METRICS_PORT}"',
        "        prometheus.io/path: /metrics",
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
        "            - name: metrics",
        f"              containerPort: {METRICS_PORT}",
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
        "            - name: pki",
        "              mountPath: /etc/yitong/pki",
        "              readOnly: true",
        "            - name: keys",
        "              mountPath: /etc/yitong/keys",
        "              readOnly: true",
        "      volumes:",
        "        - name: network",
        "          configMap:",
        "            name: yitong-network",
        "        # The node's certificate and key and the network's CA certificate (never its key),",
        "        # from `yitong pki init`; the key file from `yitong key issue`.",
        "        - name: pki",
        "          secret:",
        "            secretName: yitong-pki",
        "        - name: keys",
        "          secret:",
        "            secretName: yitong-keys",
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
        "    - name: metrics",
        f"      port: {METRICS_PORT}",
        "      targetPort: metrics",
        "      appProtocol: http",
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
    enabled = [city for city in pools(network) if city["enabled"]]
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


def option(name: str, default: pathlib.Path) -> pathlib.Path:
    """The path given after `name` on the command line, else `default`."""
    args = sys.argv[1:]
    if name not in args:
        return default
    index = args.index(name) + 1
    if index >= len(args):
        sys.exit(f"{name} needs a path")
    return pathlib.Path(args[index]).resolve()


def main() -> int:
    network_file = option("--network", ROOT / "seeds" / "network.toml")
    out = option("--out", DEPLOY)
    network = tomllib.loads(network_file.read_text())
    files = {**compose(network), **k8s(network)}
    files["grafana/provisioning/datasources/prometheus.yaml"] = GRAFANA_DATASOURCE
    files["grafana/provisioning/dashboards/yitong.yaml"] = GRAFANA_DASHBOARDS
    check = "--check" in sys.argv[1:]
    stale = []
    for name, text in sorted(files.items()):
        path = out / name
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    if stale:
        print("out of date (run python3 deploy/render.py):", ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
