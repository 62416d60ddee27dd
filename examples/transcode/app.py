"""Transcodes audio uploaded to a bucket, as a native wok function.

An `objects` trigger delivers each new object of the input bucket as a
CloudEvent (POST /, the object's bucket and key in the JSON body). The
function fetches it through wok's S3 endpoint, runs Debian's `sox` on it
(16 kHz mono FLAC), and writes the result to the output bucket. boto3
needs no settings: wok injects AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID and
AWS_SECRET_ACCESS_KEY, credentials for this project's data only.

Deploy (see README, "Native functions"):
    pip install --target examples/transcode/packages boto3
    wok deploy transcode examples/transcode --runtime process \
        --command "python3 app.py" --env PYTHONPATH=/app/packages \
        --memory 256MiB --trigger "objects=uploads;on=created;suffix=.wav"
"""

import http.server
import json
import os
import subprocess
import tempfile

import boto3

OUTPUT = os.environ.get("OUTPUT_BUCKET", "transcoded")
s3 = boto3.client("s3")


def transcode(bucket, key):
    stem = os.path.splitext(os.path.basename(key))[0]
    target_key = os.path.splitext(key)[0] + ".flac"
    with tempfile.TemporaryDirectory() as work:
        source = os.path.join(work, "in-" + os.path.basename(key))
        target = os.path.join(work, stem + ".flac")
        s3.download_file(bucket, key, source)
        subprocess.run(
            ["sox", source, "--rate", "16000", "--channels", "1", target],
            check=True,
            capture_output=True,
        )
        s3.upload_file(target, OUTPUT, target_key, ExtraArgs={"ContentType": "audio/flac"})
    print(f"transcoded {bucket}/{key} to {OUTPUT}/{target_key}", flush=True)
    return target_key


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def answer(self, status, body):
        body = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        event = json.loads(self.rfile.read(int(self.headers.get("content-length", "0"))))
        if self.headers.get("ce-type") != "wok.object.created":
            return self.answer(200, {"skipped": self.headers.get("ce-type")})
        try:
            written = transcode(event["bucket"], event["key"])
        except subprocess.CalledProcessError as error:
            print(f"sox failed: {error.stderr.decode(errors='replace')}", flush=True)
            # A failure: wok retries the delivery, then keeps it as a dead letter.
            return self.answer(500, {"error": "sox failed"})
        self.answer(200, {"written": written})

    def log_message(self, format, *args):
        pass


http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
