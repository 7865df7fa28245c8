"""A webhook receiver that checks Runyard's signatures with ``standardwebhooks``.

Register it, keep the secret the answer shows once, and run the receiver with it:

    curl -s -X POST http://127.0.0.1:8000/v1/webhooks \\
      -H "Authorization: Bearer $RUNYARD_API_KEY" -H 'Content-Type: application/json' \\
      -d '{"url": "http://127.0.0.1:9000/hooks", "events": ["run.completed", "run.failed"]}'
    WEBHOOK_SECRET=whsec_… .venv/bin/python examples/webhook_receiver.py --port 9000

(``runyard dev`` allows callbacks to 127.0.0.1; a production API refuses loopback and
private addresses unless ``RUNYARD_ALLOW_PRIVATE_CALLBACKS=true``.) Each delivery is
verified before it is trusted: a wrong signature, or a timestamp more than five minutes
off, gets 400 and is not processed. Retries keep their ``webhook-id``, so the receiver
handles each id once.
"""

from __future__ import annotations

import argparse
import json
import os
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

SEEN: set[str] = set()


def handle(event: dict[str, Any]) -> None:
    run = event["data"]
    text = next((o.get("text") for o in run.get("outputs", []) if o.get("type") == "text"), "")
    print(f"{event['type']}: {run['id']} {run['status']} {text[:80]!r}", flush=True)


class Receiver(BaseHTTPRequestHandler):
    webhook: Webhook

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            event = self.webhook.verify(body, headers)
        except WebhookVerificationError as exc:
            self.send_response(400)
            self.end_headers()
            self.wfile.write(f"signature check failed: {exc}".encode())
            return
        delivery = headers.get("webhook-id", "")
        if delivery not in SEEN:  # a retry of a delivery already handled is acknowledged
            SEEN.add(delivery)
            handle(event if isinstance(event, dict) else json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description="Verify and print Runyard webhooks.")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--secret", default=os.environ.get("WEBHOOK_SECRET"))
    args = parser.parse_args()
    if not args.secret:
        parser.error("pass --secret whsec_… or set WEBHOOK_SECRET")
    Receiver.webhook = Webhook(args.secret)
    print(f"listening on http://127.0.0.1:{args.port}", flush=True)
    HTTPServer(("127.0.0.1", args.port), Receiver).serve_forever()


if __name__ == "__main__":
    main()
