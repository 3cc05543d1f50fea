#!/usr/bin/env bash
# Development only: create (or replace) every Secret the dev overlay needs, with random values
# made on this machine at deploy time. Nothing secret is kept in the repository.
#   usage: create-dev-secrets.sh [namespace]     (default: herald; the namespace must exist)
# Needs kubectl (pointed at the cluster) and openssl. The TLS files stay in a temporary folder
# that is removed on exit; the CA key is not kept (re-run the script to issue a new set).
set -euo pipefail
ns="${1:-herald}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
rand() { openssl rand -hex "$1"; }
apply() { kubectl -n "$ns" create secret "$@" --dry-run=client -o yaml | kubectl -n "$ns" apply -f -; }

# TLS: a private CA, and one certificate for every Herald process (server and client use,
# for mutual TLS) naming each Service a client dials.
openssl req -x509 -newkey rsa:2048 -nodes -days 365 -subj "/CN=herald-dev-ca" \
  -keyout "$work/ca.key" -out "$work/ca.crt" 2>/dev/null
sans=""
for svc in campaigns recipients stats smpp-gateway email-sender email-tracking email-bounces; do
  sans="$sans,DNS:$svc,DNS:$svc.$ns,DNS:$svc.$ns.svc,DNS:$svc.$ns.svc.cluster.local"
done
openssl req -newkey rsa:2048 -nodes -subj "/CN=herald" \
  -keyout "$work/tls.key" -out "$work/tls.csr" 2>/dev/null
printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\nkeyUsage=digitalSignature,keyEncipherment\n' \
  "${sans#,}" > "$work/ext.cnf"
openssl x509 -req -in "$work/tls.csr" -CA "$work/ca.crt" -CAkey "$work/ca.key" -CAcreateserial \
  -days 365 -extfile "$work/ext.cnf" -out "$work/tls.crt" 2>/dev/null
apply generic herald-tls --type=kubernetes.io/tls \
  --from-file=tls.crt="$work/tls.crt" --from-file=tls.key="$work/tls.key" \
  --from-file=ca.crt="$work/ca.crt"

# Bearer tokens: an admin of workspace "demo" for you, and the services' own token.
admin="$(rand 24)"
service="$(rand 24)"
cat > "$work/tokens.json" <<EOF
{"$admin": {"workspace": "demo", "roles": ["admin"], "pii": true, "name": "dev admin"},
 "$service": {"workspace": "herald", "roles": ["service"], "pii": true, "name": "herald services"}}
EOF
apply generic herald-tokens --from-file=tokens.json="$work/tokens.json"
apply generic herald-service-token --from-literal=HERALD_SERVICE_TOKEN="$service"

# PostgreSQL: one password, shared by the server and both services' DSNs.
pg="$(rand 16)"
apply generic postgres-dev --from-literal=POSTGRES_PASSWORD="$pg"
dsn="postgresql+asyncpg://herald:$pg@postgres:5432/herald"
apply generic herald-campaigns-db --from-literal=HERALD_DB_URL="$dsn"
apply generic herald-recipients-db --from-literal=HERALD_DB_URL="$dsn"

# Gateways: the tracking/VERP signing key; SMPP credentials (the simulator accepts any;
# an SMPP password is at most 8 characters).
apply generic herald-email --from-literal=HERALD_TRACKING_KEYS="$(rand 32)"
apply generic herald-smpp --from-literal=HERALD_SMPP_SYSTEM_ID=herald \
  --from-literal=HERALD_SMPP_PASSWORD="$(rand 4)"

echo "secrets created in namespace $ns; your admin token: $admin"
echo "CA certificate for the CLI (HERALD_TLS_CA_FILE): kubectl -n $ns get secret herald-tls -o jsonpath='{.data.ca\\.crt}' | base64 -d"
