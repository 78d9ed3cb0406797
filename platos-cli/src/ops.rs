//! The generated commands: the table in `generated.rs` as clap
//! subcommands, and one matched subcommand as a request sent through the
//! SDK's transport (`PlatosClient::raw`, `V1Client::raw`).

use std::io::Read;

use clap::{Arg, ArgAction, ArgMatches, Command};
use serde_json::{Map, Value};

use crate::config::Settings;
use crate::fail::{Failure, Result};
use crate::generated::{NAMESPACES, OPERATIONS};
use crate::output;
use crate::spec::{Api, Op, Paging, Place, Ty};

/// The most bytes `--body` reads from a file or stdin.
const MAX_BODY_BYTES: u64 = 16 * 1024 * 1024;
/// The most pages `--all` follows (a server that never ends a list is cut off).
const MAX_PAGES: usize = 10_000;

/// `root` with every namespace and operation of `api` added (nested
/// namespaces as subcommands of their parent).
pub fn add(mut root: Command, api: Api) -> Command {
    for ns in NAMESPACES.iter().filter(|n| n.api == api) {
        root = upsert(root, ns.path, &|cmd| cmd.about(ns.about));
    }
    for op in OPERATIONS.iter().filter(|o| o.api == api) {
        let command = command(op);
        root = upsert(root, op.namespace, &|cmd| cmd.subcommand(command.clone()));
    }
    root
}

/// Applies `f` to the subcommand at `path` under `root`, creating it (and
/// its parents) when absent.
pub fn upsert(root: Command, path: &[&str], f: &dyn Fn(Command) -> Command) -> Command {
    let Some((first, rest)) = path.split_first() else {
        return f(root);
    };
    let name = (*first).to_owned();
    let exists = root.find_subcommand(&name).is_some();
    let root = if exists {
        root
    } else {
        root.subcommand(
            Command::new(name.clone())
                .subcommand_required(true)
                .arg_required_else_help(true),
        )
    };
    root.mut_subcommand(name, |sub| upsert(sub, rest, f))
}

fn command(op: &Op) -> Command {
    let mut cmd = Command::new(op.name).about(op.about);
    let mut has_body = false;
    for p in op.params {
        has_body |= p.place == Place::Body;
        let mut arg = Arg::new(p.flag).help(p.help);
        if p.required {
            arg = arg
                .value_name(p.wire)
                // A body field may come from `--body` instead: checked when run.
                .required(p.place != Place::Body);
        } else {
            arg = arg.long(p.flag).value_name(value_name(p.ty));
        }
        if p.ty == Ty::Strings {
            arg = arg.action(ArgAction::Append);
        }
        cmd = cmd.arg(arg);
    }
    if has_body {
        cmd = cmd.arg(
            Arg::new("body")
                .long("body")
                .value_name("JSON|@FILE|-")
                .help("The request body: JSON text, @file.json, or - for stdin; flags set fields on top of it"),
        );
    }
    if op.list.as_ref().is_some_and(|l| l.paging != Paging::None) {
        cmd = cmd.arg(
            Arg::new("all")
                .long("all")
                .action(ArgAction::SetTrue)
                .help("Follow every page and print all items"),
        );
    }
    cmd
}

fn value_name(ty: Ty) -> &'static str {
    match ty {
        Ty::Str | Ty::Strings => "TEXT",
        Ty::Int => "INT",
        Ty::Num => "NUMBER",
        Ty::Bool => "true|false",
        Ty::Json => "JSON",
    }
}

/// The operation a matched subcommand path names, and its matches.
pub fn find(api: Api, matches: &ArgMatches) -> Option<(&'static Op, &ArgMatches)> {
    let mut path = Vec::new();
    let mut m = matches;
    while let Some((name, sub)) = m.subcommand() {
        path.push(name);
        m = sub;
    }
    let (name, namespace) = path.split_last()?;
    let op = OPERATIONS
        .iter()
        .find(|o| o.api == api && o.name == *name && o.namespace == namespace)?;
    Some((op, m))
}

/// Runs one generated command and prints its answer.
pub async fn run(op: &'static Op, m: &ArgMatches, settings: &Settings, json: bool) -> Result<()> {
    let call = Call::from_matches(op, m)?;
    let all = m
        .try_get_one::<bool>("all")
        .ok()
        .flatten()
        .copied()
        .unwrap_or(false);
    let answer = if all {
        call.all(settings).await?
    } else {
        call.send(settings, &[]).await?
    };
    let text = match (&op.list, json) {
        (Some(list), false) => match output::items(&answer, list.keys) {
            Some(rows) => {
                let table = output::table(rows);
                match table.split_once('\n') {
                    Some((head, rest)) if !rows.is_empty() => {
                        format!("{}\n{rest}", output::bold(head, output::decorate_stdout()))
                    }
                    _ => table,
                }
            }
            None => format!("{}\n", output::pretty(&answer)),
        },
        _ => format!("{}\n", output::pretty(&answer)),
    };
    output::emit(&text);
    Ok(())
}

/// One call's parts, read from the command line.
struct Call {
    op: &'static Op,
    path: Vec<(&'static str, String)>,
    query: Vec<(&'static str, String)>,
    body: Option<Value>,
}

impl Call {
    fn from_matches(op: &'static Op, m: &ArgMatches) -> Result<Self> {
        let mut path = Vec::new();
        let mut query = Vec::new();
        let mut fields = Map::new();
        for p in op.params {
            let Some(raw) = m.get_many::<String>(p.flag) else {
                continue;
            };
            let raw: Vec<&String> = raw.collect();
            match p.place {
                Place::Path => path.push((
                    p.wire,
                    raw.first().map(|s| s.to_string()).unwrap_or_default(),
                )),
                Place::Query => {
                    for text in raw {
                        // Check the type, send the text as given.
                        parse(p.flag, p.ty, text)?;
                        query.push((p.wire, text.clone()));
                    }
                }
                Place::Body => {
                    let value = if p.ty == Ty::Strings {
                        Value::Array(raw.iter().map(|s| Value::String(s.to_string())).collect())
                    } else {
                        match raw.first() {
                            Some(text) => parse(p.flag, p.ty, text)?,
                            None => continue,
                        }
                    };
                    fields.insert(p.wire.to_owned(), value);
                }
            }
        }
        let given = match m.try_get_one::<String>("body").ok().flatten() {
            Some(source) => Some(read_body(source)?),
            None => None,
        };
        let has_body = op.params.iter().any(|p| p.place == Place::Body);
        let body = match given {
            Some(Value::Object(mut base)) => {
                base.extend(fields);
                Some(Value::Object(base))
            }
            Some(other) if fields.is_empty() => Some(other),
            Some(_) => {
                return Err(Failure::usage(
                    "--body is not a JSON object, so flags cannot set fields on it",
                ));
            }
            None if has_body => Some(Value::Object(fields)),
            None => None,
        };
        if let Some(Value::Object(obj)) = &body {
            for p in op
                .params
                .iter()
                .filter(|p| p.required && p.place == Place::Body)
            {
                if !obj.contains_key(p.wire) {
                    return Err(Failure::usage(format!(
                        "missing {}: give it as an argument or in --body (see `platos {} {} --help`)",
                        p.wire,
                        op.namespace.join(" "),
                        op.name
                    )));
                }
            }
        }
        Ok(Call {
            op,
            path,
            query,
            body,
        })
    }

    /// Sends the call, with `extra` query pairs replacing those of the same name.
    async fn send(&self, settings: &Settings, extra: &[(&str, String)]) -> Result<Value> {
        let query = self
            .query
            .iter()
            .filter(|(k, _)| !extra.iter().any(|(e, _)| e == k))
            .map(|(k, v)| (*k, v.clone()))
            .chain(extra.iter().map(|(k, v)| (*k, v.clone())));
        match self.op.api {
            Api::Agent => {
                let client = settings.client()?;
                let mut request = client
                    .raw(self.op.method, self.op.path)
                    .operation(self.op.operation_id);
                if self.op.once {
                    request = request.once();
                }
                if self.op.anonymous {
                    request = request.anonymous();
                }
                for (k, v) in &self.path {
                    request = request.param(*k, v.clone());
                }
                for (k, v) in query {
                    request = request.query(k, v);
                }
                if let Some(body) = &self.body {
                    request = request.body(body.clone());
                }
                Ok(request.send().await?)
            }
            Api::V1 => {
                let client = settings.v1_client()?;
                let mut request = client
                    .raw(self.op.method, self.op.path)
                    .operation(self.op.operation_id);
                if self.op.anonymous {
                    request = request.anonymous();
                }
                for (k, v) in &self.path {
                    request = request.param(*k, v.clone());
                }
                for (k, v) in query {
                    request = request.query(k, v);
                }
                if let Some(body) = &self.body {
                    request = request.body(body.clone());
                }
                Ok(request.send().await?)
            }
        }
    }

    /// Every page, as `{"items": [...]}`.
    async fn all(&self, settings: &Settings) -> Result<Value> {
        let Some(list) = &self.op.list else {
            return self.send(settings, &[]).await;
        };
        let mut items = Vec::new();
        match list.paging {
            Paging::None => return self.send(settings, &[]).await,
            Paging::Offset => {
                let limit: u64 = self
                    .query
                    .iter()
                    .find(|(k, _)| *k == "limit")
                    .and_then(|(_, v)| v.parse().ok())
                    .unwrap_or(platos_client::DEFAULT_PAGE_SIZE)
                    .max(1);
                let mut offset: u64 = self
                    .query
                    .iter()
                    .find(|(k, _)| *k == "offset")
                    .and_then(|(_, v)| v.parse().ok())
                    .unwrap_or(0);
                for _ in 0..MAX_PAGES {
                    let extra = [("limit", limit.to_string()), ("offset", offset.to_string())];
                    let page = self.send(settings, &extra).await?;
                    let got = output::items(&page, list.keys).cloned().unwrap_or_default();
                    let n = got.len() as u64;
                    items.extend(got);
                    let more = match page.get("hasMore").and_then(Value::as_bool) {
                        Some(more) => more && n > 0,
                        None => n >= limit,
                    };
                    if !more {
                        break;
                    }
                    offset = offset.saturating_add(n);
                }
            }
            Paging::Cursor(param) => {
                let mut cursor: Option<String> = None;
                for _ in 0..MAX_PAGES {
                    let extra: Vec<(&str, String)> =
                        cursor.iter().map(|c| (param, c.clone())).collect();
                    let page = self.send(settings, &extra).await?;
                    let got = output::items(&page, list.keys).cloned().unwrap_or_default();
                    let empty = got.is_empty();
                    items.extend(got);
                    let next = page["page"]["nextCursor"].as_str().map(str::to_owned);
                    if empty || next.is_none() || next == cursor {
                        break;
                    }
                    cursor = next;
                }
            }
        }
        let mut out = Map::new();
        out.insert(list.keys[0].to_owned(), Value::Array(items));
        Ok(Value::Object(out))
    }
}

/// A parameter's text as the JSON value its type says.
fn parse(flag: &str, ty: Ty, text: &str) -> Result<Value> {
    let bad = |what: &str| Failure::usage(format!("{flag}: `{text}` is not {what}"));
    Ok(match ty {
        Ty::Str | Ty::Strings => Value::String(text.to_owned()),
        Ty::Int => Value::from(text.parse::<i64>().map_err(|_| bad("an integer"))?),
        Ty::Num => {
            let n = text.parse::<f64>().map_err(|_| bad("a number"))?;
            serde_json::Number::from_f64(n)
                .map(Value::Number)
                .ok_or_else(|| bad("a finite number"))?
        }
        Ty::Bool => Value::Bool(match text {
            "true" => true,
            "false" => false,
            _ => return Err(bad("true or false")),
        }),
        Ty::Json => serde_json::from_str(text)
            .map_err(|e| Failure::usage(format!("{flag}: not JSON ({e})")))?,
    })
}

/// `--body`: JSON text, `@file`, or `-` for stdin; at most [`MAX_BODY_BYTES`].
fn read_body(source: &str) -> Result<Value> {
    let text = if source == "-" {
        read_bounded(std::io::stdin().lock(), "stdin")?
    } else if let Some(path) = source.strip_prefix('@') {
        let file = std::fs::File::open(path).map_err(|e| Failure::io(path, e))?;
        read_bounded(file, path)?
    } else {
        source.to_owned()
    };
    serde_json::from_str(&text).map_err(|e| Failure::usage(format!("--body is not JSON: {e}")))
}

fn read_bounded(reader: impl Read, what: &str) -> Result<String> {
    let mut text = String::new();
    reader
        .take(MAX_BODY_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| Failure::io(what, e))?;
    if text.len() as u64 > MAX_BODY_BYTES {
        return Err(Failure::usage(format!(
            "--body from {what} is larger than {MAX_BODY_BYTES} bytes"
        )));
    }
    Ok(text)
}
