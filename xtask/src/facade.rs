//! The public namespace layer: `spec/openapi.yaml` → `platos-client/src/namespaces.rs`.
//!
//! progenitor gives one flat builder per operation, speaking reqwest types.
//! Users meet this layer instead: `client.agents().list().limit(5).await?`.
//! Its shape comes from the spec:
//!
//! - an operation's (single) tag is its namespace; a dotted tag (`bgo.tasks`)
//!   is a namespace inside another;
//! - required path, query and body parameters are the method's arguments;
//!   optional query parameters and optional body properties are setters on a
//!   request value that can be awaited;
//! - vendor extensions say what no OpenAPI keyword can (documented in
//!   `spec/README.md`): `x-platos-method` and `x-platos-request` (names),
//!   `x-platos-list` (which envelope key holds the items, whether it pages),
//!   `x-platos-not-found: none` (404 is `None`), `x-platos-unwrap` (answer
//!   with one field of the body), `x-platos-discard` (ignore the body),
//!   `x-platos-convert` (a hand-written `TryFrom` of the answer),
//!   `x-platos-body: whole` (the body type is one argument),
//!   `x-platos-idempotency` (`key`, `once` or `natural`), and the document's
//!   `x-platos-enums` (open request-side enums named by `x-platos-enum`).
//!
//! Every problem in the spec is reported at once, naming its operation.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result, bail};
use proc_macro2::{Span, TokenStream};
use quote::quote;
use serde_json::{Map, Value};

/// Which client the layer is generated for: the paths of what the generated
/// code leans on, and how the spec states each operation's idempotency.
pub struct Target {
    /// The client type the namespaces hang off.
    pub client: &'static str,
    /// Where the generated payload types live.
    pub types: &'static str,
    /// The module with `finish`, `finish_envelope`, `finish_optional`, `decode`.
    pub transport: &'static str,
    /// What `send()` of a whole-envelope list finishes with.
    pub whole_finish: &'static str,
    /// Wraps every answer (`crate::v1::Reply`), if any.
    pub reply: Option<&'static str>,
    /// How the spec states each operation's idempotency.
    pub idempotency: Idempotency,
}

/// How a spec states idempotency.
pub struct Idempotency {
    /// The extension naming it.
    pub extension: &'static str,
    /// `(value, variant)`.
    pub values: &'static [(&'static str, &'static str)],
    /// The enum the variants belong to.
    pub enum_path: &'static str,
    /// The variant for an operation without the extension (by HTTP method),
    /// or `None` when the extension is required.
    pub default_for: fn(&str) -> Option<&'static str>,
    /// Variants whose requests take a caller-supplied key (`.idempotency_key()`).
    pub per_call_key: &'static [&'static str],
}

/// The agent API (`spec/openapi.yaml` → `platos-client/src/namespaces.rs`).
pub const MAIN: Target = Target {
    client: "crate::PlatosClient",
    types: "crate::types",
    transport: "crate::transport",
    whole_finish: "finish_envelope",
    reply: None,
    idempotency: Idempotency {
        extension: "x-platos-idempotency",
        values: &[("key", "Key"), ("once", "Once"), ("natural", "Natural")],
        enum_path: "crate::retry::Idempotency",
        default_for: |method| match method {
            "post" | "patch" => Some("Key"),
            _ => Some("Natural"),
        },
        per_call_key: &[],
    },
};

/// The V1 operator API (`spec/v1.yaml` → `platos-client/src/v1/namespaces.rs`).
pub const V1: Target = Target {
    client: "crate::v1::V1Client",
    types: "crate::v1::types",
    transport: "crate::v1::transport",
    whole_finish: "finish",
    reply: Some("crate::v1::Reply"),
    idempotency: Idempotency {
        extension: "x-platos-idempotency-class",
        values: &[
            ("required", "Required"),
            ("accepted", "Accepted"),
            ("exempt", "Exempt"),
            ("not-applicable", "NotApplicable"),
        ],
        enum_path: "crate::v1::KeyClass",
        default_for: |_| None,
        per_call_key: &["Required", "Accepted"],
    },
};

/// Turns `spec/openapi.yaml` into the body of `platos-client/src/namespaces.rs`.
pub fn generate(openapi_yaml: &str) -> Result<String> {
    generate_for(openapi_yaml, &MAIN)
}

/// Turns a spec into the namespace layer of `target`.
pub fn generate_for(openapi_yaml: &str, target: &Target) -> Result<String> {
    // One parser for both generators: the document as openapiv3 reads it
    // (what `rest` validates and types), walked in its JSON form.
    let spec = crate::rest::parse(openapi_yaml)?;
    let doc = serde_json::to_value(&spec).context("re-serialising the OpenAPI document")?;
    let model = Model::read(&doc, target)?;
    crate::rest::format_tokens(model.emit(target))
}

// ------------------------------------------------------------------ model

#[derive(Clone, Debug, PartialEq)]
enum Ty {
    Str,
    U64,
    I64,
    F64,
    Bool,
    Object,
    Json,
    Strings,
    Values,
    Named(String),
    Enum(String, EnumKind),
    /// A hand-written type (`x-platos-body: {argument, type}`).
    Hand(String),
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum EnumKind {
    Str,
    Int,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Place {
    Path,
    Query,
    Body,
    /// The call's own idempotency key (not a parameter of the operation).
    Key,
}

#[derive(Clone, Debug)]
struct Field {
    wire: String,
    rust: String,
    ty: Ty,
    place: Place,
    doc: String,
    /// A required but nullable body property: a setter, sent as `null` when
    /// not set.
    always: bool,
    /// A required body property with a `default`: a setter, the default
    /// (JSON text) sent when not set.
    default: Option<String>,
    /// A required argument taken by a setter (one of three or more of the
    /// same type, which positional arguments would let a caller swap
    /// silently): sending without it is a configuration error.
    setter: bool,
}

enum Body {
    None,
    Whole,
    /// One argument of a hand-written type, sent as its `RestBody`.
    Hand,
    Fields,
}

enum Output {
    Unit,
    Type(String),
    Optional(String),
    Discard,
    Unwrap {
        answer: String,
        field: String,
        ty: Field,
    },
    Convert {
        answer: String,
        path: String,
    },
    List(List),
}

struct List {
    item: String,
    /// The answer's schema (the envelope holding the items).
    envelope: String,
    keys: Vec<String>,
    has_more: bool,
    paged: bool,
    clear: Vec<String>,
    /// `send()` answers the whole envelope (it carries more than the items,
    /// such as aggregates); `into_stream()` still walks the items.
    whole: Option<String>,
    /// Cursor paging: the query parameter that takes the envelope's
    /// `page.nextCursor` (instead of offset paging).
    cursor: Option<String>,
}

struct Op {
    id: String,
    path: String,
    /// The HTTP method (`get`, `post`, …).
    http: String,
    /// The answer is JSON.
    json: bool,
    namespace: Vec<String>,
    method: String,
    request: String,
    doc: String,
    args: Vec<Field>,
    options: Vec<Field>,
    body: Body,
    output: Output,
    idempotency: &'static str,
    /// `security: []`: the call goes without the client's credentials.
    anonymous: bool,
}

struct OpenEnum {
    name: String,
    doc: String,
    kind: EnumKind,
    variants: Vec<(String, Value)>,
}

struct Model {
    namespaces: BTreeMap<Vec<String>, String>,
    enums: Vec<OpenEnum>,
    ops: Vec<Op>,
}

fn str_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

pub use crate::rest::to_snake;

/// snake_case, SCREAMING or dotted → UpperCamel.
fn to_camel(s: &str) -> String {
    to_snake(s)
        .split('_')
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut c = w.chars();
            match c.next() {
                Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
                None => String::new(),
            }
        })
        .collect()
}

struct Reader<'a> {
    doc: &'a Value,
    enums: BTreeMap<String, EnumKind>,
    problems: Vec<String>,
}

impl<'a> Reader<'a> {
    fn resolve(&self, v: &'a Value) -> &'a Value {
        match str_of(v, "$ref").and_then(|r| r.strip_prefix('#')) {
            Some(pointer) => self.doc.pointer(pointer).unwrap_or(v),
            None => v,
        }
    }

    /// The component schema name of a `$ref`, if it is one.
    fn ref_name(v: &Value) -> Option<String> {
        str_of(v, "$ref")
            .and_then(|r| r.strip_prefix("#/components/schemas/"))
            .map(str::to_owned)
    }

    /// The Rust type of a parameter or property schema (with its own
    /// `x-platos-enum`, if any).
    fn ty_of(&mut self, schema: &Value, ext_holder: &Value, at: &str) -> Option<Ty> {
        if let Some(name) = str_of(ext_holder, "x-platos-enum").or(str_of(schema, "x-platos-enum"))
        {
            return match self.enums.get(name) {
                Some(kind) => Some(Ty::Enum(name.to_owned(), *kind)),
                None => {
                    self.problems.push(format!(
                        "{at}: x-platos-enum {name} is not in x-platos-enums"
                    ));
                    None
                }
            };
        }
        if let Some(name) = Self::ref_name(schema) {
            return Some(Ty::Named(name));
        }
        // `allOf` of one `$ref`: the way to give a reference siblings
        // (`default`, `description`), which a bare `$ref` ignores.
        if let Some(Value::Array(all)) = schema.get("allOf")
            && let [one] = all.as_slice()
            && let Some(name) = Self::ref_name(one)
        {
            return Some(Ty::Named(name));
        }
        let ty = match (str_of(schema, "type"), str_of(schema, "format")) {
            (Some("string"), _) => Ty::Str,
            (Some("integer"), _) => Ty::I64,
            (Some("number"), _) => Ty::F64,
            (Some("boolean"), _) => Ty::Bool,
            (Some("object"), _) if schema.get("properties").is_none() => Ty::Object,
            (Some("array"), _) => match schema.get("items").map(|i| str_of(i, "type")) {
                Some(Some("string")) => Ty::Strings,
                Some(None) => Ty::Values,
                _ => {
                    self.problems
                        .push(format!("{at}: arrays hold strings or any JSON"));
                    return None;
                }
            },
            (None, _) if schema.get("oneOf").is_none() && schema.get("anyOf").is_none() => Ty::Json,
            _ => {
                self.problems.push(format!(
                    "{at}: schema {schema} has no facade type (give it a $ref or use x-platos-body: whole)"
                ));
                return None;
            }
        };
        Some(ty)
    }
}

impl Model {
    fn read(doc: &Value, target: &Target) -> Result<Model> {
        let mut r = Reader {
            doc,
            enums: BTreeMap::new(),
            problems: Vec::new(),
        };
        let enums = read_enums(doc, &mut r);

        let mut namespaces = BTreeMap::new();
        for tag in doc
            .get("tags")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(name) = str_of(tag, "name") {
                let path: Vec<String> = name.split('.').map(str::to_owned).collect();
                namespaces.insert(path, str_of(tag, "description").unwrap_or("").to_owned());
            }
        }

        let mut ops = Vec::new();
        let empty = Map::new();
        let paths = doc
            .get("paths")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        for (path, item) in paths {
            for method in ["get", "put", "post", "delete", "patch"] {
                let Some(op) = item.get(method) else { continue };
                // Streams have hand-written readers.
                if op.get("x-platos-stream") == Some(&Value::Bool(true)) {
                    continue;
                }
                if let Some(op) = read_op(&mut r, target, &namespaces, path, method, item, op) {
                    ops.push(op);
                }
            }
        }

        let mut methods = BTreeSet::new();
        let mut requests = BTreeSet::new();
        for op in &ops {
            if !methods.insert((op.namespace.clone(), op.method.clone())) {
                r.problems.push(format!(
                    "operation {}: namespace {} already has a method `{}`",
                    op.id,
                    op.namespace.join("."),
                    op.method
                ));
            }
            if !requests.insert(op.request.clone()) {
                r.problems.push(format!(
                    "operation {}: request type {} is used twice",
                    op.id, op.request
                ));
            }
        }
        // Every parent of a nested namespace must exist.
        for ns in namespaces.keys() {
            if ns.len() > 1 && !namespaces.contains_key(&ns[..ns.len() - 1]) {
                r.problems.push(format!(
                    "tag {}: its parent tag {} is not declared",
                    ns.join("."),
                    ns[..ns.len() - 1].join(".")
                ));
            }
        }
        if !r.problems.is_empty() {
            bail!(
                "the namespace layer cannot be generated; {} problem(s):\n  - {}",
                r.problems.len(),
                r.problems.join("\n  - ")
            );
        }
        Ok(Model {
            namespaces,
            enums,
            ops,
        })
    }
}

fn read_enums(doc: &Value, r: &mut Reader<'_>) -> Vec<OpenEnum> {
    let mut out = Vec::new();
    let Some(all) = doc.get("x-platos-enums").and_then(Value::as_object) else {
        return out;
    };
    for (name, e) in all {
        let kind = match str_of(e, "type") {
            Some("string") => EnumKind::Str,
            Some("integer") => EnumKind::Int,
            other => {
                r.problems.push(format!(
                    "x-platos-enums.{name}: type {other:?} (string or integer)"
                ));
                continue;
            }
        };
        let variants: Vec<(String, Value)> = match e.get("values") {
            Some(Value::Array(list)) => list
                .iter()
                .map(|v| (to_camel(v.as_str().unwrap_or_default()), v.clone()))
                .collect(),
            Some(Value::Object(map)) => map.iter().map(|(k, v)| (to_camel(k), v.clone())).collect(),
            _ => {
                r.problems.push(format!(
                    "x-platos-enums.{name}: `values` must be a list or a map"
                ));
                continue;
            }
        };
        let fits = |v: &Value| match kind {
            EnumKind::Str => v.is_string(),
            EnumKind::Int => v.is_i64(),
        };
        if variants
            .iter()
            .any(|(n, v)| n.is_empty() || !fits(v) || n == "Other")
        {
            r.problems.push(format!(
                "x-platos-enums.{name}: every value must be a {kind:?} with a usable name (not `Other`)"
            ));
            continue;
        }
        r.enums.insert(name.clone(), kind);
        out.push(OpenEnum {
            name: name.clone(),
            doc: str_of(e, "description").unwrap_or("").to_owned(),
            kind,
            variants,
        });
    }
    out
}

fn read_op(
    r: &mut Reader<'_>,
    target: &Target,
    namespaces: &BTreeMap<Vec<String>, String>,
    path: &str,
    method: &str,
    item: &Value,
    op: &Value,
) -> Option<Op> {
    let id = str_of(op, "operationId")?.to_owned();
    let before = r.problems.len();
    let report =
        |r: &mut Reader<'_>, msg: String| r.problems.push(format!("operation {id}: {msg}"));

    let tags: Vec<&str> = op
        .get("tags")
        .and_then(Value::as_array)
        .map(|t| t.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let [tag] = tags.as_slice() else {
        report(
            r,
            format!("needs exactly one tag (its namespace), has {tags:?}"),
        );
        return None;
    };
    let namespace: Vec<String> = tag.split('.').map(str::to_owned).collect();
    if !namespaces.contains_key(&namespace) {
        report(r, format!("tag {tag} is not declared in `tags`"));
    }
    let prefix = format!("{}_", namespace.join("_"));
    let method_name = str_of(op, "x-platos-method")
        .map(str::to_owned)
        .unwrap_or_else(|| id.strip_prefix(&prefix).unwrap_or(&id).to_owned());
    let request = str_of(op, "x-platos-request")
        .map(str::to_owned)
        .unwrap_or_else(|| to_camel(&id));
    let doc = [str_of(op, "summary"), str_of(op, "description")]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join("\n\n");

    // Parameters (path-level first, as OpenAPI says).
    let mut args = Vec::new();
    let mut options = Vec::new();
    let params = item
        .get("parameters")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .chain(
            op.get("parameters")
                .and_then(Value::as_array)
                .into_iter()
                .flatten(),
        );
    for p in params {
        let p = r.resolve(p);
        let (Some(name), Some(loc)) = (str_of(p, "name"), str_of(p, "in")) else {
            report(r, format!("parameter {p} has no name or location"));
            continue;
        };
        let place = match loc {
            "path" => Place::Path,
            "query" => Place::Query,
            other => {
                report(
                    r,
                    format!("parameter {name} in {other}: the facade sends none"),
                );
                continue;
            }
        };
        let schema = p.get("schema").cloned().unwrap_or(Value::Null);
        let Some(mut ty) = r.ty_of(&schema, p, &format!("operation {id}: parameter {name}")) else {
            continue;
        };
        // Counts and sizes are unsigned on the public side.
        if ty == Ty::I64 && place == Place::Query {
            ty = Ty::U64;
        }
        let field = Field {
            wire: name.to_owned(),
            rust: to_snake(name),
            ty,
            place,
            doc: str_of(p, "description").unwrap_or("").to_owned(),
            always: false,
            default: None,
            setter: false,
        };
        if place == Place::Path || p.get("required") == Some(&Value::Bool(true)) {
            args.push(field);
        } else {
            options.push(field);
        }
    }

    // Body.
    let body = match op
        .pointer("/requestBody/content/application~1json/schema")
        .map(|s| (s, Reader::ref_name(s)))
    {
        None => Body::None,
        Some((_, None)) => {
            report(
                r,
                "the request body schema must be a $ref to a component".into(),
            );
            Body::None
        }
        Some((_, Some(_))) if op.get("x-platos-body").is_some_and(Value::is_object) => {
            let hand = op.get("x-platos-body");
            match (
                hand.and_then(|h| str_of(h, "argument")),
                hand.and_then(|h| str_of(h, "type")),
            ) {
                (Some(argument), Some(ty)) => {
                    args.push(Field {
                        wire: "body".into(),
                        rust: argument.to_owned(),
                        ty: Ty::Hand(ty.to_owned()),
                        place: Place::Body,
                        doc: String::new(),
                        always: false,
                        default: None,
                        setter: false,
                    });
                    Body::Hand
                }
                _ => {
                    report(
                        r,
                        "x-platos-body as an object needs `argument` and `type`".into(),
                    );
                    Body::None
                }
            }
        }
        Some((_, Some(name))) if str_of(op, "x-platos-body") == Some("whole") => {
            args.push(Field {
                wire: "body".into(),
                rust: "body".into(),
                ty: Ty::Named(name),
                place: Place::Body,
                doc: String::new(),
                always: false,
                default: None,
                setter: false,
            });
            Body::Whole
        }
        Some((schema, Some(_))) => {
            let schema = r.resolve(schema);
            let required: BTreeSet<&str> = schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let props = schema
                .get("properties")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            // Required properties become arguments in the order `required` lists them.
            let order: Vec<&str> = schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            for name in order.iter().copied().chain(
                props
                    .keys()
                    .map(String::as_str)
                    .filter(|k| !required.contains(k)),
            ) {
                let Some(prop) = props.get(name) else {
                    report(
                        r,
                        format!("required body property {name} is not a property"),
                    );
                    continue;
                };
                let at = format!("operation {id}: body property {name}");
                let Some(ty) = r.ty_of(prop, prop, &at) else {
                    continue;
                };
                let nullable = prop.get("nullable") == Some(&Value::Bool(true));
                let field = Field {
                    wire: name.to_owned(),
                    rust: to_snake(name),
                    always: nullable && required.contains(name),
                    default: prop
                        .get("default")
                        .filter(|_| required.contains(name))
                        .map(Value::to_string),
                    ty,
                    place: Place::Body,
                    doc: str_of(prop, "description").unwrap_or("").to_owned(),
                    setter: false,
                };
                if field.always && matches!(field.ty, Ty::Enum(..)) {
                    report(
                        r,
                        format!("body property {name}: a nullable enum is unsupported"),
                    );
                }
                if required.contains(name) && !field.always && field.default.is_none() {
                    args.push(field);
                } else {
                    options.push(field);
                }
            }
            Body::Fields
        }
    };

    // The answer.
    let success = op
        .get("responses")
        .and_then(Value::as_object)
        .and_then(|m| m.iter().find(|(k, _)| k.starts_with('2')).map(|(_, v)| v));
    let answer_schema = success
        .map(|s| r.resolve(s))
        .and_then(|s| s.pointer("/content/application~1json/schema"));
    let json = answer_schema.is_some();
    let answer = match answer_schema {
        None => None,
        Some(s) => match Reader::ref_name(s) {
            Some(name) => Some(name),
            None => {
                report(r, "the 2xx schema must be a $ref to a component".into());
                None
            }
        },
    };
    let flag = |key: &str| op.get(key).is_some();
    let output = if let Some(list) = op.get("x-platos-list") {
        read_list(r, &id, list, answer.as_deref(), &options)
            .map(Output::List)
            .unwrap_or(Output::Unit)
    } else if flag("x-platos-discard") {
        Output::Discard
    } else if let Some(path) = str_of(op, "x-platos-convert") {
        match answer.clone() {
            Some(answer) => Output::Convert {
                answer,
                path: path.to_owned(),
            },
            None => {
                report(r, "x-platos-convert needs a 2xx schema".into());
                Output::Unit
            }
        }
    } else if let Some(field) = str_of(op, "x-platos-unwrap") {
        match answer.as_deref().map(|a| read_unwrap(r, a, field)) {
            Some(Ok(ty)) => Output::Unwrap {
                answer: answer.clone().unwrap_or_default(),
                field: to_snake(field),
                ty,
            },
            Some(Err(e)) => {
                report(r, e);
                Output::Unit
            }
            None => {
                report(r, "x-platos-unwrap needs a 2xx schema".into());
                Output::Unit
            }
        }
    } else {
        match (answer, str_of(op, "x-platos-not-found")) {
            (Some(a), Some("none")) => Output::Optional(a),
            (None, Some(_)) => {
                report(r, "x-platos-not-found needs a 2xx schema".into());
                Output::Unit
            }
            (_, Some(other)) if other != "none" => {
                report(r, format!("x-platos-not-found: {other} (only `none`)"));
                Output::Unit
            }
            (Some(a), _) => Output::Type(a),
            (None, _) => Output::Unit,
        }
    };

    let rules = &target.idempotency;
    let idempotency = match str_of(op, rules.extension) {
        Some(value) => match rules.values.iter().find(|(v, _)| *v == value) {
            Some((_, variant)) => *variant,
            None => {
                report(
                    r,
                    format!("{}: {value} is not a known value", rules.extension),
                );
                "Unknown"
            }
        },
        None => match (rules.default_for)(method) {
            Some(variant) => variant,
            None => {
                report(r, format!("needs {}", rules.extension));
                "Unknown"
            }
        },
    };
    if rules.per_call_key.contains(&idempotency) {
        options.push(Field {
            wire: "idempotency-key".into(),
            rust: "idempotency_key".into(),
            ty: Ty::Str,
            place: Place::Key,
            doc: "The idempotency key of this call, instead of one minted for it: the same \
                  key after a restart recovers the first answer (the server replays it)."
                .into(),
            always: false,
            default: None,
            setter: false,
        });
    }

    // Path parameters first, in the order the path names them.
    let position = |f: &Field| match f.place {
        Place::Path => path.find(&format!("{{{}}}", f.wire)).unwrap_or(0),
        _ => usize::MAX,
    };
    args.sort_by_key(position);
    // Three or more arguments of one type would be easy to swap: up to two
    // path parameters stay positional (in path order), the rest are setters.
    for i in 0..args.len() {
        let same = |a: &Field| a.ty == args[i].ty;
        let (all, paths) = (
            args.iter().filter(|a| same(a)).count(),
            args.iter()
                .filter(|a| same(a) && a.place == Place::Path)
                .count(),
        );
        if all >= 3 && (args[i].place != Place::Path || paths >= 3) {
            args[i].setter = true;
        }
    }

    let names: Vec<&str> = args
        .iter()
        .chain(&options)
        .map(|f| f.rust.as_str())
        .collect();
    let unique: BTreeSet<&&str> = names.iter().collect();
    if unique.len() != names.len() {
        report(
            r,
            format!("two parameters get the same Rust name: {names:?}"),
        );
    }
    for taken in ["client", "call_options", "timeout"] {
        if names.contains(&taken) {
            report(
                r,
                format!(
                    "a parameter named `{taken}` clashes with the request's own field or setter"
                ),
            );
        }
    }
    (r.problems.len() == before).then_some(Op {
        id,
        path: path.to_owned(),
        http: method.to_owned(),
        json,
        namespace,
        method: method_name,
        request,
        doc,
        args,
        options,
        body,
        output,
        idempotency,
        anonymous: op
            .get("security")
            .and_then(Value::as_array)
            .is_some_and(Vec::is_empty),
    })
}

fn read_list(
    r: &mut Reader<'_>,
    id: &str,
    list: &Value,
    envelope: Option<&str>,
    options: &[Field],
) -> Option<List> {
    let mut fail = |msg: String| {
        r.problems
            .push(format!("operation {id}: x-platos-list: {msg}"));
        None
    };
    let Some(envelope) = envelope else {
        return fail("needs a 2xx schema (the envelope)".into());
    };
    let Some(schema) = r.doc.pointer(&format!("/components/schemas/{envelope}")) else {
        return fail(format!("schema {envelope} not found"));
    };
    let keys: Vec<String> = list
        .get("keys")
        .and_then(Value::as_array)
        .map(|k| {
            k.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    if keys.is_empty() {
        return fail("`keys` names no envelope key".into());
    }
    let mut item = None;
    for key in &keys {
        let ty = schema
            .pointer(&format!("/properties/{key}"))
            .filter(|p| str_of(p, "type") == Some("array"))
            .and_then(|p| p.get("items"))
            .and_then(Reader::ref_name);
        match (ty, &item) {
            (None, _) => return fail(format!("{envelope}.{key} is not an array of a $ref")),
            (Some(t), Some(first)) if &t != first => {
                return fail(format!("{envelope}.{key} holds {t}, not {first}"));
            }
            (Some(t), _) => item = Some(t),
        }
    }
    let paged = list.get("paged") == Some(&Value::Bool(true));
    let clear: Vec<String> = list
        .get("clear")
        .and_then(Value::as_array)
        .map(|k| k.iter().filter_map(Value::as_str).map(to_snake).collect())
        .unwrap_or_default();
    if paged {
        for needed in ["offset", "limit"]
            .iter()
            .map(|s| s.to_string())
            .chain(clear.clone())
        {
            if !options
                .iter()
                .any(|f| f.rust == needed && f.place == Place::Query)
            {
                return fail(format!(
                    "a paged list needs the optional query parameter {needed}"
                ));
            }
        }
    }
    let cursor = str_of(list, "cursor").map(to_snake);
    if let Some(c) = &cursor {
        if !options
            .iter()
            .any(|f| &f.rust == c && f.place == Place::Query && f.ty == Ty::Str)
        {
            return fail(format!(
                "cursor paging needs the optional string query parameter {c}"
            ));
        }
        let page_required = schema
            .get("required")
            .and_then(Value::as_array)
            .is_some_and(|req| req.iter().any(|v| v.as_str() == Some("page")));
        if !page_required {
            return fail(format!(
                "cursor paging needs a required `page` in {envelope}"
            ));
        }
    }
    let whole = (list.get("whole") == Some(&Value::Bool(true))).then(|| envelope.to_owned());
    if whole.is_some() && !paged && cursor.is_none() {
        return fail("`whole` is for paged lists (a plain answer needs no x-platos-list)".into());
    }
    Some(List {
        envelope: envelope.to_owned(),
        whole,
        cursor,
        item: item?,
        keys: keys.iter().map(|k| to_snake(k)).collect(),
        has_more: schema.pointer("/properties/hasMore").is_some(),
        paged,
        clear,
    })
}

fn read_unwrap(
    r: &mut Reader<'_>,
    answer: &str,
    field: &str,
) -> std::result::Result<Field, String> {
    let doc = r.doc;
    let schema = doc
        .pointer(&format!("/components/schemas/{answer}"))
        .ok_or_else(|| format!("schema {answer} not found"))?;
    let required = schema
        .get("required")
        .and_then(Value::as_array)
        .is_some_and(|req| req.iter().any(|v| v.as_str() == Some(field)));
    let prop = schema
        .pointer(&format!("/properties/{field}"))
        .filter(|_| required)
        .ok_or_else(|| format!("x-platos-unwrap: {answer}.{field} must be a required property"))?;
    let ty = r
        .ty_of(prop, prop, &format!("x-platos-unwrap: {answer}.{field}"))
        .ok_or_else(|| format!("x-platos-unwrap: {answer}.{field} has no facade type"))?;
    Ok(Field {
        wire: field.to_owned(),
        rust: to_snake(field),
        ty,
        place: Place::Body,
        doc: String::new(),
        always: false,
        default: None,
        setter: false,
    })
}

// ------------------------------------------------------------------ emit

fn ident(s: &str) -> proc_macro2::Ident {
    proc_macro2::Ident::new(s, Span::call_site())
}

fn ty_tokens(target: &Target, t: &str) -> TokenStream {
    let types = path_tokens(target.types);
    let i = ident(t);
    quote!(#types::#i)
}

fn path_tokens(p: &str) -> TokenStream {
    p.parse()
        .unwrap_or_else(|_| quote!(compile_error!("bad path")))
}

impl Field {
    /// The type stored in the request.
    fn stored(&self, target: &Target) -> TokenStream {
        match &self.ty {
            Ty::Str => quote!(String),
            Ty::U64 => quote!(u64),
            Ty::I64 => quote!(i64),
            Ty::F64 => quote!(f64),
            Ty::Bool => quote!(bool),
            Ty::Object => quote!(crate::JsonObject),
            Ty::Json => quote!(serde_json::Value),
            Ty::Strings => quote!(Vec<String>),
            Ty::Values => quote!(Vec<serde_json::Value>),
            Ty::Named(n) => ty_tokens(target, n),
            Ty::Hand(path) => path_tokens(path),
            Ty::Enum(n, _) => {
                let i = ident(n);
                quote!(#i)
            }
        }
    }

    /// The type a method or setter takes. Integers take the exact type so
    /// that a literal works: `impl Into<u64>` would leave `.limit(5)` an
    /// ambiguous `i32`.
    fn taken(&self, target: &Target) -> TokenStream {
        let stored = self.stored(target);
        match &self.ty {
            Ty::Str | Ty::Enum(..) => quote!(impl Into<#stored>),
            Ty::Strings => quote!(impl IntoIterator<Item = impl Into<String>>),
            _ => stored,
        }
    }

    /// The stored value from the taken one.
    fn convert(&self, v: TokenStream) -> TokenStream {
        match &self.ty {
            Ty::Str | Ty::Enum(..) => quote!(#v.into()),
            Ty::Strings => quote!(#v.into_iter().map(Into::into).collect()),
            _ => v,
        }
    }

    /// A query value from the stored one: `v` is a place of the stored
    /// type, or a reference to one when `by_ref`.
    fn query_value(&self, v: TokenStream, by_ref: bool) -> TokenStream {
        let wire = &self.wire;
        match (&self.ty, by_ref) {
            // The wire's integers are int64.
            (Ty::U64, true) => quote!(&crate::request::int64(#wire, *#v)?),
            (Ty::U64, false) => quote!(&crate::request::int64(#wire, #v)?),
            (Ty::Str | Ty::I64 | Ty::F64 | Ty::Bool, true) => v,
            (Ty::Str | Ty::I64 | Ty::F64 | Ty::Bool, false) => quote!(&#v),
            (Ty::Enum(_, EnumKind::Str), _) => quote!(#v.as_str()),
            (Ty::Enum(_, EnumKind::Int), _) => quote!(&#v.value()),
            _ => quote!(&#v.to_string()),
        }
    }

    /// What the body's wire struct holds, from the stored value: `v` is a
    /// place of the stored type, or a reference to one when `by_ref`.
    fn wire_ref(&self, v: TokenStream, by_ref: bool) -> TokenStream {
        match (&self.ty, by_ref) {
            (Ty::Enum(_, EnumKind::Str), _) => quote!(#v.as_str()),
            (Ty::Enum(_, EnumKind::Int), _) => quote!(#v.value()),
            (_, true) => v,
            (_, false) => quote!(&#v),
        }
    }

    fn doc(&self) -> String {
        if self.doc.is_empty() {
            format!("`{}`.", self.wire)
        } else {
            self.doc.clone()
        }
    }
}

fn ns_type(path: &[String]) -> proc_macro2::Ident {
    ident(&path.iter().map(|p| to_camel(p)).collect::<String>())
}

fn first_sentence(s: &str) -> String {
    match s.find(". ") {
        Some(i) => s[..=i].to_owned(),
        None => s.to_owned(),
    }
}

impl Model {
    fn emit(&self, target: &Target) -> TokenStream {
        let mut out = TokenStream::new();
        // A namespace is emitted when it or one of its children has an
        // operation (a stream-only tag keeps its hand-written accessor).
        let used = |path: &Vec<String>| {
            self.ops
                .iter()
                .any(|op| op.namespace.starts_with(path.as_slice()))
        };
        for (path, doc) in self.namespaces.iter().filter(|(p, _)| used(p)) {
            out.extend(emit_namespace(target, path, doc));
        }
        // The open enums are values callers pass: the crate re-exports them
        // beside its client, apart from the requests.
        let enums: TokenStream = self.enums.iter().map(emit_enum).collect();
        if !self.enums.is_empty() {
            out.extend(quote! {
                /// Open enums the requests take (generated from `x-platos-enums`).
                pub mod enums {
                    #enums
                }
                pub use enums::*;
            });
        }
        for op in &self.ops {
            out.extend(emit_op(target, op));
        }
        out
    }
}

fn emit_namespace(target: &Target, path: &[String], doc: &str) -> TokenStream {
    let client = path_tokens(target.client);
    let ty = ns_type(path);
    let accessor = ident(&to_snake(&path[path.len() - 1]));
    let accessor_doc = if doc.is_empty() {
        format!("The `{}` namespace.", path.join("."))
    } else {
        first_sentence(doc)
    };
    let parent_impl = if path.len() == 1 {
        quote! {
            impl #client {
                #[doc = #accessor_doc]
                pub fn #accessor(&self) -> #ty<'_> {
                    #ty { client: self }
                }
            }
        }
    } else {
        let parent = ns_type(&path[..path.len() - 1]);
        quote! {
            impl<'c> #parent<'c> {
                #[doc = #accessor_doc]
                pub fn #accessor(&self) -> #ty<'c> {
                    #ty { client: self.client }
                }
            }
        }
    };
    let ns_doc = format!("`{}`: {accessor_doc}", path.join("."));
    quote! {
        #[doc = #ns_doc]
        #[derive(Debug, Clone, Copy)]
        pub struct #ty<'c> {
            pub(crate) client: &'c #client,
        }
        #parent_impl
    }
}

fn emit_enum(e: &OpenEnum) -> TokenStream {
    let name = ident(&e.name);
    let doc = format!(
        "{}\n\nOpen: a value this SDK does not know is sent as given with `Other`.",
        e.doc
    );
    let variants: Vec<_> = e.variants.iter().map(|(v, _)| ident(v)).collect();
    let docs: Vec<String> = e.variants.iter().map(|(_, w)| format!("`{w}`")).collect();
    match e.kind {
        EnumKind::Str => {
            let wires: Vec<&str> = e
                .variants
                .iter()
                .map(|(_, w)| w.as_str().unwrap_or_default())
                .collect();
            quote! {
                #[doc = #doc]
                #[derive(Debug, Clone, PartialEq, Eq, Hash)]
                #[non_exhaustive]
                pub enum #name {
                    #( #[doc = #docs] #variants, )*
                    /// A value this SDK does not know; sent as given.
                    Other(String),
                }
                impl #name {
                    /// The value as it goes on the wire.
                    pub fn as_str(&self) -> &str {
                        match self {
                            #( Self::#variants => #wires, )*
                            Self::Other(v) => v,
                        }
                    }
                }
                impl From<&str> for #name {
                    fn from(v: &str) -> Self {
                        match v {
                            #( #wires => Self::#variants, )*
                            other => Self::Other(other.to_owned()),
                        }
                    }
                }
                impl From<String> for #name {
                    fn from(v: String) -> Self {
                        match v.as_str() {
                            #( #wires => Self::#variants, )*
                            _ => Self::Other(v),
                        }
                    }
                }
                impl std::fmt::Display for #name {
                    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str(self.as_str())
                    }
                }
            }
        }
        EnumKind::Int => {
            let wires: Vec<i64> = e
                .variants
                .iter()
                .map(|(_, w)| w.as_i64().unwrap_or_default())
                .collect();
            quote! {
                #[doc = #doc]
                #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
                #[non_exhaustive]
                pub enum #name {
                    #( #[doc = #docs] #variants, )*
                    /// A value this SDK does not know; sent as given.
                    Other(i64),
                }
                impl #name {
                    /// The value as it goes on the wire.
                    pub fn value(&self) -> i64 {
                        match self {
                            #( Self::#variants => #wires, )*
                            Self::Other(v) => *v,
                        }
                    }
                }
                impl From<i64> for #name {
                    fn from(v: i64) -> Self {
                        match v {
                            #( #wires => Self::#variants, )*
                            other => Self::Other(other),
                        }
                    }
                }
            }
        }
    }
}

fn emit_op(target: &Target, op: &Op) -> TokenStream {
    let transport = path_tokens(target.transport);
    let client = path_tokens(target.client);
    let rule_enum = path_tokens(target.idempotency.enum_path);
    let rule = ident(op.idempotency);
    let ns = ns_type(&op.namespace);
    let method = ident(&op.method);
    let request = ident(&op.request);
    let method_doc = if op.doc.is_empty() {
        op.id.clone()
    } else {
        op.doc.clone()
    };

    // The caller's idempotency key is a call option, not a parameter.
    let options: Vec<&Field> = op
        .options
        .iter()
        .filter(|f| f.place != Place::Key)
        .collect();
    let takes_key = op.options.iter().any(|f| f.place == Place::Key);

    // Arguments the method takes; the rest of the required ones (three or
    // more of one type) are setters, checked when the call is sent.
    let positional: Vec<&Field> = op.args.iter().filter(|f| !f.setter).collect();
    let needed: Vec<&Field> = op.args.iter().filter(|f| f.setter).collect();
    let arg_names: Vec<_> = positional.iter().map(|f| ident(&f.rust)).collect();
    let arg_taken: Vec<_> = positional.iter().map(|f| f.taken(target)).collect();
    let arg_stored: Vec<_> = positional.iter().map(|f| f.stored(target)).collect();
    let needed_names: Vec<_> = needed.iter().map(|f| ident(&f.rust)).collect();
    let needed_stored: Vec<_> = needed.iter().map(|f| f.stored(target)).collect();
    let setters: Vec<&Field> = needed.iter().chain(options.iter()).copied().collect();
    let opt_names: Vec<_> = options.iter().map(|f| ident(&f.rust)).collect();
    let set_names: Vec<_> = setters.iter().map(|f| ident(&f.rust)).collect();
    let opt_taken: Vec<_> = setters.iter().map(|f| f.taken(target)).collect();
    let opt_stored: Vec<_> = options.iter().map(|f| f.stored(target)).collect();
    let opt_docs: Vec<_> = setters
        .iter()
        .map(|f| {
            if f.setter {
                format!("{} Required.", f.doc())
            } else {
                f.doc()
            }
        })
        .collect();
    let arg_inits: Vec<_> = positional
        .iter()
        .map(|f| {
            let name = ident(&f.rust);
            let value = f.convert(quote!(#name));
            if name == value.to_string() {
                quote!(#name)
            } else {
                quote!(#name: #value)
            }
        })
        .collect();
    // Every argument as a reference, a setter's checked.
    let locals: Vec<_> = op
        .args
        .iter()
        .map(|f| {
            let (name, rust) = (ident(&f.rust), &f.rust);
            if f.setter {
                quote!(let #name = crate::request::needed(self.#name.as_ref(), #rust)?;)
            } else {
                quote!(let #name = &self.#name;)
            }
        })
        .collect();
    let opt_values: Vec<_> = setters.iter().map(|f| f.convert(quote!(value))).collect();
    let key_setter = if takes_key {
        quote! {
            /// The idempotency key of this call, instead of one minted for it: the same
            /// key after a restart recovers the first answer (the server replays it).
            pub fn idempotency_key(mut self, value: impl Into<String>) -> Self {
                self.call_options.idempotency_key = Some(value.into());
                self
            }
        }
    } else {
        quote!()
    };

    // The URL: the template's literal parts, each path parameter as one
    // encoded segment, then the query.
    let mut url = TokenStream::new();
    let mut rest = op.path.as_str();
    while let Some(open) = rest.find('{') {
        let literal = &rest[..open];
        if !literal.is_empty() {
            url.extend(quote!(url.literal(#literal);));
        }
        let close = rest[open..].find('}').map_or(rest.len(), |c| open + c);
        let wire = &rest[open + 1..close];
        if let Some(f) = op
            .args
            .iter()
            .find(|f| f.place == Place::Path && f.wire == wire)
        {
            let name = ident(&f.rust);
            url.extend(match f.ty {
                Ty::Str => quote!(url.segment(#name)?;),
                _ => quote!(url.segment(&#name.to_string())?;),
            });
        }
        rest = rest.get(close + 1..).unwrap_or("");
    }
    if !rest.is_empty() {
        url.extend(quote!(url.literal(#rest);));
    }
    for f in op.args.iter().filter(|f| f.place == Place::Query) {
        let (name, wire) = (ident(&f.rust), &f.wire);
        url.extend(match f.ty {
            Ty::Strings => quote! { for value in #name { url.query(#wire, value); } },
            _ => {
                let value = f.query_value(quote!(#name), true);
                quote!(url.query(#wire, #value);)
            }
        });
    }
    for f in options.iter().filter(|f| f.place == Place::Query) {
        let (name, wire) = (ident(&f.rust), &f.wire);
        url.extend(match f.ty {
            Ty::Strings => quote! {
                for value in self.#name.iter().flatten() { url.query(#wire, value); }
            },
            _ => {
                let value = f.query_value(quote!(value), true);
                quote! { if let Some(value) = &self.#name { url.query(#wire, #value); } }
            }
        });
    }

    // The body: the whole typed value, or the set fields under their wire
    // names (an unset optional one left out).
    let body = match op.body {
        Body::None => quote!(let body = None;),
        Body::Whole => quote!(let body = Some(crate::request::json(body)?);),
        Body::Hand => {
            let arg = op.args.iter().find(|f| f.place == Place::Body);
            let name = ident(arg.map_or("body", |f| f.rust.as_str()));
            quote!(let body = Some(crate::request::json(&crate::request::RestBody::rest_body(#name))?);)
        }
        Body::Fields => {
            let mut prepare = TokenStream::new();
            let mut fields = TokenStream::new();
            let mut values = TokenStream::new();
            for f in op
                .args
                .iter()
                .chain(options.iter().copied())
                .filter(|f| f.place == Place::Body)
            {
                let (name, wire) = (ident(&f.rust), &f.wire);
                let stored = f.stored(target);
                let wire_ty = match &f.ty {
                    Ty::Enum(_, EnumKind::Str) => quote!(&'a str),
                    Ty::Enum(_, EnumKind::Int) => quote!(i64),
                    _ => quote!(&'a #stored),
                };
                let required = op.args.iter().any(|a| a.rust == f.rust);
                let (ty, value, skip) = if required {
                    (wire_ty, f.wire_ref(quote!(#name), true), false)
                } else if let Some(json) = &f.default {
                    let resolved = ident(&format!("{}_default", f.rust));
                    prepare.extend(quote! {
                        let #resolved;
                        let #name: &#stored = match &self.#name {
                            Some(value) => value,
                            None => {
                                #resolved = crate::transport::decode::<#stored>(None, #json.as_bytes())?;
                                &#resolved
                            }
                        };
                    });
                    (wire_ty, f.wire_ref(quote!(#name), true), false)
                } else {
                    let value = match &f.ty {
                        Ty::Enum(..) => {
                            let map = f.wire_ref(quote!(value), true);
                            quote!(self.#name.as_ref().map(|value| #map))
                        }
                        _ => quote!(self.#name.as_ref()),
                    };
                    (quote!(Option<#wire_ty>), value, !f.always)
                };
                fields.extend(if skip {
                    quote! {
                        #[serde(rename = #wire, skip_serializing_if = "Option::is_none")]
                        #name: #ty,
                    }
                } else {
                    quote! {
                        #[serde(rename = #wire)]
                        #name: #ty,
                    }
                });
                values.extend(if name == value.to_string() {
                    quote!(#name,)
                } else {
                    quote!(#name: #value,)
                });
            }
            quote! {
                #[derive(serde::Serialize)]
                struct Wire<'a> {
                    #fields
                    #[serde(skip)]
                    _borrows: std::marker::PhantomData<&'a ()>,
                }
                #prepare
                let body = Some(crate::request::json(&Wire {
                    #values
                    _borrows: std::marker::PhantomData,
                })?);
            }
        }
    };
    let (id, path, json) = (&op.id, &op.path, op.json);
    let credentials = ident(if op.anonymous { "Omitted" } else { "Sent" });
    let http_method = ident(&op.http.to_ascii_uppercase());
    let prepare = quote! {
        fn prepare(&self) -> crate::Result<crate::request::Prepared<#rule_enum>> {
            static OPERATION: crate::request::Operation<#rule_enum> = crate::request::Operation {
                id: #id,
                method: http::Method::#http_method,
                path: #path,
                rule: #rule_enum::#rule,
                json: #json,
                streams: false,
                credentials: crate::request::Credentials::#credentials,
            };
            #( #locals )*
            let mut url = crate::request::Url::new(self.client.base_url());
            #url
            #body
            Ok(crate::request::Prepared { operation: &OPERATION, url: url.into_string(), body })
        }
    };

    // What the answer becomes: the call (sent and read within its deadline,
    // one future shared by every operation), then a decode that awaits
    // nothing. An answer whose body says nothing is not read.
    let read_body = !matches!(op.output, Output::Unit | Output::Discard);
    let within = |finish: TokenStream| {
        quote! {
            match self.client.call(self.prepare(), &self.call_options, #read_body).await {
                Ok(fetched) => { #finish }
                Err(e) => Err(e),
            }
        }
    };
    let (out_ty, send_body, extra) = match &op.output {
        Output::Unit | Output::Discard => (
            quote!(()),
            within(quote!(#transport::finish_unit(fetched))),
            quote!(),
        ),
        Output::Type(t) => {
            let t = ty_tokens(target, t);
            (
                t.clone(),
                within(quote!(#transport::finish::<#t>(fetched))),
                quote!(),
            )
        }
        Output::Optional(t) => {
            let t = ty_tokens(target, t);
            let call = within(quote!(#transport::finish::<#t>(fetched)));
            (
                quote!(Option<#t>),
                quote!(crate::request::optional({ #call })),
                quote!(),
            )
        }
        Output::Unwrap { answer, field, ty } => {
            let a = ty_tokens(target, answer);
            let f = ident(field);
            let t = ty.stored(target);
            (
                t,
                within(quote!(Ok(#transport::finish::<#a>(fetched)?.#f))),
                quote!(),
            )
        }
        Output::Convert { answer, path } => {
            let a = ty_tokens(target, answer);
            let p = path_tokens(path);
            (
                p.clone(),
                within(quote!(#p::try_from(#transport::finish::<#a>(fetched)?))),
                quote!(),
            )
        }
        Output::List(list) => {
            let item = ty_tokens(target, &list.item);
            let envelope = ty_tokens(target, &list.envelope);
            let keys: Vec<_> = list.keys.iter().map(|k| ident(k)).collect();
            let has_more = if list.has_more {
                quote!(envelope.has_more)
            } else {
                quote!(None)
            };
            let stream = if let Some(cursor) = &list.cursor {
                let cursor = ident(cursor);
                quote! {
                    /// Every item from this page on, following the answers'
                    /// `page.nextCursor`, one request per page as the stream is polled.
                    pub fn into_stream(
                        self,
                    ) -> impl futures::Stream<Item = crate::Result<#item>> + Send + 'static {
                        let start = self.#cursor.clone();
                        crate::paging::cursor_pages(start, move |cursor| {
                            let mut next = self.clone();
                            next.#cursor = cursor;
                            next.fetch()
                        })
                    }
                }
            } else if list.paged {
                let clear: Vec<_> = list.clear.iter().map(|c| ident(c)).collect();
                quote! {
                    /// Every item from `offset` on (default 0), fetched `limit` at a
                    /// time (default 50), one request per page as the stream is polled.
                    pub fn into_stream(
                        self,
                    ) -> impl futures::Stream<Item = crate::Result<#item>> + Send + 'static {
                        let start = self.offset.unwrap_or(0);
                        let size = self.limit.unwrap_or(crate::paging::DEFAULT_PAGE_SIZE);
                        crate::paging::offset_pages(start, size, move |offset, limit| {
                            let mut next = self.clone();
                            next.offset = Some(offset);
                            next.limit = Some(limit);
                            #( next.#clear = None; )*
                            next.fetch()
                        })
                    }
                }
            } else {
                quote!()
            };
            let (out, body) = match &list.whole {
                Some(_) => {
                    let finish = ident(target.whole_finish);
                    (
                        envelope.clone(),
                        within(quote!(#transport::#finish::<#envelope>(fetched))),
                    )
                }
                None => (quote!(Vec<#item>), quote!(Ok(self.fetch().await?.items))),
            };
            let page = if list.cursor.is_some() {
                within(quote! {
                    let envelope = #transport::finish_envelope::<#envelope>(fetched)?;
                    let next = match envelope.page.has_more {
                        Some(false) => None,
                        _ => envelope.page.next_cursor.clone(),
                    };
                    Ok(crate::paging::CursorPage {
                        items: crate::request::first_non_empty([#(envelope.#keys),*]),
                        next,
                    })
                })
            } else {
                within(quote! {
                    let envelope = #transport::finish_envelope::<#envelope>(fetched)?;
                    Ok(crate::paging::Page {
                        items: crate::request::first_non_empty([#(envelope.#keys),*]),
                        has_more: #has_more,
                    })
                })
            };
            let page_ty = if list.cursor.is_some() {
                quote!(crate::paging::CursorPage<#item>)
            } else {
                quote!(crate::paging::Page<#item>)
            };
            (
                out,
                body,
                quote! {
                    async fn fetch(self) -> crate::Result<#page_ty> {
                        #page
                    }
                    #stream
                },
            )
        }
    };
    let plain_list = matches!(&op.output, Output::List(l) if l.whole.is_none());
    let out_ty = match target.reply {
        Some(reply) if !plain_list => {
            let reply = path_tokens(reply);
            quote!(#reply<#out_ty>)
        }
        _ => out_ty,
    };
    let send_doc = if plain_list {
        "Sends the call and returns the items of the answer."
    } else {
        "Sends the call."
    };
    let request_doc = format!("The request of [`{ns}::{}`].", op.method);

    quote! {
        impl #ns<'_> {
            #[doc = #method_doc]
            pub fn #method(&self #(, #arg_names: #arg_taken)*) -> #request {
                #request {
                    client: self.client.clone(),
                    #( #arg_inits, )*
                    #( #set_names: None, )*
                    call_options: crate::request::CallOptions::default(),
                }
            }
        }

        #[doc = #request_doc]
        #[derive(Debug, Clone)]
        #[must_use = "a request does nothing until it is sent or awaited"]
        pub struct #request {
            client: #client,
            #( #arg_names: #arg_stored, )*
            #( #needed_names: Option<#needed_stored>, )*
            #( #opt_names: Option<#opt_stored>, )*
            call_options: crate::request::CallOptions,
        }

        impl #request {
            #(
                #[doc = #opt_docs]
                pub fn #set_names(mut self, value: #opt_taken) -> Self {
                    self.#set_names = Some(#opt_values);
                    self
                }
            )*
            #key_setter
            /// A deadline for the whole call: every try, the waits between
            /// them and reading the answer. Past it the call fails with a
            /// timeout error (`Error::Timeout`).
            pub fn timeout(mut self, timeout: std::time::Duration) -> Self {
                self.call_options.deadline = Some(timeout);
                self
            }
            #[doc = #send_doc]
            pub async fn send(self) -> crate::Result<#out_ty> {
                #send_body
            }
            #prepare
            #extra
        }

        impl std::future::IntoFuture for #request {
            type Output = crate::Result<#out_ty>;
            type IntoFuture = futures::future::BoxFuture<'static, crate::Result<#out_ty>>;
            fn into_future(self) -> Self::IntoFuture {
                Box::pin(self.send())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(to_snake("sinceDays"), "since_days");
        assert_eq!(to_camel("bgo_tasks_list"), "BgoTasksList");
        assert_eq!(to_camel("timed_out"), "TimedOut");
        assert_eq!(to_camel("PENDING"), "Pending");
    }
}
