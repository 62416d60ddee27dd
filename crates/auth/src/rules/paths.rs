//! Rules of a bucket or key-value store, per key pattern.
//!
//! A pattern is a key split at `/`: literal segments, `{name}` (one whole
//! segment, bound as `path.name`), and a last `**` (the rest of the key,
//! any number of segments). `users/{uid}/**` matches `users/u1/a.png`
//! with `path.uid == "u1"`. Each pattern has an expression per operation
//! ([`RuleSource`]); an operation on a key is allowed when the rule of
//! some pattern that matches the key allows it, so patterns never shadow
//! each other and their order does not matter. A key no pattern matches
//! is refused.
//!
//! A listing names a prefix, and is allowed when one pattern covers
//! every key that starts with it (its segments are all bound, and a
//! `**` takes the rest) and that pattern's `list` rule allows it with
//! what the prefix binds. `users/u1/` is covered by `users/{uid}/**`;
//! `users/` and `users/u1` are not (they reach other users' keys), so a
//! listing never shows a key the caller's rules do not cover, and a page
//! is never cut short by keys it may not see.
use super::{Operation, RuleSet, RuleSource, Shape, Subject};
use serde_json::{Map, Value as Json};
use std::collections::BTreeMap;

/// Most patterns a bucket or store has.
pub const MAX_PATTERNS: usize = 64;
/// Longest pattern, in bytes.
const MAX_PATTERN_BYTES: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Var(String),
    Rest,
}

#[derive(Debug)]
struct Pattern {
    segments: Vec<Segment>,
}

impl Pattern {
    fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() || text.len() > MAX_PATTERN_BYTES {
            return Err(format!(
                "a key pattern has 1 to {MAX_PATTERN_BYTES} bytes, not {}",
                text.len()
            ));
        }
        let parts: Vec<&str> = text.split('/').collect();
        let mut segments = Vec::with_capacity(parts.len());
        for (at, part) in parts.iter().enumerate() {
            let segment = if *part == "**" {
                if at + 1 != parts.len() {
                    return Err(format!(
                        "{text:?}: `**` takes the rest of a key, so it comes last"
                    ));
                }
                Segment::Rest
            } else if let Some(name) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                let identifier = name
                    .chars()
                    .next()
                    .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !identifier {
                    return Err(format!(
                        "{text:?}: {part:?} must name its segment like {{uid}}"
                    ));
                }
                if segments.contains(&Segment::Var(name.to_owned())) {
                    return Err(format!("{text:?}: {{{name}}} is named twice"));
                }
                Segment::Var(name.to_owned())
            } else if part.is_empty() || part.contains(['{', '}', '*']) {
                return Err(format!(
                    "{text:?}: a segment is a name, {{name}} or a last `**`, not {part:?}"
                ));
            } else {
                Segment::Literal((*part).to_owned())
            };
            segments.push(segment);
        }
        Ok(Self { segments })
    }

    /// What the pattern binds in `key`, if it matches.
    fn matches(&self, key: &str) -> Option<Json> {
        let mut bound = Map::new();
        let mut parts = key.split('/');
        for segment in &self.segments {
            match segment {
                Segment::Rest => return Some(Json::Object(bound)),
                Segment::Literal(literal) => {
                    if parts.next()? != literal {
                        return None;
                    }
                }
                Segment::Var(name) => {
                    let part = parts.next().filter(|part| !part.is_empty())?;
                    bound.insert(name.clone(), Json::String(part.to_owned()));
                }
            }
        }
        parts.next().is_none().then_some(Json::Object(bound))
    }

    /// What the pattern binds for every key that starts with `prefix`,
    /// if it matches every such key.
    fn covers(&self, prefix: &str) -> Option<Json> {
        let mut bound = Map::new();
        // The segments the prefix ends (its last part may go on, so only
        // a `**` can take it).
        let mut whole: Vec<&str> = prefix.split('/').collect();
        whole.pop();
        let mut segments = self.segments.iter();
        for part in whole {
            match segments.next()? {
                Segment::Rest => return Some(Json::Object(bound)),
                Segment::Literal(literal) if literal == part => {}
                Segment::Literal(_) => return None,
                Segment::Var(_) if part.is_empty() => return None,
                Segment::Var(name) => {
                    bound.insert(name.clone(), Json::String(part.to_owned()));
                }
            }
        }
        matches!(segments.next(), Some(Segment::Rest)).then_some(Json::Object(bound))
    }
}

/// A bucket's or key-value store's rules: a rule set per key pattern.
pub struct PathRules {
    source: BTreeMap<String, RuleSource>,
    patterns: Vec<(Pattern, RuleSet)>,
}

impl std::fmt::Debug for PathRules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.source.fmt(f)
    }
}

impl PathRules {
    /// Parses the rules; the error names the pattern and what is wrong.
    pub fn compile(source: BTreeMap<String, RuleSource>) -> Result<Self, String> {
        if source.len() > MAX_PATTERNS {
            return Err(format!(
                "at most {MAX_PATTERNS} key patterns, not {}",
                source.len()
            ));
        }
        let mut patterns = Vec::with_capacity(source.len());
        for (text, rules) in &source {
            let pattern = Pattern::parse(text)?;
            let rules = RuleSet::compile_for(rules.clone(), Shape::Keys)
                .map_err(|error| format!("{text:?}: {error}"))?;
            patterns.push((pattern, rules));
        }
        Ok(Self { source, patterns })
    }

    /// The rules of a stored rule's text.
    pub fn from_text(text: &str) -> Result<Self, String> {
        let source: BTreeMap<String, RuleSource> = serde_json::from_str(text).map_err(|error| {
            format!(
                "rules are a JSON object of key patterns, each an object of CEL expressions by operation: {error}"
            )
        })?;
        Self::compile(source)
    }

    /// The text the rules are stored as.
    pub fn to_text(&self) -> String {
        serde_json::to_string(&self.source).expect("strings serialize")
    }

    /// Whether `subject` may do `op` on `key`: `resource` is what is
    /// stored (null when nothing is), `request` what a write brings.
    pub fn allows(
        &self,
        op: Operation,
        subject: &Subject,
        key: &str,
        resource: &Json,
        request: &Json,
        now: domain::UnixMillis,
    ) -> bool {
        self.patterns.iter().any(|(pattern, rules)| {
            pattern.matches(key).is_some_and(|path| {
                rules.allows_with(op, subject, resource, request, Some(&path), now)
            })
        })
    }

    /// Whether `subject` may list the keys that start with `prefix`.
    pub fn allows_listing(&self, subject: &Subject, prefix: &str, now: domain::UnixMillis) -> bool {
        self.patterns.iter().any(|(pattern, rules)| {
            pattern.covers(prefix).is_some_and(|path| {
                rules.allows_with(
                    Operation::List,
                    subject,
                    &Json::Null,
                    &Json::Null,
                    Some(&path),
                    now,
                )
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn owner_rules() -> PathRules {
        PathRules::from_text(
            &json!({
                "users/{uid}/**": {
                    "read": "auth.uid == path.uid",
                    "list": "auth.uid == path.uid",
                    "create": "auth.uid == path.uid && request.size <= 100",
                    "delete": "auth.uid == path.uid && resource.size > 0",
                },
                "public/**": {"read": "true", "list": "true"},
            })
            .to_string(),
        )
        .unwrap()
    }

    fn user(uid: &str) -> Subject {
        Subject {
            uid: Some(uid.to_owned()),
            aal: 1,
            ..Subject::default()
        }
    }

    #[test]
    fn a_key_is_allowed_by_a_pattern_that_matches_it() {
        let rules = owner_rules();
        let (ann, nobody) = (user("ann"), Subject::default());
        let null = Json::Null;
        let read = |who: &Subject, key: &str| {
            rules.allows(Operation::Read, who, key, &json!({"size": 3}), &null, 0)
        };
        assert!(read(&ann, "users/ann/a.png"));
        assert!(read(&ann, "users/ann/deep/er/a.png"));
        assert!(!read(&ann, "users/bob/a.png"));
        assert!(!read(&nobody, "users/ann/a.png"));
        assert!(read(&nobody, "public/logo.png"));
        // No pattern matches: refused.
        assert!(!read(&ann, "other/a.png"));
        assert!(!read(&ann, "users"));
        let small = json!({"size": 10});
        let large = json!({"size": 1000});
        assert!(rules.allows(Operation::Create, &ann, "users/ann/x", &null, &small, 0));
        assert!(!rules.allows(Operation::Create, &ann, "users/ann/x", &null, &large, 0));
        // A missing field is an error, which refuses.
        assert!(!rules.allows(Operation::Create, &ann, "users/ann/x", &null, &null, 0));
        // No update rule: refused.
        assert!(!rules.allows(Operation::Update, &ann, "users/ann/x", &small, &small, 0));
        assert!(rules.allows(Operation::Delete, &ann, "users/ann/x", &small, &null, 0));
    }

    #[test]
    fn a_listing_is_allowed_only_within_a_covering_pattern() {
        let rules = owner_rules();
        let ann = user("ann");
        for (prefix, allowed) in [
            ("users/ann/", true),
            ("users/ann/photos/", true),
            ("users/ann/ph", true),
            ("users/bob/", false),
            ("users/ann", false),
            ("users/", false),
            ("users", false),
            ("", false),
            ("public/", true),
            ("public/a", true),
            ("public", false),
        ] {
            assert_eq!(
                rules.allows_listing(&ann, prefix, 0),
                allowed,
                "listing {prefix:?}"
            );
        }
        let everything = PathRules::from_text(r#"{"**": {"list": "auth.uid != null"}}"#).unwrap();
        assert!(everything.allows_listing(&ann, "", 0));
        assert!(!everything.allows_listing(&Subject::default(), "", 0));
    }

    #[test]
    fn bad_patterns_and_list_rules_on_objects_are_refused() {
        for (rules, says) in [
            (json!({"a/**/b": {}}), "comes last"),
            (json!({"a/{x}/{x}": {}}), "named twice"),
            (json!({"a/{1x}": {}}), "must name"),
            (json!({"a//b": {}}), "a segment is"),
            (json!({"a*": {}}), "a segment is"),
            (json!({"": {}}), "1 to 256"),
            (
                json!({"a/**": {"list": "resource.size > 1"}}),
                "on the listed prefix",
            ),
            (json!({"a/**": {"read": "auth.uid =="}}), "not CEL"),
            (json!({"a/**": {"write": "true"}}), "unknown field"),
        ] {
            let error = PathRules::from_text(&rules.to_string()).unwrap_err();
            assert!(error.contains(says), "{rules}: {error}");
        }
    }
}
