"""The Python stdlib HTTP app bench/process.sh starts cold: imports, then
serves "hello" on $PORT."""
import http.server
import os


class Hello(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        self.send_response(200)
        self.send_header("content-length", "6")
        self.end_headers()
        self.wfile.write(b"hello\n")

    def log_message(self, *args):
        pass


http.server.HTTPServer(("127.0.0.1", int(os.environ.get("PORT", "8080"))), Hello).serve_forever()
