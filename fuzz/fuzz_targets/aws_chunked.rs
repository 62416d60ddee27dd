//! aws-chunked framing (the final-chunk check wok adds to s3s): any bytes
//! in any pieces are read without a panic; a body encoded from the fuzz
//! data's chunks is complete, and every cut before its final chunk is not.
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "../../crates/gateway/src/aws_chunked.rs"]
mod aws_chunked;

use aws_chunked::Framing;

fuzz_target!(|input: (Vec<Vec<u8>>, Vec<u8>, u8)| {
    let (chunks, raw, piece) = input;
    let piece = usize::from(piece.max(1));
    // Anything at all.
    let mut framing = Framing::default();
    for bytes in raw.chunks(piece) {
        framing.advance(bytes);
    }
    // A body made of the chunks (the empty ones left out: size 0 ends it).
    let mut body = Vec::new();
    for chunk in chunks.iter().filter(|chunk| !chunk.is_empty()) {
        body.extend_from_slice(format!("{:x};chunk-signature=00\r\n", chunk.len()).as_bytes());
        body.extend_from_slice(chunk);
        body.extend_from_slice(b"\r\n");
    }
    let end = body.len();
    body.extend_from_slice(b"0;chunk-signature=00\r\n\r\n");
    let mut whole = Framing::default();
    for bytes in body.chunks(piece) {
        whole.advance(bytes);
    }
    assert!(whole.is_complete());
    let mut cut = Framing::default();
    for bytes in body[..end].chunks(piece) {
        cut.advance(bytes);
    }
    assert!(!cut.is_complete());
});
