//! Per-user access rules: a CEL expression per operation of a collection
//! (`read`, `list`, `create`, `update`, `delete`), over
//! - `auth`: who calls: `uid` (null without a user), `role` (`anon` or
//!   `authenticated`), `aal` (0 without a user, else 1 or 2), `anonymous`,
//!   `session`, `claims` (the token's, `{}` without a user);
//! - `resource`: the stored document, `{id, data, version}` (null on
//!   create);
//! - `request`: the write, `{data}`: the document as it will be after
//!   the write (null on reads and deletes);
//! - `now`: the time, a CEL timestamp.
//!
//! An operation without an expression is refused, an expression that
//! fails to evaluate (a missing field, a wrong type) refuses, and only a
//! boolean `true` allows. Service keys and the admin are not subject to
//! rules.
//!
//! A `list` rule is also a filter for queries: [`RuleSet::list_filter`]
//! folds everything but `resource` into constants and turns the rest into
//! a filter of the query language (`{"and": [...]}`, `{"or": [...]}`,
//! terms), which is ANDed into every query, count and live query, so that
//! indexes serve it and a page is never cut short by documents the user
//! may not see. A `list` rule that cannot be turned into a filter is
//! refused when it is set. The filter's terms keep the rule's meaning:
//! CEL refuses a comparison with a field a document lacks (an error), and
//! a term matches only documents that have the field.
use cel::common::ast::{Expr, operators};
use cel::objects::Value;
use cel::parser::Expression;
use cel::{Context, Program};
use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};

/// Longest expression, in bytes.
pub const MAX_RULE_BYTES: usize = 4096;

/// What a rule is asked about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Read,
    List,
    Create,
    Update,
    Delete,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Read => "read",
            Operation::List => "list",
            Operation::Create => "create",
            Operation::Update => "update",
            Operation::Delete => "delete",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            Operation::Read,
            Operation::List,
            Operation::Create,
            Operation::Update,
            Operation::Delete,
        ]
        .into_iter()
        .find(|op| op.as_str() == text)
    }
}

mod paths;

pub use paths::{MAX_PATTERNS, PathRules};

/// The per-user rules of one collection, topic, bucket or key-value
/// store, parsed.
#[derive(Debug, Clone)]
pub enum Compiled {
    /// A collection's or topic's: one rule set.
    Set(std::sync::Arc<RuleSet>),
    /// A bucket's or key-value store's: a rule set per key pattern.
    Paths(std::sync::Arc<PathRules>),
}

impl Compiled {
    /// Parses the rules of a `kind` of resource, as written or stored.
    pub fn parse(kind: domain::ResourceKind, text: &str) -> Result<Self, String> {
        use domain::ResourceKind;
        Ok(match kind {
            ResourceKind::Collection => Compiled::Set(RuleSet::from_text(text)?.into()),
            ResourceKind::Topic => {
                Compiled::Set(RuleSet::from_text_for(text, Shape::Events)?.into())
            }
            ResourceKind::Bucket | ResourceKind::KvStore => {
                Compiled::Paths(PathRules::from_text(text)?.into())
            }
        })
    }

    /// The text the rules are stored as.
    pub fn to_text(&self) -> String {
        match self {
            Compiled::Set(rules) => rules.to_text(),
            Compiled::Paths(rules) => rules.to_text(),
        }
    }
}

/// What a rule set guards, which decides what its expressions may read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// A collection's documents: all five operations; the `list` rule
    /// must turn into a query filter.
    Documents,
    /// A topic's events: `read` (who receives an event, decided per
    /// event) and `create` (who publishes one).
    Events,
    /// The keys of a bucket or key-value store under one key pattern:
    /// the `list` rule decides on the listed prefix only.
    Keys,
}

/// A rule set as written: an expression per operation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSource {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub list: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete: Option<String>,
}

/// A rule set, parsed.
pub struct RuleSet {
    source: RuleSource,
    read: Option<Program>,
    list: Option<Program>,
    create: Option<Program>,
    update: Option<Program>,
    delete: Option<Program>,
}

impl std::fmt::Debug for RuleSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.source.fmt(f)
    }
}

/// Who asks, as rules see it.
#[derive(Debug, Clone, Default)]
pub struct Subject {
    pub uid: Option<String>,
    pub session: Option<String>,
    pub aal: u8,
    pub anonymous: bool,
    /// The token's claims (`{}` without a user).
    pub claims: Json,
}

impl Subject {
    fn value(&self) -> Json {
        json!({
            "uid": self.uid,
            "session": self.session,
            "role": if self.uid.is_some() { "authenticated" } else { "anon" },
            "aal": self.aal,
            "anonymous": self.anonymous,
            "claims": if self.claims.is_object() { self.claims.clone() } else { json!({}) },
        })
    }
}

/// A document as rules see it.
#[derive(Debug, Clone, Copy)]
pub struct Resource<'a> {
    pub id: &'a str,
    pub data: &'a serde_json::Map<String, Json>,
    pub version: u64,
}

impl RuleSet {
    /// Parses a collection's rule set; the error says which expression is
    /// wrong and why.
    pub fn compile(source: RuleSource) -> Result<Self, String> {
        Self::compile_for(source, Shape::Documents)
    }

    /// Parses a rule set for what `shape` guards.
    pub fn compile_for(source: RuleSource, shape: Shape) -> Result<Self, String> {
        let parse = |op: Operation, text: &Option<String>| -> Result<Option<Program>, String> {
            let Some(text) = text else {
                return Ok(None);
            };
            if text.len() > MAX_RULE_BYTES {
                return Err(format!(
                    "the {} rule is longer than {MAX_RULE_BYTES} bytes",
                    op.as_str()
                ));
            }
            Program::compile(text)
                .map(Some)
                .map_err(|error| format!("the {} rule is not CEL: {error}", op.as_str()))
        };
        let rules = Self {
            read: parse(Operation::Read, &source.read)?,
            list: parse(Operation::List, &source.list)?,
            create: parse(Operation::Create, &source.create)?,
            update: parse(Operation::Update, &source.update)?,
            delete: parse(Operation::Delete, &source.delete)?,
            source,
        };
        match shape {
            Shape::Documents => {}
            Shape::Events => {
                if rules.list.is_some() || rules.update.is_some() || rules.delete.is_some() {
                    return Err(
                        "a topic takes a read rule (who receives an event) and a create rule (who publishes one)"
                            .to_owned(),
                    );
                }
                return Ok(rules);
            }
            Shape::Keys => {
                if let Some(list) = &rules.list
                    && reads_resource(list.expression())
                {
                    return Err(
                        "a list rule decides on the listed prefix (path, auth, now), not on resource or request"
                            .to_owned(),
                    );
                }
                return Ok(rules);
            }
        }
        if let Some(list) = &rules.list {
            // With any caller, a list rule must turn into a filter.
            for subject in [
                Subject::default(),
                Subject {
                    uid: Some("u".to_owned()),
                    aal: 1,
                    ..Subject::default()
                },
            ] {
                with_constants(&subject, 0, |context| to_filter(list.expression(), context))
                    .map_err(|why| format!("the list rule cannot filter queries: {why}"))?;
            }
        }
        Ok(rules)
    }

    /// The rule set of a stored rule's text.
    pub fn from_text(text: &str) -> Result<Self, String> {
        Self::from_text_for(text, Shape::Documents)
    }

    fn from_text_for(text: &str, shape: Shape) -> Result<Self, String> {
        let source: RuleSource = serde_json::from_str(text).map_err(|error| {
            format!("rules are a JSON object of CEL expressions by operation: {error}")
        })?;
        Self::compile_for(source, shape)
    }

    pub fn source(&self) -> &RuleSource {
        &self.source
    }

    /// The text a rule set is stored as.
    pub fn to_text(&self) -> String {
        serde_json::to_string(&self.source).expect("strings serialize")
    }

    fn program(&self, op: Operation) -> Option<&Program> {
        match op {
            Operation::Read => self.read.as_ref(),
            Operation::List => self.list.as_ref(),
            Operation::Create => self.create.as_ref(),
            Operation::Update => self.update.as_ref(),
            Operation::Delete => self.delete.as_ref(),
        }
    }

    /// Whether `subject` may do `op`, with `resource` and `request` (and
    /// `path`, for key rules) as given: only a boolean `true` allows.
    pub fn allows_with(
        &self,
        op: Operation,
        subject: &Subject,
        resource: &Json,
        request: &Json,
        path: Option<&Json>,
        now: domain::UnixMillis,
    ) -> bool {
        let Some(program) = self.program(op) else {
            return false;
        };
        let (Ok(resource), Ok(request)) = (
            cel::to_value(resource.clone()),
            cel::to_value(request.clone()),
        ) else {
            return false;
        };
        let path = match path.map(|path| cel::to_value(path.clone())) {
            None => None,
            Some(Ok(path)) => Some(path),
            Some(Err(_)) => return false,
        };
        BASE.with(|base| {
            let mut context = base.new_inner_scope();
            add_constants(&mut context, subject, now);
            context.add_variable_from_value("resource", resource);
            context.add_variable_from_value("request", request);
            if let Some(path) = path {
                context.add_variable_from_value("path", path);
            }
            matches!(program.execute(&context), Ok(Value::Bool(true)))
        })
    }

    /// Whether `subject` may do `op` on `resource` (with `request`: the
    /// document as a write would leave it). Evaluation errors refuse.
    pub fn allows(
        &self,
        op: Operation,
        subject: &Subject,
        resource: Option<Resource<'_>>,
        request: Option<&serde_json::Map<String, Json>>,
        now: domain::UnixMillis,
    ) -> bool {
        let program = match op {
            Operation::Read => &self.read,
            Operation::List => &self.list,
            Operation::Create => &self.create,
            Operation::Update => &self.update,
            Operation::Delete => &self.delete,
        };
        let Some(program) = program else {
            return false;
        };
        let resource = resource.map_or(Json::Null, |resource| {
            json!({"id": resource.id, "data": resource.data, "version": resource.version})
        });
        let request = request.map_or(Json::Null, |data| json!({ "data": data }));
        let (Ok(resource), Ok(request)) = (cel::to_value(resource), cel::to_value(request)) else {
            return false;
        };
        BASE.with(|base| {
            let mut context = base.new_inner_scope();
            add_constants(&mut context, subject, now);
            context.add_variable_from_value("resource", resource);
            context.add_variable_from_value("request", request);
            matches!(program.execute(&context), Ok(Value::Bool(true)))
        })
    }

    /// The filter the `list` rule makes for `subject`: `None` lets every
    /// document through; `Some` of a filter that matches nothing when
    /// the rule refuses everything (or there is none).
    pub fn list_filter(&self, subject: &Subject, now: domain::UnixMillis) -> Option<Json> {
        let Some(list) = &self.list else {
            return Some(NOTHING.clone());
        };
        match with_constants(subject, now, |context| {
            to_filter(list.expression(), context)
        }) {
            Ok(Folded::Constant(true)) => None,
            Ok(Folded::Constant(false)) | Err(_) => Some(NOTHING.clone()),
            Ok(Folded::Filter(filter)) => Some(filter),
        }
    }
}

/// A filter no document matches: every term needs its field, and no
/// document has a field both present and absent.
static NOTHING: std::sync::LazyLock<Json> = std::sync::LazyLock::new(
    || json!({"and": [["_rule", "exists", true], ["_rule", "exists", false]]}),
);

thread_local! {
    /// CEL's standard library, made once a thread (making it costs tens of
    /// microseconds); each evaluation adds its variables in a scope of its
    /// own.
    static BASE: Context<'static, 'static> = Context::default();
}

/// Runs `work` with the variables every rule sees besides `resource` and
/// `request`.
fn with_constants<T>(
    subject: &Subject,
    now: domain::UnixMillis,
    work: impl FnOnce(&Context<'_, '_>) -> T,
) -> T {
    BASE.with(|base| {
        let mut context = base.new_inner_scope();
        add_constants(&mut context, subject, now);
        work(&context)
    })
}

fn add_constants(context: &mut Context<'_, '_>, subject: &Subject, now: domain::UnixMillis) {
    let auth = cel::to_value(subject.value()).unwrap_or(Value::Null);
    context.add_variable_from_value("auth", auth);
    let now = chrono::DateTime::from_timestamp_millis(now)
        .unwrap_or_default()
        .fixed_offset();
    context.add_variable_from_value("now", Value::Timestamp(now));
}

/// Part of a `list` rule, folded.
enum Folded {
    Constant(bool),
    Filter(Json),
}

/// The query filter of `expr`, with every part that does not read
/// `resource` evaluated now.
fn to_filter(expr: &Expression, context: &Context<'_, '_>) -> Result<Folded, String> {
    if !reads_resource(expr) {
        return match Value::resolve(expr, context) {
            Ok(Value::Bool(value)) => Ok(Folded::Constant(value)),
            // An error refuses, as when the rule runs on a document.
            Ok(_) | Err(_) => Ok(Folded::Constant(false)),
        };
    }
    match &expr.expr {
        Expr::Call(call) if call.func_name == operators::LOGICAL_AND => {
            let (left, right) = both(&call.args, context)?;
            Ok(match (left, right) {
                (Folded::Constant(false), _) | (_, Folded::Constant(false)) => {
                    Folded::Constant(false)
                }
                (Folded::Constant(true), other) | (other, Folded::Constant(true)) => other,
                (Folded::Filter(left), Folded::Filter(right)) => {
                    Folded::Filter(join("and", left, right))
                }
            })
        }
        Expr::Call(call) if call.func_name == operators::LOGICAL_OR => {
            let (left, right) = both(&call.args, context)?;
            Ok(match (left, right) {
                (Folded::Constant(true), _) | (_, Folded::Constant(true)) => Folded::Constant(true),
                (Folded::Constant(false), other) | (other, Folded::Constant(false)) => other,
                (Folded::Filter(left), Folded::Filter(right)) => {
                    Folded::Filter(join("or", left, right))
                }
            })
        }
        Expr::Call(call) if call.args.len() == 2 && comparison(&call.func_name).is_some() => {
            let op = comparison(&call.func_name).expect("checked");
            let (left, right) = (&call.args[0], &call.args[1]);
            if let Some(field) = field_of(left) {
                return Ok(match constant(right, context)? {
                    Some(value) => Folded::Filter(json!([field, op, value])),
                    None => Folded::Constant(false),
                });
            }
            if let Some(field) = field_of(right) {
                return Ok(match constant(left, context)? {
                    Some(value) => Folded::Filter(json!([field, flipped(op), value])),
                    None => Folded::Constant(false),
                });
            }
            Err(format!(
                "a comparison must set a field of resource.data against a value that does not depend on the document ({})",
                call.func_name
            ))
        }
        Expr::Call(call) if call.func_name == operators::IN && call.args.len() == 2 => {
            let (item, list) = (&call.args[0], &call.args[1]);
            if let Some(field) = field_of(item) {
                return Ok(match constant(list, context)? {
                    Some(values) if values.is_array() => {
                        Folded::Filter(json!([field, "in", values]))
                    }
                    _ => Folded::Constant(false),
                });
            }
            if let Some(field) = field_of(list) {
                return Ok(match constant(item, context)? {
                    Some(value) => Folded::Filter(json!([field, "array-contains", value])),
                    None => Folded::Constant(false),
                });
            }
            Err("`in` must test a field of resource.data".to_owned())
        }
        Expr::Select(select) if select.test => match field_of(&select.operand) {
            // `has(resource.data.a.b)`: the field `a.b` exists.
            Some(parent) => Ok(Folded::Filter(json!([
                format!("{parent}.{}", select.field),
                "exists",
                true
            ]))),
            None if is_data(&select.operand) => {
                Ok(Folded::Filter(json!([select.field, "exists", true])))
            }
            None => Err("`has` must test a field of resource.data".to_owned()),
        },
        _ => Err(
            "use &&, ||, comparisons and `in` over fields of resource.data (and has())".to_owned(),
        ),
    }
}

/// `{op: [left, right]}`, with the operands that are `op`s themselves
/// spread in (`a && (b && c)` is one `and` of three).
fn join(op: &str, left: Json, right: Json) -> Json {
    let mut terms = Vec::new();
    for side in [left, right] {
        match side {
            Json::Object(mut object) if object.len() == 1 && object.contains_key(op) => {
                if let Some(Json::Array(inner)) = object.remove(op) {
                    terms.extend(inner);
                }
            }
            other => terms.push(other),
        }
    }
    json!({ op: terms })
}

fn both(args: &[Expression], context: &Context<'_, '_>) -> Result<(Folded, Folded), String> {
    match args {
        [left, right] => Ok((to_filter(left, context)?, to_filter(right, context)?)),
        _ => Err("a logical operator takes two operands".to_owned()),
    }
}

fn comparison(function: &str) -> Option<&'static str> {
    Some(match function {
        operators::EQUALS => "==",
        operators::NOT_EQUALS => "!=",
        operators::LESS => "<",
        operators::LESS_EQUALS => "<=",
        operators::GREATER => ">",
        operators::GREATER_EQUALS => ">=",
        _ => return None,
    })
}

/// `a OP b` as `b OP' a`.
fn flipped(op: &str) -> &'static str {
    match op {
        "<" => ">",
        "<=" => ">=",
        ">" => "<",
        ">=" => "<=",
        "==" => "==",
        _ => "!=",
    }
}

/// Whether `expr` is `resource.data`.
fn is_data(expr: &Expression) -> bool {
    matches!(&expr.expr, Expr::Select(select)
        if !select.test && select.field == "data"
            && matches!(&select.operand.expr, Expr::Ident(name) if name == "resource"))
}

/// The field path `a.b` of `resource.data.a.b`.
fn field_of(expr: &Expression) -> Option<String> {
    let Expr::Select(select) = &expr.expr else {
        return None;
    };
    if select.test {
        return None;
    }
    if is_data(&select.operand) {
        return Some(select.field.clone());
    }
    field_of(&select.operand).map(|parent| format!("{parent}.{}", select.field))
}

/// The value of an expression that must not read `resource`; `None`
/// when it fails to evaluate for this caller (which refuses, as the rule
/// would on a document).
fn constant(expr: &Expression, context: &Context<'_, '_>) -> Result<Option<Json>, String> {
    if reads_resource(expr) {
        return Err("both sides of a comparison read the document".to_owned());
    }
    Ok(Value::resolve(expr, context)
        .ok()
        .and_then(|value| value.json().ok()))
}

/// Whether `expr` mentions `resource` (or `request`, which list rules do
/// not have).
fn reads_resource(expr: &Expression) -> bool {
    match &expr.expr {
        Expr::Ident(name) => name == "resource" || name == "request",
        Expr::Select(select) => reads_resource(&select.operand),
        Expr::Call(call) => {
            call.target.as_deref().is_some_and(reads_resource)
                || call.args.iter().any(reads_resource)
        }
        Expr::List(list) => list.elements.iter().any(reads_resource),
        Expr::Map(map) => map.entries.iter().any(|entry| match &entry.expr {
            cel::common::ast::EntryExpr::MapEntry(entry) => {
                reads_resource(&entry.key) || reads_resource(&entry.value)
            }
            cel::common::ast::EntryExpr::StructField(field) => reads_resource(&field.value),
        }),
        Expr::Comprehension(comprehension) => {
            reads_resource(&comprehension.iter_range)
                || reads_resource(&comprehension.accu_init)
                || reads_resource(&comprehension.loop_cond)
                || reads_resource(&comprehension.loop_step)
                || reads_resource(&comprehension.result)
        }
        Expr::Struct(_) | Expr::Literal(_) | Expr::Unspecified => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(list: &str) -> RuleSet {
        RuleSet::compile(RuleSource {
            read: Some(list.to_owned()),
            list: Some(list.to_owned()),
            ..RuleSource::default()
        })
        .unwrap()
    }

    fn user(uid: &str) -> Subject {
        Subject {
            uid: Some(uid.to_owned()),
            aal: 1,
            claims: json!({"app_metadata": {"team": "red"}}),
            ..Subject::default()
        }
    }

    #[test]
    fn a_list_rule_becomes_a_filter_with_the_caller_folded_in() {
        let public_or_mine =
            rules("resource.data.visibility == 'public' || resource.data.owner == auth.uid");
        assert_eq!(
            public_or_mine.list_filter(&user("u1"), 0),
            Some(json!({"or": [["visibility", "==", "public"], ["owner", "==", "u1"]]}))
        );
        // Without a user, `auth.uid` is null: only what is public (and
        // documents whose owner is null, as CEL would say too).
        assert_eq!(
            public_or_mine.list_filter(&Subject::default(), 0),
            Some(json!({"or": [["visibility", "==", "public"], ["owner", "==", null]]}))
        );
        let team = rules(
            "auth.uid != null && resource.data.team == auth.claims.app_metadata.team && 3 <= resource.data.level && has(resource.data.meta.tag) && resource.data.kind in ['a', 'b'] && 'x' in resource.data.tags",
        );
        assert_eq!(
            team.list_filter(&user("u1"), 0),
            Some(json!({"and": [
                ["team", "==", "red"], ["level", ">=", 3], ["meta.tag", "exists", true],
                ["kind", "in", ["a", "b"]], ["tags", "array-contains", "x"]]}))
        );
        assert_eq!(
            team.list_filter(&Subject::default(), 0),
            Some(NOTHING.clone())
        );
        assert_eq!(rules("true").list_filter(&Subject::default(), 0), None);
        assert_eq!(
            rules("false").list_filter(&user("u"), 0),
            Some(NOTHING.clone())
        );
        let none = RuleSet::compile(RuleSource::default()).unwrap();
        assert_eq!(none.list_filter(&user("u"), 0), Some(NOTHING.clone()));
    }

    #[test]
    fn a_list_rule_that_cannot_filter_is_refused() {
        for refused in [
            "resource.data.a == resource.data.b",
            "!(resource.data.a == 1)",
            "resource.data.name.startsWith('x')",
            "size(resource.data.tags) > 1",
            "resource.id == auth.uid",
        ] {
            let error = RuleSet::compile(RuleSource {
                list: Some(refused.to_owned()),
                ..RuleSource::default()
            })
            .unwrap_err();
            assert!(error.contains("cannot filter"), "{refused}: {error}");
        }
        assert!(
            RuleSet::compile(RuleSource {
                read: Some("resource.data.a ==".to_owned()),
                ..RuleSource::default()
            })
            .unwrap_err()
            .contains("not CEL")
        );
    }

    #[test]
    fn rules_decide_on_the_document_and_refuse_on_errors() {
        let rules = RuleSet::compile(RuleSource {
            read: Some("resource.data.owner == auth.uid".to_owned()),
            create: Some(
                "request.data.owner == auth.uid && request.data.title.size() <= 10".to_owned(),
            ),
            update: Some(
                "resource.data.owner == auth.uid && request.data.owner == resource.data.owner"
                    .to_owned(),
            ),
            delete: Some("auth.aal >= 2 && now > timestamp('2020-01-01T00:00:00Z')".to_owned()),
            ..RuleSource::default()
        })
        .unwrap();
        let data = |value: Json| value.as_object().unwrap().clone();
        let mine = data(json!({"owner": "u1", "title": "hi"}));
        let doc = Resource {
            id: "d",
            data: &mine,
            version: 1,
        };
        let (ann, bob) = (user("u1"), user("u2"));
        assert!(rules.allows(Operation::Read, &ann, Some(doc), None, 0));
        assert!(!rules.allows(Operation::Read, &bob, Some(doc), None, 0));
        assert!(!rules.allows(Operation::Read, &Subject::default(), Some(doc), None, 0));
        assert!(rules.allows(Operation::Create, &ann, None, Some(&mine), 0));
        assert!(!rules.allows(Operation::Create, &bob, None, Some(&mine), 0));
        let long = data(json!({"owner": "u1", "title": "far too long a title"}));
        assert!(!rules.allows(Operation::Create, &ann, None, Some(&long), 0));
        // A missing field is an error, which refuses.
        assert!(!rules.allows(
            Operation::Create,
            &ann,
            None,
            Some(&data(json!({"owner": "u1"}))),
            0
        ));
        let moved = data(json!({"owner": "u2", "title": "hi"}));
        assert!(rules.allows(Operation::Update, &ann, Some(doc), Some(&mine), 0));
        assert!(!rules.allows(Operation::Update, &ann, Some(doc), Some(&moved), 0));
        // No list rule: listing is refused.
        assert!(!rules.allows(Operation::List, &ann, Some(doc), None, 0));
        let strong = Subject {
            aal: 2,
            ..user("u1")
        };
        let now = 1_800_000_000_000;
        assert!(!rules.allows(Operation::Delete, &ann, Some(doc), None, now));
        assert!(rules.allows(Operation::Delete, &strong, Some(doc), None, now));
        assert!(!rules.allows(Operation::Delete, &strong, Some(doc), None, 0));
    }
}
