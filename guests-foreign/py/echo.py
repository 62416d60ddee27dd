"""echo (Python): answers 200 with

  x-echo-method           request method ("GET", "POST", ... or the custom name)
  x-echo-path-with-query  request path-with-query, verbatim ("" when absent)
  x-echo-headers          compact JSON array of [name, value] pairs, in the
                          order wasi:http reports them (values decoded as
                          UTF-8 with U+FFFD for invalid bytes; json.dumps
                          escapes non-ASCII as \\uXXXX so the header stays
                          ASCII, byte-for-byte the same as the JS guest)

and the request body echoed back unchanged.
"""

import json

from componentize_py_types import Err, Ok
from wit_world import exports
from wit_world.imports.streams import StreamError_Closed
from wit_world.imports.types import (
    Fields,
    IncomingBody,
    IncomingRequest,
    Method_Other,
    OutgoingBody,
    OutgoingResponse,
    ResponseOutparam,
)

# wasi:io's blocking-write-and-flush accepts at most 4096 bytes per call.
WRITE_CHUNK = 4096
READ_CHUNK = 65536


def method_name(method) -> str:
    if isinstance(method, Method_Other):
        return method.value
    # Method_Get -> "GET", Method_Patch -> "PATCH", ...
    return type(method).__name__.removeprefix("Method_").upper()


def read_body(request: IncomingRequest) -> bytes:
    incoming = request.consume()
    chunks = []
    with incoming.stream() as stream:
        while True:
            try:
                chunks.append(stream.blocking_read(READ_CHUNK))
            except Err as err:
                if isinstance(err.value, StreamError_Closed):
                    break
                raise
    with IncomingBody.finish(incoming):
        pass
    return b"".join(chunks)


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        method = method_name(request.method())
        path_with_query = request.path_with_query() or ""
        with request.headers() as fields:
            pairs = [
                [name, value.decode("utf-8", errors="replace")]
                for name, value in fields.entries()
            ]
        body = read_body(request)

        headers = Fields.from_list(
            [
                ("x-echo-method", method.encode()),
                ("x-echo-path-with-query", path_with_query.encode()),
                ("x-echo-headers", json.dumps(pairs, separators=(",", ":")).encode()),
            ]
        )
        response = OutgoingResponse(headers)
        response.set_status_code(200)
        outgoing = response.body()
        ResponseOutparam.set(response_out, Ok(response))
        with outgoing.write() as out:
            for offset in range(0, len(body), WRITE_CHUNK):
                out.blocking_write_and_flush(body[offset : offset + WRITE_CHUNK])
        OutgoingBody.finish(outgoing, None)
