//! Where an aws-chunked body (SigV4 streaming) stands, byte by byte:
//! `SIZE[;chunk-signature=...]\r\n`, then SIZE bytes and `\r\n`, again and
//! again until a chunk of size 0 (then trailers, or the closing line).
//! No dependencies, so that the fuzz target can build it alone.

/// The state of a body read so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Framing(State);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading a chunk's size (hex digits so far).
    Size(u64),
    /// Past the size: skipping to the end of the line.
    Extension(u64),
    /// Inside a chunk's data: bytes left.
    Data(u64),
    /// After a chunk's data: the `\r\n` left.
    DataEnd(u8),
    /// The zero-sized chunk was seen.
    Final,
}

impl Default for Framing {
    fn default() -> Self {
        Framing(State::Size(0))
    }
}

impl Framing {
    /// Reads the next bytes of the body.
    pub fn advance(&mut self, mut bytes: &[u8]) {
        while let Some(&byte) = bytes.first() {
            self.0 = match self.0 {
                State::Size(size) => {
                    bytes = &bytes[1..];
                    match (byte as char).to_digit(16) {
                        Some(digit) => {
                            State::Size(size.saturating_mul(16).saturating_add(u64::from(digit)))
                        }
                        None if byte == b'\n' => Self::after_size(size),
                        None => State::Extension(size),
                    }
                }
                State::Extension(size) => match bytes.iter().position(|byte| *byte == b'\n') {
                    Some(at) => {
                        bytes = &bytes[at + 1..];
                        Self::after_size(size)
                    }
                    None => {
                        bytes = &[];
                        State::Extension(size)
                    }
                },
                State::Data(left) => {
                    let taken = left.min(bytes.len() as u64);
                    bytes = &bytes[taken as usize..];
                    if taken == left {
                        State::DataEnd(2)
                    } else {
                        State::Data(left - taken)
                    }
                }
                State::DataEnd(left) => {
                    bytes = &bytes[1..];
                    if left == 1 {
                        State::Size(0)
                    } else {
                        State::DataEnd(left - 1)
                    }
                }
                // Trailers, or the closing line.
                State::Final => return,
            };
        }
    }

    fn after_size(size: u64) -> State {
        if size == 0 {
            State::Final
        } else {
            State::Data(size)
        }
    }

    /// Whether the final chunk was seen.
    pub fn is_complete(&self) -> bool {
        self.0 == State::Final
    }

    /// Marks the body as ended (its failure has been reported).
    pub fn finish(&mut self) {
        self.0 = State::Final;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_is_complete_only_after_its_final_chunk() {
        let body = b"5;chunk-signature=ab\r\nhello\r\n0;chunk-signature=cd\r\n\r\n";
        let mut whole = Framing::default();
        whole.advance(body);
        assert!(whole.is_complete());
        // Any cut before the final chunk's size is incomplete, in any pieces.
        for cut in 0..body.iter().position(|byte| *byte == b'0').unwrap() {
            let mut framing = Framing::default();
            for piece in body[..cut].chunks(3) {
                framing.advance(piece);
            }
            assert!(!framing.is_complete(), "cut at {cut}");
        }
        // Unsigned chunks with trailers.
        let mut trailers = Framing::default();
        trailers.advance(b"3\r\nabc\r\n0\r\nx-amz-checksum-crc32:AAAA\r\n\r\n");
        assert!(trailers.is_complete());
    }
}
