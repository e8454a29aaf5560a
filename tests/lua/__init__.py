"""Contract tests of the broker's Lua scripts, one module per script, against real Redis."""
