//! The facts spec-diff compares, read the same way from every OpenAPI 3.x
//! document (ours, the runtime's operation inventory, the test server's route
//! listing) and kept in our own form in the snapshot (`spec/upstream/`).
//!
//! An operation's facts: method, path template, who may call it (the
//! inventory's `x-platos-auth-class`), whether it is deprecated, its required
//! query parameters (when the document declares them) and the fields of its
//! JSON request and 2xx response (when it has schemas).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A problem with an input document: one line naming it (spec-diff exits 2).
#[derive(Debug)]
pub struct BadInput(pub String);

impl fmt::Display for BadInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadInput {}

/// Who may call an operation, in the four classes that matter to SDK users.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Class {
    /// An end user's scoped session token (what the SDK's browser and app users hold).
    EndUser,
    /// No platform credential, or the route's own protocol credential (OAuth,
    /// webhooks, guest and entity tokens).
    Public,
    /// An operator credential (api key, operator token, platform MCP token).
    Operator,
    /// Service-to-service callbacks inside a deployment.
    Internal,
}

impl Class {
    /// The class of an inventory's `x-platos-auth-class`; a class this table does
    /// not know falls back on the route's `x-platos-classification`.
    pub fn of(auth: &str, classification: Option<&str>) -> Class {
        match auth {
            "SCOPED_USER" => Class::EndUser,
            "PLATFORM_MCP_BEARER" => Class::Operator,
            a if a.starts_with("OPERATOR") => Class::Operator,
            a if a.starts_with("INTERNAL") => Class::Internal,
            _ if classification == Some("INTERNAL") => Class::Internal,
            _ => Class::Public,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Class::EndUser => "end user",
            Class::Public => "public",
            Class::Operator => "operator",
            Class::Internal => "internal",
        }
    }
}

/// One field of a JSON body: `data.items[].name`, its type (`string`,
/// `number` (TypeScript has no integer, so `integer` reads as `number`),
/// `boolean`, `object`, `any`, `T[]` for arrays), whether it is required and
/// whether it may be null. Written `path?: type|null` in the snapshot.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Field {
    pub path: String,
    pub ty: String,
    pub required: bool,
    pub nullable: bool,
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let opt = if self.required { "" } else { "?" };
        let null = if self.nullable { "|null" } else { "" };
        write!(f, "{}{opt}: {}{null}", self.path, self.ty)
    }
}

impl std::str::FromStr for Field {
    type Err = BadInput;

    fn from_str(s: &str) -> Result<Field, BadInput> {
        let (path, ty) = s
            .split_once(": ")
            .ok_or_else(|| BadInput(format!("field {s:?} is not `path[?]: type[|null]`")))?;
        let (path, required) = match path.strip_suffix('?') {
            Some(p) => (p, false),
            None => (path, true),
        };
        let (ty, nullable) = match ty.strip_suffix("|null") {
            Some(t) => (t, true),
            None => (ty, false),
        };
        if path.is_empty() || ty.is_empty() {
            return Err(BadInput(format!("field {s:?} has an empty path or type")));
        }
        Ok(Field {
            path: path.to_owned(),
            ty: ty.to_owned(),
            required,
            nullable,
        })
    }
}

/// One operation (a method on a path template).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    /// Upper case: `GET`.
    pub method: String,
    /// As the document writes it: `/api/v1/agent/threads/{threadId}`.
    pub path: String,
    /// The document's `x-platos-auth-class`, when it says.
    pub auth: Option<String>,
    /// The class derived from `auth`.
    pub class: Option<Class>,
    pub deprecated: bool,
    /// Required query parameters, sorted; `None` when the document does not
    /// declare the operation's query parameters (`x-platos-schema-source: undeclared`).
    pub query: Option<BTreeSet<String>>,
    /// Fields of the JSON request body; `None` when it declares none.
    pub request: Option<Vec<Field>>,
    /// Fields of the first 2xx JSON answer; `None` when it declares none.
    pub response: Option<Vec<Field>>,
}

impl Operation {
    /// `GET /api/v1/agent/threads/{threadId}`.
    pub fn name(&self) -> String {
        format!("{} {}", self.method, self.path)
    }

    /// The path with parameter names dropped (`{threadId}`, `{id}` and `:id` all
    /// become `{}`), so templates compare by shape.
    pub fn shape(&self) -> String {
        path_shape(&self.path)
    }

    /// The path parameter names, in order.
    pub fn path_params(&self) -> Vec<String> {
        self.path
            .split('/')
            .filter_map(param_name)
            .map(str::to_owned)
            .collect()
    }
}

fn param_name(segment: &str) -> Option<&str> {
    segment
        .strip_prefix('{')
        .and_then(|s| s.strip_suffix('}'))
        .or_else(|| segment.strip_prefix(':'))
}

/// A path template with its parameter names dropped.
pub fn path_shape(path: &str) -> String {
    path.split('/')
        .map(|seg| if param_name(seg).is_some() { "{}" } else { seg })
        .collect::<Vec<_>>()
        .join("/")
}

/// `METHOD path` with the path's parameter names dropped.
pub fn operation_shape(operation: &str) -> String {
    match operation.split_once(' ') {
        Some((m, p)) => format!("{} {}", m.to_ascii_uppercase(), path_shape(p.trim())),
        None => operation.to_owned(),
    }
}

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "patch", "head", "options", "trace",
];

/// Everything spec-diff reads from one OpenAPI 3.x document.
#[derive(Debug, Clone)]
pub struct Document {
    pub title: String,
    pub version: String,
    /// `x-platos-inventory` (the test server says `test-server`), else `upstream`.
    pub inventory: String,
    pub operations: Vec<Operation>,
}

/// Reads the facts of an OpenAPI 3.x document already parsed into JSON.
pub fn read_openapi(doc: &Value) -> Result<Document, BadInput> {
    let version = doc.get("openapi").and_then(Value::as_str);
    match version {
        Some(v) if v.starts_with("3.") => {}
        Some(v) => return Err(BadInput(format!("not OpenAPI 3.x (`openapi: {v}`)"))),
        None => {
            return Err(BadInput(
                "not OpenAPI 3.x (no `openapi` version field)".into(),
            ));
        }
    }
    let paths = doc
        .get("paths")
        .and_then(Value::as_object)
        .ok_or_else(|| BadInput("OpenAPI document without a `paths` object".into()))?;
    let info = doc.get("info");
    let text = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or("").to_owned();
    let mut operations = Vec::new();
    for (path, item) in paths {
        let item = resolve(doc, item);
        let shared = item.get("parameters");
        for method in METHODS {
            let Some(op) = item.get(method) else { continue };
            operations.push(read_operation(doc, path, method, op, shared)?);
        }
    }
    Ok(Document {
        title: text(info.and_then(|i| i.get("title"))),
        version: text(info.and_then(|i| i.get("version"))),
        inventory: doc
            .get("x-platos-inventory")
            .and_then(Value::as_str)
            .unwrap_or("upstream")
            .to_owned(),
        operations,
    })
}

fn read_operation(
    doc: &Value,
    path: &str,
    method: &str,
    op: &Value,
    shared: Option<&Value>,
) -> Result<Operation, BadInput> {
    let name = format!("{} {path}", method.to_ascii_uppercase());
    if !op.is_object() {
        return Err(BadInput(format!("{name}: the operation is not an object")));
    }
    let auth = op
        .get("x-platos-auth-class")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let class = auth
        .as_deref()
        .map(|a| Class::of(a, op.get("x-platos-classification").and_then(Value::as_str)));
    let undeclared = op.get("x-platos-schema-source").and_then(Value::as_str) == Some("undeclared");
    // Operation parameters override path-item ones with the same name and place.
    let mut params: BTreeMap<(String, String), &Value> = BTreeMap::new();
    for list in [shared, op.get("parameters")].into_iter().flatten() {
        let Some(list) = list.as_array() else {
            return Err(BadInput(format!("{name}: `parameters` is not a list")));
        };
        for p in list {
            let p = resolve(doc, p);
            let field = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
            params.insert((field("in"), field("name")), p);
        }
    }
    let query = (!undeclared).then(|| {
        params
            .iter()
            .filter(|((place, _), p)| {
                place == "query" && p.get("required").and_then(Value::as_bool) == Some(true)
            })
            .map(|((_, n), _)| n.clone())
            .collect()
    });
    let request = op
        .get("requestBody")
        .map(|b| resolve(doc, b))
        .and_then(json_schema)
        .map(|s| fields(doc, s));
    let response = op
        .get("responses")
        .and_then(Value::as_object)
        .and_then(|r| {
            r.iter()
                .filter(|(code, _)| code.starts_with('2'))
                .min_by(|a, b| a.0.cmp(b.0))
                .map(|(_, v)| resolve(doc, v))
        })
        .and_then(json_schema)
        .map(|s| fields(doc, s));
    Ok(Operation {
        method: method.to_ascii_uppercase(),
        path: path.to_owned(),
        auth,
        class,
        deprecated: op.get("deprecated").and_then(Value::as_bool) == Some(true),
        query,
        request,
        response,
    })
}

/// The `application/json` schema of a request body or response, if it has one.
fn json_schema(body: &Value) -> Option<&Value> {
    body.get("content")?.get("application/json")?.get("schema")
}

/// Follows a local `$ref` (`#/components/...`), up to a few hops; anything
/// unresolvable is returned as is (and reads as a schema of unknown type).
fn resolve<'a>(doc: &'a Value, mut v: &'a Value) -> &'a Value {
    for _ in 0..8 {
        let Some(target) = v.get("$ref").and_then(Value::as_str) else {
            return v;
        };
        match target.strip_prefix('#').and_then(|p| doc.pointer(p)) {
            Some(t) => v = t,
            None => return v,
        }
    }
    v
}

/// Schemas nest deeper than this only through a cycle; the walk stops there.
const MAX_DEPTH: usize = 12;
/// More fields than any real body has; a document that expands to more is cut there.
const MAX_FIELDS: usize = 10_000;

/// The fields of a body schema, sorted by path.
pub fn fields(doc: &Value, schema: &Value) -> Vec<Field> {
    let mut out = Vec::new();
    let shape = Shape::of(doc, schema, 0);
    let top = schema.get("$ref").and_then(Value::as_str).unwrap_or("");
    if shape.ty == "object" {
        shape.children(doc, "", &mut out, &mut vec![top]);
    } else if let Some(items) = shape.items {
        Shape::of(doc, items, 0).children(doc, "[].", &mut out, &mut vec![top]);
    }
    out.sort();
    out
}

/// A schema read down to what spec-diff compares.
struct Shape<'a> {
    ty: String,
    nullable: bool,
    properties: Vec<(&'a str, &'a Value)>,
    required: BTreeSet<&'a str>,
    items: Option<&'a Value>,
}

impl<'a> Shape<'a> {
    /// `depth` counts the `allOf`/`anyOf`/`oneOf` levels above: a schema made of
    /// itself stops there, as `any`.
    fn of(doc: &'a Value, schema: &'a Value, depth: usize) -> Shape<'a> {
        let schema = resolve(doc, schema);
        if depth >= MAX_DEPTH {
            return Shape {
                ty: "any".into(),
                nullable: false,
                properties: Vec::new(),
                required: BTreeSet::new(),
                items: None,
            };
        }
        let mut shape = Shape {
            ty: String::new(),
            nullable: schema.get("nullable").and_then(Value::as_bool) == Some(true),
            properties: Vec::new(),
            required: BTreeSet::new(),
            items: schema.get("items"),
        };
        shape.absorb(schema);
        // `allOf` merges its parts; `anyOf`/`oneOf` of one schema and `null` is that schema, nullable.
        if let Some(parts) = schema.get("allOf").and_then(Value::as_array) {
            for part in parts {
                let part = Shape::of(doc, part, depth + 1);
                shape.merge(part);
            }
        }
        for key in ["anyOf", "oneOf"] {
            let Some(parts) = schema.get(key).and_then(Value::as_array) else {
                continue;
            };
            let (nulls, others): (Vec<_>, Vec<_>) = parts
                .iter()
                .map(|p| resolve(doc, p))
                .partition(|p| p.get("type").and_then(Value::as_str) == Some("null"));
            match others.as_slice() {
                [one] => {
                    let inner = Shape::of(doc, one, depth + 1);
                    shape.nullable |= !nulls.is_empty() || inner.nullable;
                    shape.merge(inner);
                }
                _ if shape.ty.is_empty() => {
                    shape.ty = "union".into();
                    shape.nullable |= !nulls.is_empty();
                }
                _ => {}
            }
        }
        if shape.ty.is_empty() {
            shape.ty = if !shape.properties.is_empty() {
                "object".into()
            } else if shape.items.is_some() {
                "array".into()
            } else {
                "any".into()
            };
        }
        shape
    }

    /// Takes `type`, `properties` and `required` of one schema object.
    fn absorb(&mut self, schema: &'a Value) {
        match schema.get("type") {
            Some(Value::String(t)) if t == "null" => self.nullable = true,
            Some(Value::String(t)) => self.ty = normalise(t),
            Some(Value::Array(ts)) => {
                for t in ts.iter().filter_map(Value::as_str) {
                    if t == "null" {
                        self.nullable = true;
                    } else if self.ty.is_empty() {
                        self.ty = normalise(t);
                    }
                }
            }
            _ => {}
        }
        if let Some(props) = schema.get("properties").and_then(Value::as_object) {
            self.properties
                .extend(props.iter().map(|(k, v)| (k.as_str(), v)));
        }
        if let Some(req) = schema.get("required").and_then(Value::as_array) {
            self.required.extend(req.iter().filter_map(Value::as_str));
        }
    }

    fn merge(&mut self, other: Shape<'a>) {
        if self.ty.is_empty() {
            self.ty = other.ty;
        }
        self.nullable |= other.nullable;
        self.properties.extend(other.properties);
        self.required.extend(other.required);
        if self.items.is_none() {
            self.items = other.items;
        }
    }

    /// Records this object's properties under `prefix`, and theirs below them.
    /// A `$ref` already being expanded above is recorded but not entered again
    /// (a recursive type), and the walk stops at [`MAX_DEPTH`] levels and
    /// [`MAX_FIELDS`] fields, so no document can make it run away.
    fn children(
        &self,
        doc: &'a Value,
        prefix: &str,
        out: &mut Vec<Field>,
        refs: &mut Vec<&'a str>,
    ) {
        if refs.len() >= MAX_DEPTH {
            return;
        }
        let mut seen = BTreeSet::new();
        for (name, schema) in &self.properties {
            if out.len() >= MAX_FIELDS {
                return;
            }
            if !seen.insert(*name) {
                continue;
            }
            let path = format!("{prefix}{name}");
            let shape = Shape::of(doc, schema, 0);
            let nullable = shape.nullable;
            let (ty, below) = match (shape.ty.as_str(), shape.items) {
                ("array", Some(items)) => {
                    let item = Shape::of(doc, items, 0);
                    let ty = format!("{}[]", item.ty);
                    let below = (item.ty == "object").then(|| (item, items, format!("{path}[].")));
                    (ty, below)
                }
                ("object", _) => (shape.ty.clone(), Some((shape, *schema, format!("{path}.")))),
                _ => (shape.ty.clone(), None),
            };
            out.push(Field {
                path,
                ty,
                required: self.required.contains(name),
                nullable,
            });
            let Some((shape, schema, prefix)) = below else {
                continue;
            };
            let target = schema.get("$ref").and_then(Value::as_str).unwrap_or("");
            if !target.is_empty() && refs.contains(&target) {
                continue;
            }
            refs.push(target);
            shape.children(doc, &prefix, out, refs);
            refs.pop();
        }
    }
}

fn normalise(ty: &str) -> String {
    match ty {
        "integer" => "number".into(),
        t => t.to_owned(),
    }
}
