"""The channel runtime every gateway is built on.

A channel (gateways/<channel>/) owns its protocol: it prepares a job, sends a batch and
reports each job's outcome as it learns it, and may run inbound listeners. The runtime owns
the rest: pulling jobs, the in-flight cap, the send-marker claim (held -> written ->
outcome), the group commit of outcomes, outcome events, acks/naks, drain and metrics.

Modules: channel (the interface and a job in hand), hooks (a channel's optional members),
markers (+ markers_lua: the Redis state machine), gate (group commit of held -> written),
judge (what a marker found by a redelivery means), memory (what this process knows that
Redis may not), recorder (group commit of outcomes, events, acks), runtime (claims,
batches, drain), consuming (pulling: batches or jobs in flight), events, metrics, outcome,
ratelog, retrying.
"""
