//! The checksums S3 clients send and expect back: CRC32, CRC32C,
//! CRC64NVME, SHA1 and SHA256, base64 of the big-endian digest, plus MD5
//! for ETags and `Content-MD5`.
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use md5::Digest as _;

/// The algorithms, by the names S3 uses.
pub const ALGORITHMS: [&str; 5] = ["CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256"];

/// An algorithm's name as S3 writes it, if it is one.
pub fn algorithm(name: &str) -> Option<&'static str> {
    ALGORITHMS
        .iter()
        .find(|known| known.eq_ignore_ascii_case(name))
        .copied()
}

enum Hasher {
    Crc(crc_fast::Digest, usize),
    Sha1(sha1::Sha1),
    Sha256(sha2_011::Sha256),
}

impl Hasher {
    fn new(algorithm: &str) -> Self {
        match algorithm {
            "CRC32" => Hasher::Crc(
                crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc32IsoHdlc),
                4,
            ),
            "CRC32C" => Hasher::Crc(crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc32Iscsi), 4),
            "CRC64NVME" => Hasher::Crc(crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc64Nvme), 8),
            "SHA1" => Hasher::Sha1(sha1::Sha1::new()),
            _ => Hasher::Sha256(sha2_011::Sha256::new()),
        }
    }

    fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Crc(digest, _) => digest.update(bytes),
            Hasher::Sha1(digest) => digest.update(bytes),
            Hasher::Sha256(digest) => digest.update(bytes),
        }
    }

    fn finalize(self) -> Vec<u8> {
        match self {
            Hasher::Crc(digest, width) => digest.finalize().to_be_bytes()[8 - width..].to_vec(),
            Hasher::Sha1(digest) => digest.finalize().to_vec(),
            Hasher::Sha256(digest) => digest.finalize().to_vec(),
        }
    }
}

/// Computes MD5 and the chosen checksums over a stream of bytes.
pub struct Checksums {
    md5: md5::Md5,
    hashers: Vec<(&'static str, Hasher)>,
}

impl Checksums {
    pub fn new(algorithms: &[&'static str]) -> Self {
        let mut chosen: Vec<&'static str> = algorithms.to_vec();
        chosen.sort();
        chosen.dedup();
        Self {
            md5: md5::Md5::new(),
            hashers: chosen
                .into_iter()
                .map(|algorithm| (algorithm, Hasher::new(algorithm)))
                .collect(),
        }
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.md5.update(bytes);
        for (_, hasher) in &mut self.hashers {
            hasher.update(bytes);
        }
    }

    /// The MD5 and each checksum as base64.
    pub fn finalize(self) -> ([u8; 16], Vec<(String, String)>) {
        let md5: [u8; 16] = self.md5.finalize().into();
        let checksums = self
            .hashers
            .into_iter()
            .map(|(algorithm, hasher)| (algorithm.to_owned(), STANDARD.encode(hasher.finalize())))
            .collect();
        (md5, checksums)
    }
}

/// The checksum of a multipart object from its parts' (S3's "composite"
/// checksum): the algorithm over the parts' raw digests, then `-N`.
pub fn composite(algorithm: &'static str, part_checksums: &[String]) -> Option<String> {
    let mut hasher = Hasher::new(algorithm);
    for checksum in part_checksums {
        hasher.update(&STANDARD.decode(checksum).ok()?);
    }
    Some(format!(
        "{}-{}",
        STANDARD.encode(hasher.finalize()),
        part_checksums.len()
    ))
}

/// The multipart ETag: MD5 of the parts' MD5s, then `-N`.
pub fn multipart_etag(part_etags: &[String]) -> Option<String> {
    let mut md5 = md5::Md5::new();
    for etag in part_etags {
        md5.update(hex::decode(etag).ok()?);
    }
    Some(format!(
        "{}-{}",
        hex::encode(md5.finalize()),
        part_etags.len()
    ))
}

pub fn base64_md5(md5: &[u8; 16]) -> String {
    STANDARD.encode(md5)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        let mut checksums = Checksums::new(&["CRC32", "CRC32C", "SHA256", "SHA1", "CRC64NVME"]);
        checksums.update(b"hello ");
        checksums.update(b"world");
        let (md5, values) = checksums.finalize();
        assert_eq!(hex::encode(md5), "5eb63bbbe01eeed093cb22bb8f5acdc3");
        let value = |name: &str| {
            values
                .iter()
                .find(|(algorithm, _)| algorithm == name)
                .unwrap()
                .1
                .clone()
        };
        // crc32("hello world") = 0x0d4a1185; sha256 as S3 and `openssl` give it.
        assert_eq!(
            value("CRC32"),
            STANDARD.encode(0x0d4a_1185u32.to_be_bytes())
        );
        assert_eq!(
            value("CRC32C"),
            STANDARD.encode(0xc994_65aau32.to_be_bytes())
        );
        assert_eq!(
            value("SHA256"),
            "uU0nuZNNPgilLlLX2n2r+sSE7+N6U4DukIj3rOLvzek="
        );
        assert_eq!(value("SHA1"), "Kq5sNclPz7QV2+lfQIuc6R7oRu0=");
        assert_eq!(value("CRC64NVME").len(), 12);
    }
}
