"""Reacting to changes: reading the change log, delivering it to callbacks in this and other
processes, durable consumers, filters, live queries, the SDK's run streams, and log
retention. Reads the store's tables; writes only consumer state (and prunes the log).
Knows nothing of HTTP.

Modules are imported by what they hold (`replica.notify.changes`, `.dispatch`, ...); this
package imports nothing, so the engine can use `retention` without loading the rest.
"""
