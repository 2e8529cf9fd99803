"""The clinic-facing REST API, mounted at ``/api/v1``.

Every response is an envelope ``{"data", "meta", "error"}`` with ``meta.request_id``;
errors carry a stable upper-snake-case ``code``. Requests are authorised by bearer API
keys (``vestibule keys create``), stored hashed in Redis. The OpenAPI document served at
``/api/v1/openapi.json`` is generated from the same schemas that validate requests.
"""
