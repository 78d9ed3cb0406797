//! REST payload types: `spec/openapi.yaml` → progenitor (its typify
//! settings and OpenAPI-to-JSON-Schema conversion) → the `types` module
//! alone → prettyplease. The calls themselves are the namespace layer's
//! (`facade`): each request builds its URL and body and hands them to the
//! SDK's transport, with no generated client in between.
//!
//! progenitor 0.15 panics (`todo!`, `assert!`, `unwrap`) on several shapes it
//! does not support, and its own check only looks at operation ids. So the
//! spec is validated here first and every problem is reported together, each
//! naming the operation (or component schema) it comes from. A panic that
//! still escapes is caught and narrowed down to the operations that cause it.
//!
//! Besides what progenitor needs, validation enforces the project's rules for
//! response schemas (docs/wire.md: clients must survive newer servers): no closed
//! `enum` and no `additionalProperties: false` anywhere a response can reach.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::panic::{AssertUnwindSafe, catch_unwind};

use anyhow::{Context, Result, bail};
use openapiv3::{
    OpenAPI, Operation, Parameter, ParameterSchemaOrContent, PathItem, PathStyle, QueryStyle,
    ReferenceOr, RequestBody, Response, StatusCode,
};
use progenitor_impl::{GenerationSettings, Generator, InterfaceStyle, TagStyle};
use quote::quote;
use serde_json::Value;

/// Turns a spec (`spec/openapi.yaml`, `spec/v1.yaml`) into its payload
/// types (`platos-client/src/generated/mod.rs`, `platos-client/src/v1/generated.rs`).
pub fn generate(openapi_yaml: &str) -> Result<String> {
    let spec = parse(openapi_yaml)?;
    let problems = validate(&spec);
    if !problems.is_empty() {
        bail!(
            "spec/openapi.yaml has {} problem(s):\n  - {}",
            problems.len(),
            problems.join("\n  - ")
        );
    }
    let tokens = generate_tokens(&spec)?;
    format_tokens(types_only(tokens)?)
}

/// Keeps the `types` module of progenitor's output and drops its client.
pub fn types_only(tokens: proc_macro2::TokenStream) -> Result<proc_macro2::TokenStream> {
    let file: syn::File =
        syn::parse2(tokens).context("progenitor output does not parse as a Rust file")?;
    let types = file
        .items
        .into_iter()
        .find(|item| matches!(item, syn::Item::Mod(m) if m.ident == "types"))
        .context("progenitor output has no `types` module")?;
    Ok(quote!(#types))
}

/// Parses the YAML text of an OpenAPI 3.0 document.
pub fn parse(openapi_yaml: &str) -> Result<OpenAPI> {
    serde_yaml::from_str(openapi_yaml).context("parsing the OpenAPI document")
}

/// The one place the generator is configured: the snapshot tests use it too,
/// so a settings change shows up in their snapshots.
/// Only the types are kept: no struct builders (the requests are the
/// builders), no client.
pub fn settings() -> GenerationSettings {
    let mut settings = GenerationSettings::new();
    settings
        .with_interface(InterfaceStyle::Positional)
        .with_tag(TagStyle::Merged)
        .with_derive("PartialEq");
    settings
}

/// Runs progenitor. A panic inside it becomes an error naming the operations
/// that trigger it (found by generating each operation on its own).
pub fn generate_tokens(spec: &OpenAPI) -> Result<proc_macro2::TokenStream> {
    let settings = &settings();
    match run_progenitor(spec, settings) {
        Ok(Ok(tokens)) => Ok(tokens),
        Ok(Err(e)) => Err(anyhow::anyhow!("progenitor refused the spec: {e}")),
        Err(panic) => {
            let culprits = panicking_operations(spec, settings);
            let which = if culprits.is_empty() {
                "no single operation reproduces it (component schemas or an interaction)".into()
            } else {
                format!("operation(s) {}", culprits.join(", "))
            };
            bail!("progenitor panicked ({panic}); {which}")
        }
    }
}

type ProgenitorOutcome = std::result::Result<
    std::result::Result<proc_macro2::TokenStream, progenitor_impl::Error>,
    String,
>;

fn run_progenitor(spec: &OpenAPI, settings: &GenerationSettings) -> ProgenitorOutcome {
    catch_unwind(AssertUnwindSafe(|| {
        Generator::new(settings).generate_tokens(spec)
    }))
    .map_err(|payload| {
        payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_string()))
            .unwrap_or_else(|| "non-string panic payload".to_string())
    })
}

fn panicking_operations(spec: &OpenAPI, settings: &GenerationSettings) -> Vec<String> {
    let mut culprits = Vec::new();
    for (path, item) in &spec.paths.paths {
        let ReferenceOr::Item(item) = item else {
            continue;
        };
        for (method, op) in item.iter() {
            let mut single = spec.clone();
            single.paths.paths.clear();
            let mut only = PathItem {
                parameters: item.parameters.clone(),
                ..PathItem::default()
            };
            let slot = match method {
                "get" => &mut only.get,
                "put" => &mut only.put,
                "post" => &mut only.post,
                "delete" => &mut only.delete,
                "options" => &mut only.options,
                "head" => &mut only.head,
                "patch" => &mut only.patch,
                _ => &mut only.trace,
            };
            *slot = Some(op.clone());
            single
                .paths
                .paths
                .insert(path.clone(), ReferenceOr::Item(only));
            if run_progenitor(&single, settings).is_err() {
                culprits.push(op_label(method, path, op));
            }
        }
    }
    culprits
}

/// Formats generated tokens. progenitor-impl 0.15 builds its tokens with syn 3
/// internally but hands back a plain `proc_macro2::TokenStream`, which syn 2
/// parses, so the pinned prettyplease 0.2 (syn 2) formats it.
pub fn format_tokens(tokens: proc_macro2::TokenStream) -> Result<String> {
    let file: syn::File =
        syn::parse2(tokens).context("progenitor output does not parse as a Rust file")?;
    Ok(prettyplease::unparse(&file))
}

fn op_label(method: &str, path: &str, op: &Operation) -> String {
    match &op.operation_id {
        Some(id) => id.clone(),
        None => format!("{} {path} (no operationId)", method.to_ascii_uppercase()),
    }
}

/// Every problem in the document that would make progenitor panic, produce
/// something unusable, or break the project's rules. Empty means fine.
pub fn validate(spec: &OpenAPI) -> Vec<String> {
    let mut problems = Vec::new();
    if !spec.openapi.trim().starts_with("3.0.") {
        problems.push(format!(
            "openapi version {:?}: progenitor only reads 3.0.x",
            spec.openapi
        ));
    }
    // The document as JSON, for `$ref` resolution and schema walks.
    let doc = match serde_json::to_value(spec) {
        Ok(doc) => doc,
        Err(e) => {
            problems.push(format!("cannot re-serialise the document: {e}"));
            return problems;
        }
    };

    let mut seen_ids: BTreeMap<String, String> = BTreeMap::new();
    let mut seen_snake: BTreeMap<String, String> = BTreeMap::new();
    // Schemas reachable from a success response, keyed by the operation that
    // reaches them first (for messages).
    let mut response_roots: Vec<(String, Value)> = Vec::new();

    for (path, item) in &spec.paths.paths {
        let item = match item {
            ReferenceOr::Item(item) => item,
            ReferenceOr::Reference { reference } => {
                problems.push(format!(
                    "path {path}: is a $ref ({reference}), unsupported by progenitor"
                ));
                continue;
            }
        };
        let template = match path_template_names(path) {
            Ok(names) => names,
            Err(e) => {
                problems.push(format!("path {path}: {e}"));
                continue;
            }
        };
        if item.iter().next().is_none() {
            problems.push(format!("path {path}: has no operations"));
        }
        for (method, op) in item.iter() {
            let label = op_label(method, path, op);
            let mut report = |msg: String| problems.push(format!("operation {label}: {msg}"));
            let where_ = format!("{} {path}", method.to_ascii_uppercase());

            match op.operation_id.as_deref() {
                None => report(format!("{where_} has no operationId")),
                Some("") => report(format!("{where_} has an empty operationId")),
                Some(id) => {
                    if let Some(other) = seen_ids.insert(id.to_string(), where_.clone()) {
                        report(format!("operationId is used twice ({other} and {where_})"));
                    } else {
                        let snake = to_snake(id);
                        if let Some(other) = seen_snake.insert(snake.clone(), id.to_string()) {
                            report(format!(
                                "operationId becomes method `{snake}`, same as operation {other}"
                            ));
                        }
                        if !snake.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
                            report(format!(
                                "operationId becomes `{snake}`, not a Rust identifier"
                            ));
                        }
                    }
                }
            }
            for ext in ["x-dropshot-pagination", "x-dropshot-websocket"] {
                if op.extensions.contains_key(ext) {
                    report(format!("uses {ext}, which this project does not support"));
                }
            }

            // Parameters: path-level first, overridden by operation-level
            // ones with the same name and location (as progenitor does).
            let mut params: BTreeMap<(String, &'static str), &Parameter> = BTreeMap::new();
            for p in item.parameters.iter().chain(op.parameters.iter()) {
                match resolve_parameter(spec, p) {
                    Ok(p) => {
                        params.insert((p.parameter_data_ref().name.clone(), location(p)), p);
                    }
                    Err(e) => report(e),
                }
            }
            let mut snake_names: BTreeMap<String, String> = BTreeMap::new();
            let mut declared_path = BTreeSet::new();
            for ((name, loc), p) in &params {
                let data = p.parameter_data_ref();
                if let Some(other) = snake_names.insert(to_snake(name), name.clone()) {
                    report(format!(
                        "parameters `{other}` and `{name}` get the same Rust name `{}`",
                        to_snake(name)
                    ));
                }
                if op.request_body.is_some() && to_snake(name) == "body" {
                    report(format!(
                        "parameter `{name}` clashes with the request body argument"
                    ));
                }
                match p {
                    Parameter::Path { style, .. } => {
                        declared_path.insert(name.clone());
                        if !data.required {
                            report(format!("path parameter `{name}` must be required: true"));
                        }
                        if !matches!(style, PathStyle::Simple) {
                            report(format!("path parameter `{name}` must use style simple"));
                        }
                        if !template.contains(name) {
                            report(format!(
                                "path parameter `{name}` is declared but not in the path"
                            ));
                        }
                    }
                    Parameter::Query { style, .. } => {
                        if !matches!(style, QueryStyle::Form) {
                            report(format!("query parameter `{name}` must use style form"));
                        }
                    }
                    Parameter::Header { .. } => {}
                    Parameter::Cookie { .. } => {
                        report(format!("cookie parameter `{name}` is unsupported ({loc})"));
                    }
                }
                match &data.format {
                    ParameterSchemaOrContent::Schema(schema) => {
                        let v = serde_json::to_value(schema).unwrap_or(Value::Null);
                        check_schema_shapes(&doc, &v, &format!("parameter `{name}`"), &mut report);
                    }
                    ParameterSchemaOrContent::Content(_) => {
                        report(format!(
                            "parameter `{name}` uses `content`; give a `schema`"
                        ));
                    }
                }
            }
            for name in &template {
                if !declared_path.contains(name) {
                    report(format!(
                        "path segment {{{name}}} has no path parameter declared"
                    ));
                }
            }

            if let Some(body) = &op.request_body {
                match resolve_request_body(spec, body) {
                    Err(e) => report(e),
                    Ok(body) => match body.content.len() {
                        0 => report("request body declares no content".into()),
                        1 => {
                            if let Some((ct, mt)) = body.content.first() {
                                if ct != "application/json" {
                                    report(format!(
                                        "request body content type {ct}: only application/json is used here"
                                    ));
                                }
                                if !mt.encoding.is_empty() {
                                    report("request body media type has an `encoding`".into());
                                }
                                match &mt.schema {
                                    None => report("request body has no schema".into()),
                                    Some(s) => {
                                        let v = serde_json::to_value(s).unwrap_or(Value::Null);
                                        check_schema_shapes(&doc, &v, "request body", &mut report);
                                    }
                                }
                            }
                        }
                        n => report(format!(
                            "request body has {n} media types; progenitor takes one"
                        )),
                    },
                }
            }

            let mut success_kinds = BTreeSet::new();
            let mut error_kinds = BTreeSet::new();
            let mut any_success = false;
            let responses = op
                .responses
                .default
                .iter()
                .map(|r| (None, r))
                .chain(op.responses.responses.iter().map(|(s, r)| (Some(s), r)));
            for (status, r) in responses {
                let status_text = status.map_or("default".to_string(), |s| s.to_string());
                let success = match status {
                    None => true,
                    Some(StatusCode::Code(c)) => (200..=299).contains(c) || *c == 101,
                    Some(StatusCode::Range(r)) => *r == 2,
                };
                let error = match status {
                    None => true,
                    Some(StatusCode::Code(c)) => (400..=599).contains(c),
                    Some(StatusCode::Range(r)) => (4..=5).contains(r),
                };
                match status {
                    Some(StatusCode::Code(101)) => {
                        report("101 (upgrade) responses are unsupported".into());
                    }
                    Some(StatusCode::Code(c)) if *c >= 1000 => {
                        report(format!("status {c} is not an HTTP status"));
                    }
                    Some(StatusCode::Range(r)) if *r >= 10 => {
                        report(format!("status range {r}XX is not an HTTP status range"));
                    }
                    _ => {}
                }
                any_success |= success;
                let r = match resolve_response(spec, r) {
                    Ok(r) => r,
                    Err(e) => {
                        report(e);
                        continue;
                    }
                };
                let json = r.content.iter().find(|(ct, _)| {
                    ct.as_str() == "application/json" || ct.starts_with("application/json;")
                });
                let kind = match json {
                    Some((_, mt)) => {
                        if !mt.encoding.is_empty() {
                            report(format!(
                                "response {status_text} media type has an `encoding`"
                            ));
                        }
                        match &mt.schema {
                            None => {
                                report(format!(
                                    "response {status_text} has JSON content but no schema"
                                ));
                                "none".to_string()
                            }
                            Some(s) => {
                                let v = serde_json::to_value(s).unwrap_or(Value::Null);
                                check_schema_shapes(
                                    &doc,
                                    &v,
                                    &format!("response {status_text}"),
                                    &mut report,
                                );
                                if success {
                                    response_roots.push((label.clone(), v.clone()));
                                }
                                // Distinct inline schemas become distinct
                                // types even when equal, so key on the text.
                                format!("json {v}")
                            }
                        }
                    }
                    None if r.content.is_empty() => "none".to_string(),
                    None => "raw".to_string(),
                };
                if success {
                    success_kinds.insert(kind.clone());
                }
                if error {
                    error_kinds.insert(kind);
                }
            }
            if !any_success {
                report("declares no 2xx (or default) response".into());
            }
            if success_kinds.len() > 1 {
                report("its 2xx responses have different bodies; progenitor needs one type".into());
            }
            if error_kinds.len() > 1 {
                report(
                    "its error responses have different bodies; progenitor needs one type".into(),
                );
            }
        }
    }

    check_component_schemas(&doc, &mut problems);
    check_response_policy(&doc, &response_roots, &mut problems);
    problems
}

fn location(p: &Parameter) -> &'static str {
    match p {
        Parameter::Query { .. } => "query",
        Parameter::Header { .. } => "header",
        Parameter::Path { .. } => "path",
        Parameter::Cookie { .. } => "cookie",
    }
}

fn component_name<'a>(reference: &'a str, kind: &str) -> Option<&'a str> {
    reference
        .strip_prefix("#/components/")
        .and_then(|rest| rest.strip_prefix(kind))
        .and_then(|rest| rest.strip_prefix('/'))
}

fn resolve_parameter<'a>(
    spec: &'a OpenAPI,
    p: &'a ReferenceOr<Parameter>,
) -> std::result::Result<&'a Parameter, String> {
    match p {
        ReferenceOr::Item(p) => Ok(p),
        ReferenceOr::Reference { reference } => component_name(reference, "parameters")
            .and_then(|name| spec.components.as_ref()?.parameters.get(name))
            .and_then(|p| p.as_item())
            .ok_or_else(|| format!("parameter $ref {reference} does not resolve")),
    }
}

fn resolve_request_body<'a>(
    spec: &'a OpenAPI,
    b: &'a ReferenceOr<RequestBody>,
) -> std::result::Result<&'a RequestBody, String> {
    match b {
        ReferenceOr::Item(b) => Ok(b),
        ReferenceOr::Reference { reference } => component_name(reference, "requestBodies")
            .and_then(|name| spec.components.as_ref()?.request_bodies.get(name))
            .and_then(|b| b.as_item())
            .ok_or_else(|| format!("request body $ref {reference} does not resolve")),
    }
}

fn resolve_response<'a>(
    spec: &'a OpenAPI,
    r: &'a ReferenceOr<Response>,
) -> std::result::Result<&'a Response, String> {
    match r {
        ReferenceOr::Item(r) => Ok(r),
        ReferenceOr::Reference { reference } => component_name(reference, "responses")
            .and_then(|name| spec.components.as_ref()?.responses.get(name))
            .and_then(|r| r.as_item())
            .ok_or_else(|| format!("response $ref {reference} does not resolve")),
    }
}

/// Names of the `{param}` segments of a path template.
fn path_template_names(path: &str) -> std::result::Result<Vec<String>, String> {
    let mut names = Vec::new();
    let mut rest = path;
    while let Some(open) = rest.find('{') {
        if rest[..open].contains('}') {
            return Err("unbalanced `}` in the path template".into());
        }
        let after = &rest[open + 1..];
        let close = after
            .find('}')
            .ok_or_else(|| "unclosed `{` in the path template".to_string())?;
        let name = &after[..close];
        if name.is_empty() || name.contains('{') {
            return Err(format!("bad path template segment {{{name}}}"));
        }
        names.push(name.to_string());
        rest = &after[close + 1..];
    }
    if rest.contains('}') {
        return Err("unbalanced `}` in the path template".into());
    }
    Ok(names)
}

/// camelCase / kebab-case → snake_case, close enough to progenitor's `heck`
/// sanitising to detect two names that would collide (the namespace layer
/// names its methods and fields with it too).
pub fn to_snake(s: &str) -> String {
    let mut out = String::new();
    let mut prev_lower_or_digit = false;
    for c in s.chars() {
        if c.is_ascii_uppercase() {
            if prev_lower_or_digit {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
            prev_lower_or_digit = false;
        } else if c.is_ascii_alphanumeric() {
            out.push(c);
            prev_lower_or_digit = true;
        } else {
            if !out.ends_with('_') {
                out.push('_');
            }
            prev_lower_or_digit = false;
        }
    }
    out
}

/// Calls `f` on `schema` and on every schema nested in it, with a JSON-pointer
/// like location. Only schema-valued keywords are followed, so a property
/// *named* `enum` is not mistaken for the keyword.
fn walk_schema(schema: &Value, at: &str, f: &mut dyn FnMut(&serde_json::Map<String, Value>, &str)) {
    let Value::Object(obj) = schema else {
        return;
    };
    f(obj, at);
    if let Some(Value::Object(props)) = obj.get("properties") {
        for (name, s) in props {
            walk_schema(s, &format!("{at}.{name}"), f);
        }
    }
    for key in ["items", "additionalProperties", "not"] {
        if let Some(s @ Value::Object(_)) = obj.get(key) {
            walk_schema(s, &format!("{at}/{key}"), f);
        }
    }
    for key in ["oneOf", "anyOf", "allOf"] {
        if let Some(Value::Array(list)) = obj.get(key) {
            for (i, s) in list.iter().enumerate() {
                walk_schema(s, &format!("{at}/{key}[{i}]"), f);
            }
        }
    }
}

/// Shapes progenitor or typify cannot take: dangling `$ref`s, exclusive
/// bounds without a bound (progenitor `todo!`s on those), unknown types.
fn check_schema_shapes(doc: &Value, schema: &Value, at: &str, report: &mut dyn FnMut(String)) {
    walk_schema(schema, at, &mut |obj, here| {
        if let Some(Value::String(r)) = obj.get("$ref") {
            let ok = component_name(r, "schemas").is_some_and(|name| {
                doc.pointer(&format!("/components/schemas/{name}"))
                    .is_some()
            });
            if !ok {
                report(format!(
                    "{here}: $ref {r} does not resolve to a component schema"
                ));
            }
        }
        for (flag, bound) in [
            ("exclusiveMinimum", "minimum"),
            ("exclusiveMaximum", "maximum"),
        ] {
            if obj.get(flag) == Some(&Value::Bool(true)) && !obj.contains_key(bound) {
                report(format!("{here}: {flag} without {bound}"));
            }
        }
        if let Some(Value::String(t)) = obj.get("type") {
            let known = ["object", "array", "string", "number", "integer", "boolean"];
            if !known.contains(&t.as_str()) {
                report(format!("{here}: unknown type {t:?}"));
            }
        }
    });
}

fn check_component_schemas(doc: &Value, problems: &mut Vec<String>) {
    let Some(Value::Object(schemas)) = doc.pointer("/components/schemas") else {
        return;
    };
    for (name, schema) in schemas {
        check_schema_shapes(doc, schema, name, &mut |msg| {
            problems.push(format!("schema {name}: {msg}"));
        });
    }
}

/// Response schemas must decode answers from newer servers: a closed `enum`
/// fails on a new value, `additionalProperties: false` on a new field.
fn check_response_policy(doc: &Value, roots: &[(String, Value)], problems: &mut Vec<String>) {
    let mut found = BTreeSet::new();
    let mut queue: VecDeque<(String, String, Value)> = roots
        .iter()
        .map(|(op, s)| {
            (
                op.clone(),
                format!("operation {op}: 2xx response"),
                s.clone(),
            )
        })
        .collect();
    let mut visited = BTreeSet::new();
    while let Some((op, at, schema)) = queue.pop_front() {
        walk_schema(&schema, &at, &mut |obj, here| {
            if obj.contains_key("enum") {
                found.insert(format!(
                    "{here}: closed `enum` in a response schema (reached from {op}); use a string and list the values in `description`"
                ));
            }
            if obj.get("additionalProperties") == Some(&Value::Bool(false)) {
                found.insert(format!(
                    "{here}: `additionalProperties: false` in a response schema (reached from {op})"
                ));
            }
            if let Some(Value::String(r)) = obj.get("$ref")
                && let Some(name) = component_name(r, "schemas")
                && visited.insert(name.to_string())
                && let Some(target) = doc.pointer(&format!("/components/schemas/{name}"))
            {
                queue.push_back((op.clone(), format!("schema {name}"), target.clone()));
            }
        });
    }
    problems.extend(found);
}
