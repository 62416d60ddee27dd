// echo (JavaScript): answers 200 with
//   x-echo-method           request method ("GET", "POST", ... or the custom name)
//   x-echo-path-with-query  request path-with-query, verbatim ("" when absent)
//   x-echo-headers          compact JSON array of [name, value] pairs, in the
//                           order wasi:http reports them (values decoded as
//                           UTF-8, non-ASCII escaped as \uXXXX so the header
//                           stays ASCII, byte-for-byte the same as the Python
//                           guest's json.dumps output)
// and the request body echoed back unchanged.
//
// Uses wasi:http directly rather than the fetch-event `Headers` object,
// because `Headers` sorts and merges fields and would lose their order.
import {
  Fields,
  IncomingBody,
  OutgoingBody,
  OutgoingResponse,
  ResponseOutparam,
} from 'wasi:http/types@0.2.12';

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8');

// wasi:io's blocking-write-and-flush accepts at most 4096 bytes per call.
const WRITE_CHUNK = 4096;
const READ_CHUNK = 65536n;

function methodName(method) {
  return method.tag === 'other' ? method.val : method.tag.toUpperCase();
}

function asciiJson(value) {
  return JSON.stringify(value).replace(
    /[\u0080-\uffff]/g,
    (c) => '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0'),
  );
}

function isClosed(err) {
  const payload = err && (err.payload ?? err);
  return payload && payload.tag === 'closed';
}

function readBody(request) {
  const incoming = request.consume();
  const stream = incoming.stream();
  const chunks = [];
  let total = 0;
  for (;;) {
    let chunk;
    try {
      chunk = stream.blockingRead(READ_CHUNK);
    } catch (err) {
      if (isClosed(err)) break;
      throw err;
    }
    chunks.push(chunk);
    total += chunk.length;
  }
  stream[Symbol.dispose]();
  const trailers = IncomingBody.finish(incoming);
  trailers[Symbol.dispose]();

  const body = new Uint8Array(total);
  let offset = 0;
  for (const chunk of chunks) {
    body.set(chunk, offset);
    offset += chunk.length;
  }
  return body;
}

export const incomingHandler = {
  handle(request, responseOut) {
    const method = methodName(request.method());
    const pathWithQuery = request.pathWithQuery() ?? '';
    const requestHeaders = request.headers();
    const pairs = requestHeaders
      .entries()
      .map(([name, value]) => [name, decoder.decode(value)]);
    requestHeaders[Symbol.dispose]();
    const body = readBody(request);

    const headers = Fields.fromList([
      ['x-echo-method', encoder.encode(method)],
      ['x-echo-path-with-query', encoder.encode(pathWithQuery)],
      ['x-echo-headers', encoder.encode(asciiJson(pairs))],
    ]);
    const response = new OutgoingResponse(headers);
    response.setStatusCode(200);
    const outgoing = response.body();
    ResponseOutparam.set(responseOut, { tag: 'ok', val: response });

    const out = outgoing.write();
    for (let offset = 0; offset < body.length; offset += WRITE_CHUNK) {
      out.blockingWriteAndFlush(body.subarray(offset, offset + WRITE_CHUNK));
    }
    out[Symbol.dispose]();
    OutgoingBody.finish(outgoing, undefined);
  },
};
