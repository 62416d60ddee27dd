"""A native test function: Python's standard HTTP server on $PORT.

Routes: /info (who and where it runs), /echo (the body back), /probe (tries
to get out of its sandbox and says what happened), /eat (memory past any
small limit), /run?program=P (runs a program of the bundle), /spin (a busy
thread from now on), /fill (/tmp until full),
/crash (exits), /sleep?ms=N, /log?line=TEXT, /platform (calls wok's API
with its injected credentials, and the outside through the proxy).
"""

import ctypes
import errno
import http.server
import json
import os
import socket
import sys
import time
import urllib.parse

INSTANCE = os.urandom(8).hex()


def attempt(action):
    try:
        result = action()
        return {"ok": True, "result": result}
    except OSError as error:
        return {"ok": False, "error": errno.errorcode.get(error.errno, str(error.errno))}


def probes(query):
    libc = ctypes.CDLL(None, use_errno=True)

    def mount():
        if libc.mount(b"none", b"/tmp", b"tmpfs", 0, None) != 0:
            raise OSError(ctypes.get_errno(), "mount")
        return "mounted"

    def connect_to(host, port):
        with socket.create_connection((host, port), timeout=2):
            return "connected"

    def connect(port):
        return connect_to("127.0.0.1", port)

    def write(path):
        with open(path, "w") as file:
            file.write("x")
        return "written"

    def in_child(call):
        # A single-threaded child makes the call (the server has threads,
        # which some calls refuse for that alone) and exits with its errno.
        pid = os.fork()
        if pid == 0:
            os._exit(0 if call() == 0 else ctypes.get_errno())
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            raise OSError(code, "in child")
        return "done"

    def ptrace():
        return in_child(lambda: libc.ptrace(0, 0, 0, 0))  # PTRACE_TRACEME

    def unshare():
        return in_child(lambda: libc.unshare(0x10000000))  # CLONE_NEWUSER

    return {
        "root": sorted(os.listdir("/")),
        "ptrace": attempt(ptrace),
        "unshare": attempt(unshare),
        "write_root": attempt(lambda: write("/planted")),
        "outside": attempt(lambda: connect_to("192.0.2.1", 80)),
        "etc": sorted(os.listdir("/etc")),
        "host_data_dir": attempt(lambda: os.listdir(query["data_dir"][0])),
        "host_root_home": attempt(lambda: os.listdir("/root")),
        "write_app": attempt(lambda: write("/app/planted")),
        "write_usr": attempt(lambda: write("/usr/planted")),
        "write_tmp": attempt(lambda: write("/tmp/planted")),
        "mount": attempt(mount),
        "wok_port": attempt(lambda: connect(int(query["port"][0]))),
        "processes": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
        "interfaces": sorted(name for _, name in socket.if_nameindex()),
    }


def call(method, url, token=None, body=None):
    """An HTTP call with urllib (which honours HTTP_PROXY and NO_PROXY):
    its status and body, or the error that stopped it."""
    import urllib.error
    import urllib.request
    request = urllib.request.Request(url, data=body, method=method)
    if token is not None:
        request.add_header("authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return {"status": answer.status, "body": answer.read().decode()}
    except urllib.error.HTTPError as error:
        return {"status": error.code, "body": error.read().decode()}
    except OSError as error:
        return {"status": None, "body": str(error)}


def body_to_close(stream):
    """The body of an answer read until the server closes."""
    answer = b""
    while chunk := stream.recv(4096):
        answer += chunk
    return answer.split(b"\r\n\r\n", 1)[-1].decode()


def tunnel(address):
    """An HTTP GET through a CONNECT tunnel of the proxy, by hand."""
    proxy = urllib.parse.urlsplit(os.environ["HTTPS_PROXY"])
    with socket.create_connection((proxy.hostname, proxy.port), timeout=10) as stream:
        stream.sendall(f"CONNECT {address} HTTP/1.1\r\nhost: {address}\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = stream.recv(4096)
            if not chunk:
                break
            head += chunk
        status = head.split(b"\r\n", 1)[0].decode()
        if " 200" not in status:
            return {"connect": status, "body": None}
        stream.sendall(f"GET /tunnelled HTTP/1.1\r\nhost: {address}\r\nconnection: close\r\n\r\n".encode())
        return {"connect": status, "body": body_to_close(stream)}


def host_header(address):
    """A request through the proxy that names another Host: the host that
    answers must see the URL's."""
    proxy = urllib.parse.urlsplit(os.environ["HTTP_PROXY"])
    with socket.create_connection((proxy.hostname, proxy.port), timeout=10) as stream:
        stream.sendall(f"GET http://{address}/host HTTP/1.1\r\nhost: internal.example\r\nconnection: close\r\n\r\n".encode())
        return body_to_close(stream)


def presigned(api, token):
    """Makes a bucket and an object, presigns a GET of it, and fetches
    that URL with no credential."""
    call("PUT", api + "/v1/buckets/inside", token)
    call("PUT", api + "/v1/objects/inside/note.txt", token, b"shared from inside")
    signed = call("POST", api + "/v1/objects/inside/note.txt", token,
                  json.dumps({"method": "GET", "expires_in": "10m"}).encode())
    if signed["status"] != 200:
        return signed
    return call("GET", api + json.loads(signed["body"])["path"])


def platform(query):
    api, token = os.environ["WOK_API"], os.environ["WOK_TOKEN"]
    other = query["other_project"][0]
    allowed, denied = query["allowed"][0], query["denied"][0]
    return {
        "env": {name: os.environ.get(name) for name in [
            "WOK_API", "WOK_TOKEN", "WOK_PROJECT", "WOK_FUNCTION", "AWS_ENDPOINT_URL",
            "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "HTTP_PROXY"]},
        "kv_put": call("PUT", api + "/v1/kv/notes/greeting", token, b"from inside"),
        "kv_get": call("GET", api + "/v1/kv/notes/greeting", token),
        "no_token": call("GET", api + "/v1/kv/notes/greeting"),
        "other_project": call("GET", f"{api}/v1/projects/{other}/kv/notes/greeting", token),
        "deploy": call("POST", api + "/v1/functions/planted/versions?runtime=process&command=true", token, b"x"),
        "s3_credentials": call("GET", api + "/v1/s3/credentials", token),
        "presigned": presigned(api, token),
        "outside_allowed": call("GET", f"http://{allowed}/hello"),
        "outside_host": host_header(allowed),
        "outside_denied": call("GET", f"http://{denied}/hello"),
        "tunnel_allowed": tunnel(allowed),
        "tunnel_denied": tunnel(denied),
    }


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def answer(self, status, body, kind="application/json"):
        if not isinstance(body, bytes):
            body = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", kind)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        if url.path == "/info":
            self.answer(200, {
                "instance": INSTANCE,
                "uid": os.getuid(),
                "gid": os.getgid(),
                "pid": os.getpid(),
                "cwd": os.getcwd(),
                "hostname": socket.gethostname(),
                "greeting": os.environ.get("GREETING"),
                "path": self.path,
                "host": self.headers.get("host"),
                "tmp": sorted(os.listdir("/tmp")),
                # Who called, as wok verified it.
                "caller": {name.lower(): value for name, value in self.headers.items()
                           if name.lower().startswith("x-wok-")},
            })
        elif url.path == "/as-caller":
            # Reads `?path=` of wok's API with the caller's own token (the
            # `Authorization` it sent), so the caller's rules apply; with
            # `?as=function`, with the function's credentials instead.
            api = os.environ["WOK_API"]
            if query.get("as") == ["function"]:
                token = os.environ["WOK_TOKEN"]
            else:
                sent = self.headers.get("authorization") or ""
                token = sent[len("Bearer "):] if sent.startswith("Bearer ") else None
            self.answer(200, call("GET", api + query["path"][0], token))
        elif url.path == "/mint":
            # Mints a login ticket for `?email=` with the function's own
            # credentials (the service side's), for the app to trade.
            api, project = os.environ["WOK_API"], os.environ["WOK_PROJECT"]
            body = json.dumps({"email": query["email"][0], "create": True}).encode()
            self.answer(200, call("POST", f"{api}/p/{project}/auth/v1/admin/tickets",
                                  os.environ["WOK_TOKEN"], body))
        elif url.path == "/probe":
            self.answer(200, probes(query))
        elif url.path == "/platform":
            self.answer(200, platform(query))
        elif url.path == "/eat":
            hoard = []
            while True:
                hoard.append(bytearray(16 << 20))
        elif url.path == "/run":
            # A program shipped in the bundle beside this one.
            import subprocess
            done = subprocess.run(["/app/" + query["program"][0]], capture_output=True, timeout=60)
            self.answer(200, done.stdout)
        elif url.path == "/fill":
            written = 0
            try:
                with open("/tmp/fill", "wb") as file:
                    while True:
                        file.write(bytes(1 << 20))
                        file.flush()
                        written += 1 << 20
            except OSError as error:
                refused = errno.errorcode.get(error.errno, str(error.errno))
            os.remove("/tmp/fill")
            self.answer(200, {"written": written, "refused": refused})
        elif url.path == "/spin":
            # Burns CPU in the background from now on, requests or not.
            import threading
            def spin():
                while True:
                    pass
            threading.Thread(target=spin, daemon=True).start()
            self.answer(200, {"spinning": True})
        elif url.path == "/crash":
            os._exit(3)
        elif url.path == "/sleep":
            time.sleep(int(query["ms"][0]) / 1000)
            self.answer(200, {"instance": INSTANCE, "slept": True})
        elif url.path == "/log":
            print(query["line"][0], flush=True)
            self.answer(200, {"logged": True})
        else:
            self.answer(404, {"error": "no such route"})

    def do_POST(self):
        length = int(self.headers.get("content-length", "0"))
        body = self.rfile.read(length)
        if "ce-id" in self.headers:
            print(f"event {self.headers['ce-type']} {body.decode()}", flush=True)
        self.answer(200, body, self.headers.get("content-type", "application/octet-stream"))

    def log_message(self, format, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler)
print(f"listening on {os.environ['PORT']}", file=sys.stderr, flush=True)
server.serve_forever()
