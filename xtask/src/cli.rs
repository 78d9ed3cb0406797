//! The command table of the `platos` command line: `spec/openapi.yaml` and
//! `spec/v1.yaml` → `platos-cli/src/generated.rs`.
//!
//! The output is data, not code: one `Op` per operation (its namespace,
//! command name, method, path template, parameters and list shape), which
//! `platos-cli/src/ops.rs` turns into clap subcommands and requests at run
//! time. A table keeps the generated file small and reviewable, and keeps
//! the CLI off the SDK's typed request API: every command goes through
//! `PlatosClient::raw` / `V1Client::raw`, so the SDK's transport (auth,
//! retries, idempotency keys, bounded bodies, typed errors) still applies.
//!
//! Names follow the SDK's namespace layer (`spec/README.md`): an operation's
//! single tag is its namespace (a dotted tag nests: `bgo.tasks` → `platos
//! bgo tasks …`), the command is the `operationId` without the tag's prefix
//! (or `x-platos-method`), both in kebab-case; V1 operations sit under
//! `platos v1 …`. Operations marked `x-platos-stream` get no generated
//! command (`platos chat` and `platos events tail` serve them). Required
//! path parameters are positional in path order, then required query
//! parameters and required body properties (a body property that is
//! nullable, has a default or is a list is a flag); every other parameter
//! is a flag.
//!
//! An operation marked `x-platos-idempotency: once` is sent once, without a
//! key and never retried (`RawRequest::once`); every other call follows the
//! rule of its method, as the SDK's own calls do. An operation with
//! `security: []` goes without the client's credentials
//! (`RawRequest::anonymous`), as the SDK's own call does.
//!
//! Every problem in a spec is reported at once, naming its operation.

use std::fmt::Write as _;

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// Which API a spec describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Api {
    /// `spec/openapi.yaml`: the agent API (end users and operators).
    Agent,
    /// `spec/v1.yaml`: the V1 operator API.
    V1,
}

impl Api {
    fn rust(self) -> &'static str {
        match self {
            Api::Agent => "Api::Agent",
            Api::V1 => "Api::V1",
        }
    }
}

struct Namespace {
    path: Vec<String>,
    about: String,
}

struct Param {
    wire: String,
    flag: String,
    place: &'static str,
    required: bool,
    ty: &'static str,
    help: String,
}

struct Op {
    namespace: Vec<String>,
    name: String,
    operation_id: String,
    method: String,
    path: String,
    about: String,
    params: Vec<Param>,
    list: Option<(Vec<String>, String)>,
    once: bool,
    anonymous: bool,
}

/// Generates `platos-cli/src/generated.rs` (without its header) from both specs.
pub fn generate(agent_yaml: &str, v1_yaml: &str) -> Result<String> {
    let agent = read(agent_yaml, Api::Agent).context("spec/openapi.yaml")?;
    let v1 = read(v1_yaml, Api::V1).context("spec/v1.yaml")?;
    let mut out = String::from(
        "//! Every operation of `spec/openapi.yaml` and `spec/v1.yaml` as a command\n\
         //! of `platos` (see `xtask/src/cli.rs`).\n\n\
         use crate::spec::{Api, List, Namespace, Op, Paging, Param, Place, Ty};\n\n",
    );
    out.push_str("/// Every namespace, in spec order.\npub static NAMESPACES: &[Namespace] = &[\n");
    for (api, (namespaces, _)) in [(Api::Agent, &agent), (Api::V1, &v1)] {
        for ns in namespaces {
            let _ = writeln!(
                out,
                "    Namespace {{ api: {}, path: &[{}], about: {:?} }},",
                api.rust(),
                strs(&ns.path),
                ns.about
            );
        }
    }
    out.push_str("];\n\n/// Every operation, by path.\npub static OPERATIONS: &[Op] = &[\n");
    for (api, (_, ops)) in [(Api::Agent, &agent), (Api::V1, &v1)] {
        for op in ops {
            emit_op(&mut out, api, op);
        }
    }
    out.push_str("];\n");
    Ok(out)
}

fn strs(items: &[String]) -> String {
    items
        .iter()
        .map(|s| format!("{s:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn emit_op(out: &mut String, api: Api, op: &Op) {
    let _ = writeln!(out, "    Op {{");
    let _ = writeln!(out, "        api: {},", api.rust());
    let _ = writeln!(out, "        namespace: &[{}],", strs(&op.namespace));
    let _ = writeln!(out, "        name: {:?},", op.name);
    let _ = writeln!(out, "        operation_id: {:?},", op.operation_id);
    let _ = writeln!(out, "        method: {:?},", op.method);
    let _ = writeln!(out, "        path: {:?},", op.path);
    let _ = writeln!(out, "        about: {:?},", op.about);
    if op.params.is_empty() {
        let _ = writeln!(out, "        params: &[],");
    } else {
        let _ = writeln!(out, "        params: &[");
        for p in &op.params {
            let _ = writeln!(
                out,
                "            Param {{ wire: {:?}, flag: {:?}, place: Place::{}, required: {}, ty: Ty::{}, help: {:?} }},",
                p.wire, p.flag, p.place, p.required, p.ty, p.help
            );
        }
        let _ = writeln!(out, "        ],");
    }
    match &op.list {
        None => {
            let _ = writeln!(out, "        list: None,");
        }
        Some((keys, paging)) => {
            let _ = writeln!(
                out,
                "        list: Some(List {{ keys: &[{}], paging: {paging} }}),",
                strs(keys)
            );
        }
    }
    let _ = writeln!(out, "        once: {},", op.once);
    let _ = writeln!(out, "        anonymous: {},", op.anonymous);
    let _ = writeln!(out, "    }},");
}

fn read(yaml: &str, api: Api) -> Result<(Vec<Namespace>, Vec<Op>)> {
    let doc: Value = serde_yaml::from_str(yaml).context("parsing the OpenAPI document")?;
    let mut problems = Vec::new();
    let mut namespaces = Vec::new();
    let mut declared = Vec::new();
    for tag in doc["tags"].as_array().into_iter().flatten() {
        let Some(name) = tag["name"].as_str() else {
            problems.push("a tag has no name".to_owned());
            continue;
        };
        declared.push(name.to_owned());
        namespaces.push(Namespace {
            path: name.split('.').map(kebab).collect(),
            about: first_sentence(tag["description"].as_str().unwrap_or("")),
        });
    }
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        for method in ["get", "put", "post", "delete", "patch"] {
            let Some(op) = item.get(method) else { continue };
            let id = op["operationId"].as_str().unwrap_or("");
            let label = if id.is_empty() {
                format!("{} {path}", method.to_ascii_uppercase())
            } else {
                id.to_owned()
            };
            match read_op(&doc, api, path, method, item, op, &declared) {
                Ok(Some(op)) => ops.push(op),
                Ok(None) => {}
                Err(e) => problems.push(format!("{label}: {e}")),
            }
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for op in &ops {
        let key = (op.namespace.clone(), op.name.clone());
        if !seen.insert(key) {
            problems.push(format!(
                "{}: command `{} {}` is taken by another operation",
                op.operation_id,
                op.namespace.join(" "),
                op.name
            ));
        }
    }
    if !problems.is_empty() {
        bail!("{}", problems.join("\n"));
    }
    Ok((namespaces, ops))
}

fn read_op(
    doc: &Value,
    api: Api,
    path: &str,
    method: &str,
    item: &Value,
    op: &Value,
    declared: &[String],
) -> Result<Option<Op>> {
    if op["x-platos-stream"].as_bool() == Some(true) {
        return Ok(None);
    }
    let id = op["operationId"]
        .as_str()
        .filter(|s| !s.is_empty())
        .context("no operationId")?;
    let tags: Vec<&str> = op["tags"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let [tag] = tags.as_slice() else {
        bail!("needs exactly one tag, has {}", tags.len());
    };
    if !declared.iter().any(|d| d == tag) {
        bail!("tag `{tag}` is not declared in `tags`");
    }
    let prefix = format!("{}_", tag.replace('.', "_"));
    let name = match op["x-platos-method"].as_str() {
        Some(name) => name.to_owned(),
        None => id.strip_prefix(&prefix).unwrap_or(id).to_owned(),
    };

    let mut params = Vec::new();
    let mut required_query = Vec::new();
    let mut optional = Vec::new();
    let declared_params = item["parameters"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(op["parameters"].as_array().into_iter().flatten());
    let mut path_params = Vec::new();
    for raw in declared_params {
        let p = resolve(doc, raw)?;
        let wire = p["name"].as_str().context("a parameter has no name")?;
        let schema = resolve(doc, &p["schema"])?;
        let help = first_sentence(p["description"].as_str().unwrap_or(""));
        let param = |place, required| Param {
            wire: wire.to_owned(),
            flag: kebab(wire),
            place,
            required,
            ty: ty_of(doc, &schema),
            help: help.clone(),
        };
        match p["in"].as_str() {
            Some("path") => path_params.push(param("Path", true)),
            Some("query") if p["required"].as_bool() == Some(true) => {
                required_query.push(param("Query", true));
            }
            Some("query") => optional.push(param("Query", false)),
            // Headers and cookies are the transport's business.
            _ => {}
        }
    }
    // Path parameters in the order the path names them.
    let mut rest = path;
    while let Some(open) = rest.find('{') {
        let close = rest[open..].find('}').context("unclosed `{` in the path")? + open;
        let name = &rest[open + 1..close];
        let at = path_params
            .iter()
            .position(|p| p.wire == name)
            .with_context(|| format!("path parameter `{name}` is not declared"))?;
        params.push(path_params.remove(at));
        rest = &rest[close + 1..];
    }
    if let Some(extra) = path_params.first() {
        bail!("parameter `{}` is not in the path", extra.wire);
    }
    params.extend(required_query);

    let body = &op["requestBody"]["content"]["application/json"]["schema"];
    if !body.is_null() {
        let schema = resolve(doc, body)?;
        let required: Vec<&str> = schema["required"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let mut body_required = Vec::new();
        for (wire, prop) in schema["properties"].as_object().into_iter().flatten() {
            let prop_schema = resolve(doc, prop)?;
            let ty = ty_of(doc, &prop_schema);
            // A list is a repeated flag: a positional list would swallow
            // the positionals after it.
            let positional = required.contains(&wire.as_str())
                && prop_schema["nullable"].as_bool() != Some(true)
                && prop.get("default").is_none()
                && prop_schema.get("default").is_none()
                && ty != "Strings";
            let param = Param {
                wire: wire.clone(),
                flag: kebab(wire),
                place: "Body",
                required: positional,
                ty,
                help: first_sentence(
                    prop["description"]
                        .as_str()
                        .or(prop_schema["description"].as_str())
                        .unwrap_or(""),
                ),
            };
            if positional {
                body_required.push(param);
            } else {
                optional.push(param);
            }
        }
        // In the order the schema's `required` lists them.
        body_required.sort_by_key(|p| required.iter().position(|r| *r == p.wire));
        params.append(&mut body_required);
    }
    params.extend(optional);
    for (i, p) in params.iter().enumerate() {
        if params[..i].iter().any(|q| q.flag == p.flag) {
            bail!("two parameters are both `--{}`", p.flag);
        }
        if matches!(
            p.flag.as_str(),
            "body" | "json" | "all" | "base-url" | "profile" | "help"
        ) {
            bail!(
                "parameter `{}` collides with the global flag `--{}`",
                p.wire,
                p.flag
            );
        }
    }

    let list = match op.get("x-platos-list") {
        None if api == Api::V1 && is_collection(doc, op) => {
            Some((vec!["data".to_owned()], "Paging::None".to_owned()))
        }
        None => None,
        Some(list) => {
            let keys: Vec<String> = list["keys"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect();
            if keys.is_empty() {
                bail!("x-platos-list needs `keys`");
            }
            let has = |name: &str| params.iter().any(|p| p.wire == name && p.place == "Query");
            let paging = if let Some(cursor) = list["cursor"].as_str() {
                if !has(cursor) {
                    bail!("cursor paging through `{cursor}`, which is not a query parameter");
                }
                format!("Paging::Cursor({cursor:?})")
            } else if list["paged"].as_bool() == Some(true) {
                if !has("offset") || !has("limit") {
                    bail!("offset paging needs `offset` and `limit` query parameters");
                }
                "Paging::Offset".to_owned()
            } else {
                "Paging::None".to_owned()
            };
            Some((keys, paging))
        }
    };

    Ok(Some(Op {
        namespace: tag.split('.').map(kebab).collect(),
        name: kebab(&name),
        operation_id: id.to_owned(),
        method: method.to_ascii_uppercase(),
        path: path.to_owned(),
        about: first_sentence(op["summary"].as_str().unwrap_or("")),
        params,
        list,
        // Sent once, never retried: a repeat could act twice.
        once: op["x-platos-idempotency"].as_str() == Some("once"),
        anonymous: op["security"].as_array().is_some_and(Vec::is_empty),
    }))
}

/// A V1 answer of the `{data, page}` collection shape.
fn is_collection(doc: &Value, op: &Value) -> bool {
    let Some(responses) = op["responses"].as_object() else {
        return false;
    };
    responses.values().any(|r| {
        resolve(doc, &r["content"]["application/json"]["schema"])
            .map(|s| s["properties"]["data"]["type"].as_str() == Some("array"))
            .unwrap_or(false)
    })
}

/// Follows a local `$ref` (`#/components/...`), repeatedly.
fn resolve(doc: &Value, value: &Value) -> Result<Value> {
    let mut value = value.clone();
    for _ in 0..16 {
        let Some(reference) = value.get("$ref").and_then(Value::as_str) else {
            return Ok(value);
        };
        let pointer = reference
            .strip_prefix('#')
            .with_context(|| format!("`{reference}` is not a local reference"))?;
        value = doc
            .pointer(pointer)
            .cloned()
            .with_context(|| format!("`{reference}` names nothing"))?;
    }
    bail!("references nest too deep")
}

fn ty_of(doc: &Value, schema: &Value) -> &'static str {
    match schema["type"].as_str() {
        Some("string") => "Str",
        Some("integer") => "Int",
        Some("number") => "Num",
        Some("boolean") => "Bool",
        Some("array") => match resolve(doc, &schema["items"]) {
            Ok(items) if items["type"].as_str() == Some("string") => "Strings",
            _ => "Json",
        },
        _ => "Json",
    }
}

/// `agentId`, `set_enabled`, `bff_magic_link` → `agent-id`, `set-enabled`, `bff-magic-link`.
fn kebab(name: &str) -> String {
    let mut out = String::new();
    let mut prev_lower = false;
    for c in name.chars() {
        if c == '_' || c == '-' || c == ' ' {
            out.push('-');
            prev_lower = false;
        } else if c.is_ascii_uppercase() {
            if prev_lower {
                out.push('-');
            }
            out.push(c.to_ascii_lowercase());
            prev_lower = false;
        } else {
            out.push(c);
            prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        }
    }
    out
}

/// The first sentence of a description, on one line (clap's short help).
fn first_sentence(text: &str) -> String {
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match text.find(". ") {
        Some(end) => text[..=end].to_owned(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kebab_cases_wire_names() {
        assert_eq!(kebab("agentId"), "agent-id");
        assert_eq!(kebab("set_enabled"), "set-enabled");
        assert_eq!(kebab("bff_magic_link"), "bff-magic-link");
        assert_eq!(kebab("ttlSeconds"), "ttl-seconds");
    }
}
