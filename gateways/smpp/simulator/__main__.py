"""`python -m gateways.smpp.simulator`: run the SMSC simulator until SIGTERM/SIGINT.

Configured by HERALD_SMPP_SIM_* variables; the flags below override them. Once listening
it appends {"service": "smsc-simulator", "smpp_port": ..., "stats_file": ...} to
HERALD_READY_FILE (the convention cli/procs.start_module waits for).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses

from gateways.smpp.simulator.server import ID_STYLES, SimulatorConfig, SmscSimulator
from shared import log
from shared.grpc_server import ServiceRuntime
from shared.metrics import split_addr

NAME = "smsc-simulator"


def parse_args(argv: list[str] | None = None) -> SimulatorConfig:
    ap = argparse.ArgumentParser(prog="python -m gateways.smpp.simulator",
                                 description="Herald's SMSC simulator (SMPP 3.4 server).")
    ap.add_argument("--addr", help="host:port to listen on (HERALD_SMPP_SIM_ADDR)")
    ap.add_argument("--receipt-delay", type=float, help="seconds before each receipt")
    ap.add_argument("--fail-pattern", help="regex over destination_addr -> failed receipt")
    ap.add_argument("--fail-stat", help="stat of failed receipts (default UNDELIV)")
    ap.add_argument("--reject-pattern", help="regex over destination_addr -> submit refused")
    ap.add_argument("--id-style", choices=ID_STYLES, help="message id style")
    ap.add_argument("--receipt-first", action="store_true", default=None,
                    help="send receipts before their submit_sm_resp")
    ap.add_argument("--duplicate-receipts", action="store_true", default=None,
                    help="send every receipt twice")
    ap.add_argument("--no-resend-receipts", dest="resend_receipts", action="store_false", default=None,
                    help="never send a refused or unanswered receipt again (as many SMSCs)")
    ap.add_argument("--id-start", type=int,
                    help="first message id (fixed: a restart reissues the previous run's ids)")
    ap.add_argument("--throttle-pattern", help="regex over destination_addr -> first submit throttled")
    ap.add_argument("--throttle-part", type=int,
                    help="with --throttle-pattern: throttle only this part of a multipart message")
    ap.add_argument("--keep-texts", action="store_true", default=None,
                    help="keep each destination's message texts in the ground truth")
    ap.add_argument("--stats-file", help="JSON file of the ground-truth counters")
    args = ap.parse_args(argv)
    cfg = SimulatorConfig.from_env()
    overrides = {k: v for k, v in vars(args).items() if v is not None and k != "addr"}
    if args.addr:
        overrides["host"], overrides["port"] = split_addr(args.addr)
    return dataclasses.replace(cfg, **overrides)


async def main(cfg: SimulatorConfig) -> None:
    rt = ServiceRuntime(NAME)
    rt.install_signal_handlers()
    sim = SmscSimulator(cfg)
    port = await sim.start()
    rt.write_ready(smpp_port=port, stats_file=cfg.stats_file)
    await rt.wait()
    await sim.stop()


if __name__ == "__main__":
    config = parse_args()
    log.setup(NAME)
    try:  # a project dependency; the plain loop is the fallback
        import uvloop
    except ImportError:
        asyncio.run(main(config))
    else:
        uvloop.run(main(config))
