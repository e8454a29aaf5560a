"""Storage: everything that knows Redis. The keys of a queue (:mod:`.keys`), the Lua scripts
(:mod:`.scripts`, ``lua/``) and their contracts (:mod:`.contracts`), the hash codec, the stores
(:mod:`.store`, :mod:`.queue_store`, :mod:`.schedule_store`), durable adds, the connection and
the embedded Redis.

Storage imports nothing from :mod:`jobbroker_broker.loops` or :mod:`jobbroker_broker.server`:
the arrows run server -> loops -> storage (tests/unit/test_broker_layout.py checks them).
"""
