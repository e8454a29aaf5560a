"""The HTTP API's OpenAPI 3.1 document (served at ``/api/openapi.json``).

Written by hand beside the routes; ``tests/dashboard/test_api.py`` checks that its paths and
methods are exactly the routes the API serves.
"""

from __future__ import annotations

from typing import Any

from jobbroker import __version__

_ERROR = {"$ref": "#/components/responses/Error"}
_QUEUE = {
    "name": "queue",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,128}$"},
}
_JOB_ID = {"name": "jobId", "in": "path", "required": True, "schema": {"type": "string"}}
_ERRORS = {str(code): _ERROR for code in (400, 401, 403, 404, 409, 413, 429, 503)}


def _ms(description: str) -> dict[str, Any]:
    return {"type": "number", "minimum": 0, "description": description}


_RETENTION = {
    "oneOf": [
        {"type": "boolean", "description": "true: remove at once; false: keep"},
        {"type": "integer", "minimum": 0, "description": "keep the last N"},
        {
            "type": "object",
            "properties": {
                "age": {"type": "number", "description": "keep those younger, in seconds"},
                "count": {"type": "integer", "description": "keep the last N"},
            },
            "additionalProperties": False,
        },
    ]
}

_SCHEMAS: dict[str, Any] = {
    "JobOptions": {
        "type": "object",
        "description": "Bull's job options; durations in milliseconds.",
        "additionalProperties": False,
        "properties": {
            "jobId": {"type": ["string", "integer"], "description": "idempotent add"},
            "priority": {"type": "integer", "minimum": 0, "maximum": 1000000},
            "delay": _ms("wait this long before the job can run"),
            "attempts": {"type": "integer", "minimum": 1, "maximum": 10000},
            "backoff": {
                "oneOf": [
                    _ms("fixed delay between attempts"),
                    {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "type": {"enum": ["fixed", "exponential"]},
                            "delay": _ms("base delay"),
                            "jitter": {"type": "number", "minimum": 0, "maximum": 1},
                            "maxDelay": _ms("longest delay"),
                        },
                    },
                ]
            },
            "timeout": _ms("longest run of one attempt"),
            "lifespan": _ms("fail the job if not started within this"),
            "removeOnComplete": _RETENTION,
            "removeOnFail": _RETENTION,
            "lifo": {"type": "boolean"},
            "group": {"type": "string", "description": "key of the queue's group rate limit"},
        },
    },
    "AddJob": {
        "type": "object",
        "required": ["name"],
        "additionalProperties": False,
        "properties": {
            "name": {"type": "string"},
            "data": {"description": "any JSON value"},
            "options": {"$ref": "#/components/schemas/JobOptions"},
        },
    },
    "Added": {
        "type": "object",
        "required": ["jobId", "state"],
        "properties": {
            "jobId": {"type": "string"},
            "state": {"$ref": "#/components/schemas/State"},
            "duplicate": {"type": "boolean"},
        },
    },
    "State": {"enum": ["waiting", "delayed", "active", "completed", "failed", "cancelled"]},
    "Job": {
        "type": "object",
        "required": ["id", "state", "progress", "result", "failedReason", "attempts"],
        "properties": {
            "id": {"type": "string"},
            "queue": {"type": "string"},
            "name": {"type": "string"},
            "state": {"$ref": "#/components/schemas/State"},
            "progress": {"type": ["number", "null"], "description": "percent 0-100"},
            "progressValue": {"description": "the JSON value of the last progress"},
            "result": {"description": "the job's result, once completed"},
            "failedReason": {"type": ["string", "null"]},
            "attempts": {"type": "integer", "description": "attempts made"},
            "attemptsMade": {"type": "integer"},
            "maxAttempts": {"type": "integer"},
            "data": {},
            "failure": {"type": ["object", "null"]},
            "timestamp": {"type": ["integer", "null"], "description": "created, ms"},
            "processedOn": {"type": ["integer", "null"]},
            "finishedOn": {"type": ["integer", "null"]},
            "runAt": {"type": ["integer", "null"]},
            "workerId": {"type": ["string", "null"]},
            "cancelRequested": {"type": "boolean"},
            "logCount": {"type": "integer"},
        },
    },
    "Queue": {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "paused": {"type": "boolean"},
            "counts": {"type": "object", "additionalProperties": {"type": "integer"}},
            "rateLimit": {"type": ["string", "null"]},
            "concurrency": {"type": ["integer", "null"]},
        },
    },
    "Error": {
        "type": "object",
        "required": ["code", "reason", "message", "metadata"],
        "properties": {
            "code": {"type": "string", "description": "the gRPC status code's name"},
            "reason": {"type": "string", "description": "google.rpc.ErrorInfo reason"},
            "message": {"type": "string"},
            "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    },
}


def document(root_path: str = "") -> dict[str, Any]:
    """The document, its server URL being where the API is mounted."""
    job_path = {
        "parameters": [_QUEUE, _JOB_ID],
        "get": {
            "operationId": "getJob",
            "summary": "A job's status",
            "responses": {
                "200": _json("the job", "#/components/schemas/Job"),
                **_ERRORS,
            },
        },
        "delete": {
            "operationId": "cancelJob",
            "summary": "Cancel a job (an active one ends cancelled once its worker stops)",
            "responses": {
                "200": {
                    "description": "the job's state after the cancel",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
                **_ERRORS,
            },
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "jobbroker HTTP API", "version": __version__},
        "servers": [{"url": root_path or "/"}],
        "security": [{"bearer": []}, {}],
        "paths": {
            "/queues": {
                "get": {
                    "operationId": "listQueues",
                    "summary": "The queues with their counts",
                    "responses": {
                        "200": {
                            "description": "the queues the token may read",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "properties": {
                                            "queues": {
                                                "type": "array",
                                                "items": {"$ref": "#/components/schemas/Queue"},
                                            }
                                        },
                                    }
                                }
                            },
                        },
                        **_ERRORS,
                    },
                }
            },
            "/queues/{queue}/jobs": {
                "parameters": [_QUEUE],
                "post": {
                    "operationId": "addJob",
                    "summary": "Add a job",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/AddJob"}}
                        },
                    },
                    "responses": {
                        "201": _json("added", "#/components/schemas/Added"),
                        "200": _json(
                            "already there (same jobId, name and data)",
                            "#/components/schemas/Added",
                        ),
                        **_ERRORS,
                    },
                },
            },
            "/queues/{queue}/jobs/{jobId}": job_path,
            "/queues/{queue}/jobs/{jobId}/events": {
                "parameters": [
                    _QUEUE,
                    _JOB_ID,
                    {
                        "name": "Last-Event-ID",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string"},
                        "description": "resume after this event (browsers send it themselves)",
                    },
                ],
                "get": {
                    "operationId": "jobEvents",
                    "summary": "The job's progress as server-sent events",
                    "description": "Events: `snapshot` (the job, first unless resuming), then "
                    "one per job event named by its type (`active`, `progress`, `completed`, "
                    "`failed`...) with its id, then `end` once the job finished; `error` if "
                    "the broker ends the stream.",
                    "responses": {
                        "200": {
                            "description": "the event stream",
                            "content": {"text/event-stream": {"schema": {"type": "string"}}},
                        },
                        **_ERRORS,
                    },
                },
            },
        },
        "components": {
            "schemas": _SCHEMAS,
            "responses": {
                "Error": {
                    "description": "the broker's error: code, ErrorInfo reason and metadata",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
                    },
                }
            },
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def _json(description: str, ref: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": ref}}}}
