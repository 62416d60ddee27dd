use std::fmt;

/// A number of bytes, written by users as `128MiB`, `1GiB`, `512KiB`, `10MB` or `4096`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(pub u64);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    #[error("size {0:?} is not a number of bytes (examples: 128MiB, 1GiB, 4096)")]
    Invalid(String),
    #[error("size {0:?} is too large")]
    Overflow(String),
}

impl ByteSize {
    pub const KIB: u64 = 1024;
    pub const MIB: u64 = 1024 * 1024;
    pub const GIB: u64 = 1024 * 1024 * 1024;

    pub const fn mib(n: u64) -> Self {
        Self(n * Self::MIB)
    }

    pub fn bytes(self) -> u64 {
        self.0
    }

    pub fn parse(text: &str) -> Result<Self, SizeError> {
        let trimmed = text.trim();
        let split = trimmed
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(trimmed.len());
        let (digits, unit) = trimmed.split_at(split);
        if digits.is_empty() {
            return Err(SizeError::Invalid(text.to_owned()));
        }
        let number: u64 = digits
            .parse()
            .map_err(|_| SizeError::Overflow(text.to_owned()))?;
        let multiplier = match unit.trim() {
            "" | "B" => 1,
            "KiB" | "Ki" => Self::KIB,
            "MiB" | "Mi" => Self::MIB,
            "GiB" | "Gi" => Self::GIB,
            "KB" | "kB" | "K" | "k" => 1000,
            "MB" | "M" => 1000 * 1000,
            "GB" | "G" => 1000 * 1000 * 1000,
            _ => return Err(SizeError::Invalid(text.to_owned())),
        };
        number
            .checked_mul(multiplier)
            .map(Self)
            .ok_or_else(|| SizeError::Overflow(text.to_owned()))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bytes = self.0;
        for (unit, size) in [("GiB", Self::GIB), ("MiB", Self::MIB), ("KiB", Self::KIB)] {
            if bytes >= size && bytes.is_multiple_of(size) {
                return write!(f, "{}{unit}", bytes / size);
            }
        }
        write!(f, "{bytes}B")
    }
}

impl std::str::FromStr for ByteSize {
    type Err = SizeError;
    fn from_str(text: &str) -> Result<Self, SizeError> {
        Self::parse(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_binary_and_decimal_units() {
        assert_eq!(ByteSize::parse("128MiB"), Ok(ByteSize(128 << 20)));
        assert_eq!(ByteSize::parse("1GiB"), Ok(ByteSize(1 << 30)));
        assert_eq!(ByteSize::parse("4096"), Ok(ByteSize(4096)));
        assert_eq!(ByteSize::parse("10MB"), Ok(ByteSize(10_000_000)));
        assert!(matches!(
            ByteSize::parse("lots"),
            Err(SizeError::Invalid(_))
        ));
        assert!(matches!(
            ByteSize::parse("12XB"),
            Err(SizeError::Invalid(_))
        ));
        assert!(matches!(
            ByteSize::parse("99999999999GiB"),
            Err(SizeError::Overflow(_))
        ));
    }

    #[test]
    fn displays_in_the_largest_exact_unit() {
        assert_eq!(ByteSize(128 << 20).to_string(), "128MiB");
        assert_eq!(ByteSize(1500).to_string(), "1500B");
    }
}
