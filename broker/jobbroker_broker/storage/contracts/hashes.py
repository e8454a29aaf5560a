"""The fields of the hashes the scripts keep: a job's and a queue's meta. Their one home.

The scripts spell these names in Lua; Python (the codec, the queue store, the add script's
options) reads them from here, and tests/lua/test_hash_fields.py checks that the scripts use
no field these classes do not declare, and no declared field goes unused. Names are short on
purpose: a queue of millions of jobs stores them millions of times. Values are bytes, as Redis
answers them (redis-py sends bytes arguments as they are).
"""

from __future__ import annotations

from typing import Final


class JobField:
    """The job hash ``jb:{<queue>}:job:<id>``."""

    NAME: Final = b"name"
    """The job's name (what workers register handlers by)."""
    DATA: Final = b"data"
    """Payload body."""
    DATA_TYPE: Final = b"dct"
    """Payload content type; absent means JSON."""
    STATE: Final = b"st"
    """waiting, delayed, active, completed, failed or cancelled."""
    CREATED_AT: Final = b"ct"
    """Created (or restarted, for a job with a lifespan), ms."""
    STARTED_AT: Final = b"sa"
    """When the current (or last) attempt was leased, ms."""
    FINISHED_AT: Final = b"fa"
    """When it reached its terminal state, ms."""
    RUN_AT: Final = b"ra"
    """When a delayed job becomes waiting, ms."""
    ATTEMPTS_MADE: Final = b"am"
    """Attempts that ended (completed or failed)."""
    STALLED_COUNT: Final = b"sc"
    """Times its lease ran out without a word from its worker."""
    WORKER: Final = b"w"
    """The worker id of the current (or last) lease."""
    TOKEN: Final = b"tok"
    """The token of the newest lease (``<fence>-<random>``)."""
    FENCE: Final = b"fn"
    """The newest lease's fencing number: one more per lease."""
    LEASE_EXPIRES_AT: Final = b"le"
    """The lease's deadline, ms; stays on a finished job as the record of its last lease."""
    LEASE_MS: Final = b"lms"
    """The lease's duration, renewed by the same amount unless a renewal names another."""
    TIMEOUT_AT: Final = b"to"
    """When the current attempt times out, ms (with a timeout option)."""
    CANCEL_REQUESTED: Final = b"cr"
    """'1' once Cancel reached the job while active."""
    CANCEL_REASON: Final = b"crr"
    """The reason given to Cancel."""
    PROGRESS_PERCENT: Final = b"pp"
    PROGRESS_VALUE: Final = b"pv"
    PROGRESS_VALUE_TYPE: Final = b"pvt"
    RESULT: Final = b"res"
    RESULT_TYPE: Final = b"rct"
    FAILURE_REASON: Final = b"fr"
    """A FailureReason number: of the last failed attempt, or of the failure for good."""
    FAILURE_MESSAGE: Final = b"fm"
    FAILURE_TYPE: Final = b"fty"
    FAILURE_STACK: Final = b"fsk"
    FAILURE_ATTEMPT: Final = b"fat"

    # The job's options, as the add script writes them (absent when unset).
    PRIORITY: Final = b"pri"
    LIFO: Final = b"lifo"
    """'1' for LIFO."""
    DELAY_MS: Final = b"dly"
    ATTEMPTS: Final = b"atm"
    """Max attempts."""
    BACKOFF_TYPE: Final = b"bt"
    """A BackoffType number."""
    BACKOFF_DELAY_MS: Final = b"bd"
    BACKOFF_JITTER: Final = b"bj"
    BACKOFF_MAX_MS: Final = b"bx"
    TIMEOUT_MS: Final = b"tmo"
    LIFESPAN_MS: Final = b"lsp"
    REMOVE_ON_COMPLETE: Final = b"rc"
    """Retention policy ``remove,keep_last,keep_age_ms`` (``1,0,0`` removes at once)."""
    REMOVE_ON_FAIL: Final = b"rf"
    GROUP: Final = b"grp"
    TRACE_CONTEXT: Final = b"tc"
    """The W3C trace context the job was added with: ``<traceparent>`` or ``<traceparent>
    <tracestate>`` (one space between; a traceparent has none). The lease hands it to the
    worker; a schedule's template never holds one."""


class MetaField:
    """The queue's meta hash ``jb:{<queue>}:meta``: its settings and bookkeeping."""

    PAUSED: Final = b"paused"
    """'1' while paused."""
    RATE_MAX: Final = b"rlm"
    """Rate limit: jobs started at most per RATE_MS."""
    RATE_MS: Final = b"rld"
    CONCURRENCY: Final = b"conc"
    """Jobs active at most at once, across every worker."""
    GROUP_RATE_MAX: Final = b"glm"
    """Per-group rate limit: jobs of one group started at most per GROUP_RATE_MS."""
    GROUP_RATE_MS: Final = b"gld"
    MAX_STALLED: Final = b"mst"
    """The queue's own max-stalled count (overrides the broker's)."""
    PARKED: Final = b"parked"
    """Waiting jobs parked by a group rate limit (lib/groups.lua)."""
    REGISTERED: Final = b"reg"
    """Set by the first add: the queue is in the registry (obliterate removes the hash)."""
    TRIMMED: Final = b"trimmed"
    """Events the cap on the event stream has removed (lib/base.lua's done())."""


def declared(cls: type) -> dict[str, bytes]:
    """The fields a class above declares, by attribute name."""
    return {name: value for name, value in vars(cls).items() if name.isupper()}


JOB_FIELDS = frozenset(declared(JobField).values())
META_FIELDS = frozenset(declared(MetaField).values())
