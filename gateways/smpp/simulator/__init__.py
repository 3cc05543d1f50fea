"""The project's SMSC simulator: a real SMPP 3.4 server over asyncio for tests and `make run`.

In process: `sim = SmscSimulator(SimulatorConfig(...)); port = await sim.start()`, read
`sim.stats`, `await sim.stop()`. As a process: `python -m gateways.smpp.simulator`.
"""

from gateways.smpp.simulator.server import SimStats, SimulatorConfig, SmscSimulator

__all__ = ["SimStats", "SimulatorConfig", "SmscSimulator"]
