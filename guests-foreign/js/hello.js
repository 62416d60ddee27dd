// hello (JavaScript): every request gets 200, `content-type: text/plain`
// and the body "hello from javascript\n".
//
// Implements `wasi:http/incoming-handler` by hand (exporting
// `incomingHandler` turns StarlingMonkey's fetch-event layer off), so the
// component talks to wasi:http directly, exactly like the Python guests.
import {
  Fields,
  OutgoingBody,
  OutgoingResponse,
  ResponseOutparam,
} from 'wasi:http/types@0.2.12';

const encoder = new TextEncoder();
const BODY = encoder.encode('hello from javascript\n');

export const incomingHandler = {
  handle(_request, responseOut) {
    const headers = Fields.fromList([
      ['content-type', encoder.encode('text/plain')],
    ]);
    const response = new OutgoingResponse(headers);
    response.setStatusCode(200);
    const body = response.body();
    ResponseOutparam.set(responseOut, { tag: 'ok', val: response });

    const out = body.write();
    out.blockingWriteAndFlush(BODY);
    // The stream is a child of the body: drop it before finishing the body.
    out[Symbol.dispose]();
    OutgoingBody.finish(body, undefined);
  },
};
