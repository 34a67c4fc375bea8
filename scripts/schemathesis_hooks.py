"""schemathesis hooks for Payment Manager: sign webhook requests.

Webhooks must carry `Webhook-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "t.body">`
over the exact bytes sent. This hook serializes the generated body itself, sends those
bytes, and signs them with the secret in PM_SCHEMATHESIS_WEBHOOK_SECRET, so that generated
webhooks reach validation and storage instead of stopping at 401.
"""

import hashlib
import hmac
import json
import os
import time

import schemathesis

SECRET = os.environ.get("PM_SCHEMATHESIS_WEBHOOK_SECRET", "").encode()


@schemathesis.hook
def before_call(context, case, kwargs):
    if not SECRET or not case.operation.path.startswith("/webhooks/"):
        return
    try:
        body = json.dumps(case.body, separators=(",", ":")).encode()
    except (TypeError, ValueError):
        return  # not JSON: leave it unsigned, the 401/415 path is tested too
    t = str(int(time.time()))
    mac = hmac.new(SECRET, t.encode() + b"." + body, hashlib.sha256).hexdigest()
    headers = dict(case.headers or {})
    headers["Webhook-Signature"] = f"t={t},v1={mac}"
    headers["Content-Type"] = "application/json"
    case.headers = headers
    kwargs["data"] = body
