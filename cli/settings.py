"""Settings only the `herald` CLI reads (the service addresses and HERALD_TOKEN are in
shared.config, shared with the services)."""

from __future__ import annotations

from shared.config import setting

CONFIG = setting(
    "HERALD_CONFIG", "",
    "The CLI's contexts file (empty = $XDG_CONFIG_HOME/herald/config.yaml, else "
    "~/.config/herald/config.yaml; a path ending in .json is read and written as JSON). "
    "`make run` writes its `local` context there.", "cli")
CONTEXT = setting(
    "HERALD_CONTEXT", "",
    "Context of the contexts file the CLI uses instead of its current-context.", "cli")
SERVER = setting(
    "HERALD_SERVER", "",
    "One host:port answering every Herald gRPC service (an ingress or gateway); a per-service "
    "address (HERALD_CAMPAIGNS_ADDR, ...) wins over it.", "cli")
WORKSPACE = setting(
    "HERALD_WORKSPACE", "",
    "Workspace the CLI names in x-herald-workspace (development mode and service tokens).", "cli")
TLS_CA_FILE = setting(
    "HERALD_TLS_CA_FILE", "",
    "PEM file of the CA that signed the servers' certificates; setting any HERALD_TLS_* turns "
    "TLS on in the CLI (system roots when no CA file is given).", "cli")
TLS_CERT_FILE = setting(
    "HERALD_TLS_CERT_FILE", "", "PEM client certificate the CLI presents (mutual TLS).", "cli")
TLS_KEY_FILE = setting(
    "HERALD_TLS_KEY_FILE", "", "PEM private key of HERALD_TLS_CERT_FILE.", "cli")
TLS_SERVER_NAME = setting(
    "HERALD_TLS_SERVER_NAME", "",
    "Name the CLI expects in the servers' certificates, when it differs from the address's "
    "host (e.g. connecting through a tunnel).", "cli")
