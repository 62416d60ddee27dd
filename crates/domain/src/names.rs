use std::fmt;

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("{kind} name must not be empty")]
    Empty { kind: &'static str },
    #[error("{kind} name {name:?} is longer than {max} characters")]
    TooLong {
        kind: &'static str,
        name: String,
        max: usize,
    },
    #[error(
        "{kind} name {name:?} may only contain lowercase letters, digits and '-', and must start with a letter or digit"
    )]
    InvalidCharacters { kind: &'static str, name: String },
    #[error(
        "bucket name {name:?} must be 3 to 63 lowercase letters, digits, '-' and '.', starting and ending with a letter or digit"
    )]
    InvalidBucket { name: String },
}

fn validate(kind: &'static str, name: &str, max: usize) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty { kind });
    }
    if name.len() > max {
        return Err(NameError::TooLong {
            kind,
            name: name.to_owned(),
            max,
        });
    }
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !first_ok || !rest_ok {
        return Err(NameError::InvalidCharacters {
            kind,
            name: name.to_owned(),
        });
    }
    Ok(())
}

macro_rules! name_type {
    ($(#[$meta:meta])* $type:ident, $kind:literal, $max:literal) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $type(String);

        impl $type {
            pub fn new(name: impl Into<String>) -> Result<Self, NameError> {
                let name = name.into();
                validate($kind, &name, $max)?;
                Ok(Self(name))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $type {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::str::FromStr for $type {
            type Err = NameError;
            fn from_str(name: &str) -> Result<Self, NameError> {
                Self::new(name)
            }
        }
    };
}

name_type!(
    /// A function's name: DNS-label-like, unique within its project.
    FunctionName, "function", 63
);
name_type!(
    /// A project: the tenancy unit. Every stored thing belongs to one.
    ProjectId, "project", 63
);

name_type!(
    /// A named key-value store of a project.
    StoreName, "store", 63
);
name_type!(
    /// A collection of JSON documents of a project.
    CollectionName, "collection", 63
);
name_type!(
    /// A queue topic of a project: messages published to it are kept in
    /// order and delivered to every subscriber.
    TopicName, "topic", 63
);
name_type!(
    /// A trigger of a function, unique among that function's triggers; its
    /// delivery position survives new versions.
    TriggerName, "trigger", 63
);

/// A bucket of a project's object storage: 3 to 63 lowercase letters,
/// digits, `-` and `.`, starting and ending with a letter or digit (the S3
/// rules, so any S3 client accepts it).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BucketName(String);

impl BucketName {
    pub fn new(name: impl Into<String>) -> Result<Self, NameError> {
        let name = name.into();
        if name.is_empty() {
            return Err(NameError::Empty { kind: "bucket" });
        }
        if name.len() > 63 {
            return Err(NameError::TooLong {
                kind: "bucket",
                name,
                max: 63,
            });
        }
        let bytes = name.as_bytes();
        let edge_ok = |byte: u8| byte.is_ascii_lowercase() || byte.is_ascii_digit();
        let valid = bytes.len() >= 3
            && edge_ok(bytes[0])
            && edge_ok(bytes[bytes.len() - 1])
            && bytes
                .iter()
                .all(|&byte| edge_ok(byte) || byte == b'-' || byte == b'.')
            && !name.contains("..");
        if !valid {
            return Err(NameError::InvalidBucket { name });
        }
        Ok(Self(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BucketName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl ProjectId {
    /// The project that always exists and that `/fn/NAME` addresses.
    pub fn default_project() -> Self {
        Self("default".to_owned())
    }
}

/// One invocation's id: time-ordered, unique, opaque to users.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InvocationId(pub String);

impl fmt::Display for InvocationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_names_follow_dns_label_rules() {
        assert!(FunctionName::new("hello-world2").is_ok());
        assert!(FunctionName::new("9lives").is_ok());
        assert_eq!(
            FunctionName::new(""),
            Err(NameError::Empty { kind: "function" })
        );
        assert!(matches!(
            FunctionName::new("-x"),
            Err(NameError::InvalidCharacters { .. })
        ));
        assert!(matches!(
            FunctionName::new("Hello"),
            Err(NameError::InvalidCharacters { .. })
        ));
        assert!(matches!(
            FunctionName::new("a/b"),
            Err(NameError::InvalidCharacters { .. })
        ));
        assert!(matches!(
            FunctionName::new("a".repeat(64)),
            Err(NameError::TooLong { .. })
        ));
    }
}
