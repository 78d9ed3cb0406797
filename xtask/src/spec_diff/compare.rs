//! The comparison: our operations against a server's, difference by difference.
//!
//! Operations pair up by method and path shape (parameter names dropped); a
//! parameter *name* difference is reported on its own. Field rules follow what
//! can break a call: a request must match the server exactly, while a response
//! field we hold optional (or nullable) where the server promises it is our
//! policy (spec/README.md: response schemas survive newer servers), not a
//! difference.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::facts::{Class, Field, Operation};

/// What kind of difference; also the `kind` of a listed difference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// In our spec, not served.
    NotServed,
    /// Served, not in our spec.
    NotOurs,
    /// The same path with another method on each side.
    Method,
    /// The same path shape with other parameter names.
    PathParams,
    /// A query parameter required on one side only.
    Query,
    /// A request body field.
    Request,
    /// A 2xx response body field.
    Response,
}

impl Kind {
    pub const ALL: [Kind; 7] = [
        Kind::NotServed,
        Kind::NotOurs,
        Kind::Method,
        Kind::PathParams,
        Kind::Query,
        Kind::Request,
        Kind::Response,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::NotServed => "not-served",
            Kind::NotOurs => "not-ours",
            Kind::Method => "method",
            Kind::PathParams => "path-params",
            Kind::Query => "query",
            Kind::Request => "request",
            Kind::Response => "response",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Kind::NotServed => "In our spec, not served",
            Kind::NotOurs => "Served, not in our spec",
            Kind::Method => "Method differs",
            Kind::PathParams => "Path parameter names differ",
            Kind::Query => "Required query parameters differ",
            Kind::Request => "Request fields differ",
            Kind::Response => "Response fields differ",
        }
    }
}

/// One difference between our spec and a server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Difference {
    pub kind: Kind,
    /// `METHOD path`, as our spec writes it (the server's when we lack it).
    pub operation: String,
    /// The field path or parameter the difference is about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    pub ours: String,
    pub server: String,
    /// Who may call the server's operation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class: Option<Class>,
    /// The server's own auth class name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub deprecated: bool,
    /// The reason it is deliberate, when the differences file lists it.
    pub listed: Option<String>,
}

impl Difference {
    fn new(
        kind: Kind,
        operation: String,
        at: Option<String>,
        ours: String,
        server: String,
    ) -> Self {
        Difference {
            kind,
            operation,
            at,
            ours,
            server,
            class: None,
            auth: None,
            deprecated: false,
            listed: None,
        }
    }

    fn about(mut self, server: &Operation) -> Self {
        self.class = server.class;
        self.auth = server.auth.clone();
        self.deprecated = server.deprecated;
        self
    }
}

type Key = (String, String);

fn key(op: &Operation) -> Key {
    (op.method.clone(), op.shape())
}

/// Every difference between `ours` and `server`, in a stable order.
pub fn compare(ours: &[Operation], server: &[Operation]) -> Vec<Difference> {
    let theirs: BTreeMap<Key, &Operation> = server.iter().map(|o| (key(o), o)).collect();
    let mine: BTreeMap<Key, &Operation> = ours.iter().map(|o| (key(o), o)).collect();
    let mut out = Vec::new();
    let mut ours_only: BTreeMap<String, Vec<&Operation>> = BTreeMap::new();
    for (k, o) in &mine {
        match theirs.get(k) {
            Some(t) => both(o, t, &mut out),
            None => ours_only.entry(k.1.clone()).or_default().push(o),
        }
    }
    let mut theirs_only: BTreeMap<String, Vec<&Operation>> = BTreeMap::new();
    for (k, t) in &theirs {
        if !mine.contains_key(k) {
            theirs_only.entry(k.1.clone()).or_default().push(t);
        }
    }
    // One operation left on each side of a path: the method is what differs.
    let paired: Vec<String> = ours_only
        .iter()
        .filter(|(shape, left)| {
            left.len() == 1 && theirs_only.get(*shape).is_some_and(|t| t.len() == 1)
        })
        .map(|(shape, _)| shape.clone())
        .collect();
    for shape in paired {
        let (Some(mut o), Some(mut t)) = (ours_only.remove(&shape), theirs_only.remove(&shape))
        else {
            continue;
        };
        let (Some(o), Some(t)) = (o.pop(), t.pop()) else {
            continue;
        };
        out.push(
            Difference::new(
                Kind::Method,
                o.name(),
                None,
                o.method.clone(),
                t.method.clone(),
            )
            .about(t),
        );
    }
    for o in ours_only.values().flatten() {
        out.push(Difference::new(
            Kind::NotServed,
            o.name(),
            None,
            "declared".into(),
            "not served".into(),
        ));
    }
    for t in theirs_only.values().flatten() {
        out.push(
            Difference::new(
                Kind::NotOurs,
                t.name(),
                None,
                "absent".into(),
                "served".into(),
            )
            .about(t),
        );
    }
    out.sort_by(|a, b| (a.kind, &a.operation, &a.at).cmp(&(b.kind, &b.operation, &b.at)));
    out
}

/// The differences of one operation both sides have.
fn both(o: &Operation, t: &Operation, out: &mut Vec<Difference>) {
    let diff = |kind, at: Option<String>, ours: String, server: String| {
        Difference::new(kind, o.name(), at, ours, server).about(t)
    };
    let (op, tp) = (o.path_params(), t.path_params());
    if op != tp {
        out.push(diff(Kind::PathParams, None, op.join(", "), tp.join(", ")));
    }
    // A server that declares no query parameters and no schemas says nothing to compare.
    let Some(tq) = &t.query else { return };
    if let Some(oq) = &o.query {
        for name in oq.symmetric_difference(tq) {
            let says = |set: &BTreeSet<String>| {
                if set.contains(name) {
                    "required"
                } else {
                    "not required"
                }
                .to_owned()
            };
            out.push(diff(Kind::Query, Some(name.clone()), says(oq), says(tq)));
        }
    }
    for (kind, mine, theirs) in [
        (Kind::Request, &o.request, &t.request),
        (Kind::Response, &o.response, &t.response),
    ] {
        match (mine, theirs) {
            (Some(m), Some(s)) => fields(kind, m, s, &mut |at, ours, server| {
                out.push(diff(kind, Some(at), ours, server))
            }),
            (None, None) => {}
            (m, s) => out.push(diff(
                kind,
                Some("(body)".into()),
                body_summary(m),
                body_summary(s),
            )),
        }
    }
}

fn body_summary(fields: &Option<Vec<Field>>) -> String {
    match fields {
        None => "no JSON body".into(),
        Some(f) => format!("JSON body, {} fields", f.len()),
    }
}

/// `string|null, optional`.
fn describe(f: &Field) -> String {
    let null = if f.nullable { "|null" } else { "" };
    let req = if f.required { "required" } else { "optional" };
    format!("{}{null}, {req}", f.ty)
}

/// The field a dotted path sits in: `data.items[].id` → `data.items`.
fn parent(path: &str) -> Option<&str> {
    let (head, _) = path.rsplit_once('.')?;
    Some(head.strip_suffix("[]").unwrap_or(head))
}

fn fields(
    kind: Kind,
    mine: &[Field],
    theirs: &[Field],
    push: &mut dyn FnMut(String, String, String),
) {
    let m: BTreeMap<&str, &Field> = mine.iter().map(|f| (f.path.as_str(), f)).collect();
    let t: BTreeMap<&str, &Field> = theirs.iter().map(|f| (f.path.as_str(), f)).collect();
    let paths: BTreeSet<&str> = m.keys().chain(t.keys()).copied().collect();
    // A field one side lacks is reported once, not once per field inside it.
    let only_in = |side: &BTreeMap<&str, &Field>, other: &BTreeMap<&str, &Field>, p: &str| {
        parent(p).is_some_and(|up| side.contains_key(up) && !other.contains_key(up))
    };
    for path in paths {
        match (m.get(path), t.get(path)) {
            (None, Some(s)) if !only_in(&t, &m, path) => {
                push(path.to_owned(), "absent".into(), describe(s));
            }
            (Some(o), None) if !only_in(&m, &t, path) => {
                push(path.to_owned(), describe(o), "absent".into());
            }
            (Some(o), Some(s)) => {
                let loose = o.ty == "any" || s.ty == "any";
                let ty = o.ty != s.ty && !loose;
                let (required, nullable) = if kind == Kind::Request {
                    (o.required != s.required, o.nullable != s.nullable)
                } else {
                    (o.required && !s.required, s.nullable && !o.nullable)
                };
                if ty || required || nullable {
                    push(path.to_owned(), describe(o), describe(s));
                }
            }
            _ => {}
        }
    }
}
