"""hello (Python): every request gets 200, `content-type: text/plain` and the
body "hello from python\n".

Built with componentize-py against the `wasi:http/proxy@0.2.12` world (see
../wit/world.wit); componentize-py looks up the `IncomingHandler` class below
as the implementation of `wasi:http/incoming-handler`.
"""

from componentize_py_types import Ok
from wit_world import exports
from wit_world.imports.types import (
    Fields,
    IncomingRequest,
    OutgoingBody,
    OutgoingResponse,
    ResponseOutparam,
)

BODY = b"hello from python\n"


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        response = OutgoingResponse(Fields.from_list([("content-type", b"text/plain")]))
        response.set_status_code(200)
        body = response.body()
        ResponseOutparam.set(response_out, Ok(response))
        # The stream is a child of the body: drop it (leave the `with`)
        # before finishing the body.
        with body.write() as out:
            out.blocking_write_and_flush(BODY)
        OutgoingBody.finish(body, None)
