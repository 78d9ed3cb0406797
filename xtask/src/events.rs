//! Event enum generation: typify for the per-event structs, plus a tag
//! dispatcher emitted here.
//!
//! typify alone would turn the schema's root `oneOf` into an
//! `#[serde(untagged)]` enum, which tries every variant in turn: an unknown
//! `type` would then either fail or match the first struct whose required
//! fields happen to be present, and a malformed known event would report
//! "data did not match any variant" instead of the field at fault. So the
//! schema is pre-processed before typify sees it:
//!
//! - the root `oneOf` lists the events, in variant order; each event
//!   definition names its tag as `properties.type.const`. The `type` property
//!   is stripped: the generated `Event` enum owns the tag.
//! - the properties of every definition named by the root `allOf` (the
//!   envelope: `threadId`, `replyToMessageId`) are merged into every event
//!   definition, unless the definition lists them in `x-envelope-omit`.
//! - every object definition gets `additionalProperties: {}`, which typify
//!   turns into a flattened `extra` map: unknown fields survive a decode and
//!   re-encode instead of being dropped.
//! - the root itself is not given to typify, so no untagged enum is made.
//!
//! The dispatcher (`Event`, `KNOWN_KINDS`, decode/encode tables) is emitted
//! with `quote`; the helpers it calls (`crate::decode_body`,
//! `crate::encode_body`) are hand-written in `platos-events/src/lib.rs`.

use anyhow::{Context, Result, anyhow, bail};
use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use serde_json::{Map, Value};

/// Definition keyword listing envelope properties an event does not take.
const ENVELOPE_OMIT: &str = "x-envelope-omit";
const DEFINITIONS_PREFIX: &str = "#/definitions/";

/// How a schema of tagged objects names its tag and its definitions: the
/// event schema (`type`, `<Variant>Event`) and the V1 frame payload schema
/// (`t`, `<Variant>Payload`, `xtask/src/v1_frames.rs`) share everything else.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tagging {
    /// The discriminating property, e.g. `type`.
    pub tag: &'static str,
    /// The suffix every tagged definition's name ends in, e.g. `Event`.
    pub suffix: &'static str,
    /// What the schema describes, for error messages.
    pub what: &'static str,
}

/// `spec/events.schema.json`.
const EVENTS: Tagging = Tagging {
    tag: "type",
    suffix: "Event",
    what: "event",
};

/// One tagged definition of the root `oneOf`.
#[derive(Debug)]
pub(crate) struct EventDef {
    /// Definition (and struct) name, e.g. `TokenEvent`.
    pub def_name: String,
    /// Variant name, e.g. `Token`.
    pub variant: String,
    /// Wire tag, e.g. `token`.
    pub tag: String,
    /// First sentence-ish of the description, for the variant doc.
    pub doc: Option<String>,
    /// How to read each envelope property, in envelope order.
    envelope: Vec<(String, Access)>,
}

/// Where an event struct keeps one (string) envelope property.
#[derive(Debug)]
enum Access {
    /// `Option<String>` field.
    Optional(String),
    /// `String` field (the event lists the property as required).
    Required(String),
    /// Omitted: found among the unknown fields under its wire name, else in
    /// the optional field whose Rust name it shares, if any.
    Extra { fallback: Option<String> },
}

/// Turns `spec/events.schema.json` into the body of `platos-events/src/generated.rs`.
pub fn generate(schema_json: &str) -> Result<String> {
    let schema: Value = serde_json::from_str(schema_json).context("parsing the event schema")?;
    let (typify_input, events) = preprocess(&schema, &EVENTS)?;
    let structs = typify_structs(typify_input, &EVENTS)?;
    let dispatcher = dispatcher(&events);
    finish(
        quote! {
            #structs
            #dispatcher
        },
        false,
    )
}

/// The structs of every definition of a pre-processed schema, from typify.
pub(crate) fn typify_structs(typify_input: Value, tagging: &Tagging) -> Result<TokenStream> {
    let mut settings = typify::TypeSpaceSettings::default();
    settings.with_derive("PartialEq".to_string());
    // A struct whose fields are all optional gets `Default`, so callers can
    // build one field by field (`ConnectedEvent::default()`).
    for name in all_optional_definitions(&typify_input) {
        let mut patch = typify::TypeSpacePatch::default();
        patch.with_derive("Default");
        settings.with_patch(name, &patch);
    }
    let what = tagging.what;
    let root: schemars::schema::RootSchema = serde_json::from_value(typify_input)
        .with_context(|| format!("the pre-processed {what} schema is not a schemars RootSchema"))?;
    let mut space = typify::TypeSpace::new(&settings);
    space
        .add_root_schema(root)
        .map_err(|e| anyhow!("typify rejected the {what} schema: {e}"))?;
    Ok(space.to_stream())
}

/// Pretty-prints generated tokens; `non_exhaustive` marks every struct so
/// that a field added to the schema later is not a semver break.
pub(crate) fn finish(tokens: TokenStream, non_exhaustive: bool) -> Result<String> {
    let mut file: syn::File = syn::parse2(tokens).context("generated code does not parse")?;
    drop_unused_error_module(&mut file);
    if non_exhaustive {
        for item in &mut file.items {
            if let syn::Item::Struct(s) = item {
                s.attrs.push(syn::parse_quote!(#[non_exhaustive]));
            }
        }
    }
    Ok(prettyplease::unparse(&file))
}

/// typify always emits `pub mod error { ConversionError }` for its `TryFrom`
/// impls; this schema produces none, so the module would only clutter the
/// public API. It is kept if anything refers to it.
fn drop_unused_error_module(file: &mut syn::File) {
    let is_error_mod = |item: &syn::Item| matches!(item, syn::Item::Mod(m) if m.ident == "error");
    let used = file.items.iter().filter(|i| !is_error_mod(i)).any(|i| {
        let text = quote!(#i).to_string();
        text.contains("error :: ConversionError") || text.contains("ConversionError")
    });
    if !used {
        file.items.retain(|i| !is_error_mod(i));
    }
}

/// Names of object definitions with no required property.
fn all_optional_definitions(typify_input: &Value) -> Vec<String> {
    let Some(defs) = typify_input.get("definitions").and_then(Value::as_object) else {
        return Vec::new();
    };
    defs.iter()
        .filter(|(_, d)| {
            d.get("type").and_then(Value::as_str) == Some("object")
                && d.get("required")
                    .and_then(Value::as_array)
                    .is_none_or(|r| r.is_empty())
        })
        .map(|(name, _)| name.clone())
        .collect()
}

/// Returns the typify input (definitions only) and the tagged definitions in
/// root order.
pub(crate) fn preprocess(schema: &Value, tagging: &Tagging) -> Result<(Value, Vec<EventDef>)> {
    let what = tagging.what;
    let mut definitions = schema
        .get("definitions")
        .and_then(Value::as_object)
        .cloned()
        .with_context(|| format!("the {what} schema has no `definitions` object"))?;

    let envelope_names = ref_names(schema.get("allOf"), "allOf")?;
    let mut envelope = Map::new();
    for name in &envelope_names {
        let def = definitions
            .remove(name)
            .with_context(|| format!("root allOf names missing definition `{name}`"))?;
        if let Some(props) = def.get("properties").and_then(Value::as_object) {
            for (k, v) in props {
                envelope.insert(k.clone(), v.clone());
            }
        }
    }

    let event_names = ref_names(schema.get("oneOf"), "oneOf")?;
    if event_names.is_empty() {
        bail!("the root oneOf lists no {what} definitions");
    }
    let mut events = Vec::with_capacity(event_names.len());
    for name in &event_names {
        let def = definitions
            .get_mut(name)
            .and_then(Value::as_object_mut)
            .with_context(|| format!("root oneOf names missing definition `{name}`"))?;
        events.push(prepare_event(name, def, &envelope, tagging)?);
    }

    let mut seen = std::collections::BTreeSet::new();
    for e in &events {
        if !seen.insert(e.tag.as_str()) {
            bail!("two {what} definitions share the tag `{}`", e.tag);
        }
    }

    for (name, def) in definitions.iter_mut() {
        let Some(obj) = def.as_object_mut() else {
            continue;
        };
        let is_object = obj.get("type").and_then(Value::as_str) == Some("object");
        if is_object && !obj.contains_key("additionalProperties") {
            obj.insert("additionalProperties".into(), Value::Object(Map::new()));
        }
        // Extension keywords are for this generator only; typify would copy
        // them into the doc comments.
        obj.retain(|k, _| !k.starts_with("x-"));
        if obj.contains_key("oneOf") || obj.contains_key("anyOf") {
            bail!(
                "definition `{name}` uses oneOf/anyOf: typify would make it untagged; model it as an object with an open `kind` string instead"
            );
        }
    }

    let mut root = Map::new();
    root.insert(
        "$schema".into(),
        Value::String("http://json-schema.org/draft-07/schema#".into()),
    );
    root.insert("definitions".into(), Value::Object(definitions));
    Ok((Value::Object(root), events))
}

/// Strips the tag from one event definition and merges the envelope into it.
fn prepare_event(
    name: &str,
    def: &mut Map<String, Value>,
    envelope: &Map<String, Value>,
    tagging: &Tagging,
) -> Result<EventDef> {
    let Tagging { tag, suffix, what } = *tagging;
    let variant = name
        .strip_suffix(suffix)
        .filter(|v| !v.is_empty())
        .with_context(|| format!("{what} definition `{name}` must be named `<Variant>{suffix}`"))?
        .to_string();
    if def.get("type").and_then(Value::as_str) != Some("object") {
        bail!("{what} definition `{name}` must have \"type\": \"object\"");
    }

    let omit: Vec<String> = match def.get(ENVELOPE_OMIT) {
        None => Vec::new(),
        Some(v) => serde_json::from_value(v.clone())
            .with_context(|| format!("`{ENVELOPE_OMIT}` of `{name}` must be a string array"))?,
    };

    let props = def
        .entry("properties")
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
        .with_context(|| format!("`properties` of `{name}` is not an object"))?;
    let tag_key = tag;
    let tag = props
        .remove(tag_key)
        .and_then(|t| t.get("const").and_then(Value::as_str).map(str::to_string))
        .with_context(|| format!("{what} `{name}` needs `properties.{tag_key}.const` (its tag)"))?;

    for o in &omit {
        if !envelope.contains_key(o) {
            bail!("`{name}` omits `{o}`, which is not an envelope property");
        }
    }
    let required: Vec<String> = def
        .get("required")
        .and_then(Value::as_array)
        .map(|r| {
            r.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let props = def
        .get_mut("properties")
        .and_then(Value::as_object_mut)
        .with_context(|| format!("`properties` of `{name}` is not an object"))?;
    let mut access = Vec::new();
    for (k, v) in envelope {
        if v.get("type").and_then(Value::as_str) != Some("string") {
            bail!("envelope property `{k}` must be a string");
        }
        let field = snake(k);
        if omit.contains(k) {
            let fallback = props
                .keys()
                .find(|p| snake(p) == field && !required.contains(p))
                .map(|_| field.clone());
            access.push((k.clone(), Access::Extra { fallback }));
            continue;
        }
        if props.contains_key(k) {
            let a = if required.contains(k) {
                Access::Required(field)
            } else {
                Access::Optional(field)
            };
            access.push((k.clone(), a));
            continue;
        }
        access.push((k.clone(), Access::Optional(field)));
        // Two wire names with one Rust field name would not compile; make the
        // schema say which one wins.
        if let Some(clash) = props.keys().find(|p| snake(p) == snake(k)) {
            bail!(
                "`{name}`: envelope property `{k}` and property `{clash}` map to the same Rust field; list `{k}` in `{ENVELOPE_OMIT}`"
            );
        }
        props.insert(k.clone(), v.clone());
    }

    if let Some(Value::Array(required)) = def.get_mut("required") {
        required.retain(|r| r.as_str() != Some(tag_key));
    }

    let doc = def
        .get("description")
        .and_then(Value::as_str)
        .map(first_sentence);
    Ok(EventDef {
        def_name: name.to_string(),
        variant,
        tag,
        doc,
        envelope: access,
    })
}

/// Names of `#/definitions/X` references in a root `oneOf`/`allOf` array.
fn ref_names(list: Option<&Value>, what: &str) -> Result<Vec<String>> {
    let Some(list) = list else {
        return Ok(Vec::new());
    };
    let list = list
        .as_array()
        .with_context(|| format!("root `{what}` is not an array"))?;
    list.iter()
        .map(|item| {
            item.get("$ref")
                .and_then(Value::as_str)
                .and_then(|r| r.strip_prefix(DEFINITIONS_PREFIX))
                .map(str::to_string)
                .with_context(|| {
                    format!(
                        "root `{what}` entries must be `{{\"$ref\": \"{DEFINITIONS_PREFIX}…\"}}`"
                    )
                })
        })
        .collect()
}

/// The snake_case form typify gives a property name.
fn snake(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else if c == '-' {
            out.push('_');
        } else {
            out.push(c);
        }
    }
    out
}

fn first_sentence(text: &str) -> String {
    match text.find(". ") {
        Some(i) => text[..=i].to_string(),
        None => text.to_string(),
    }
}

fn dispatcher(events: &[EventDef]) -> TokenStream {
    let tags: Vec<&str> = events.iter().map(|e| e.tag.as_str()).collect();
    let variants: Vec<_> = events
        .iter()
        .map(|e| format_ident!("{}", e.variant))
        .collect();
    let structs: Vec<_> = events
        .iter()
        .map(|e| format_ident!("{}", e.def_name))
        .collect();
    let variant_docs: Vec<String> = events
        .iter()
        .map(|e| match &e.doc {
            Some(d) => format!("`{}`: {}", e.tag, d),
            None => format!("`{}`.", e.tag),
        })
        .collect();

    let envelope_accessors = envelope_accessors(events);

    quote! {
        /// Every `type` this version decodes into a typed variant, in schema order.
        pub const KNOWN_KINDS: &[&str] = &[#(#tags),*];

        /// One Platos stream event, discriminated by its `type` tag.
        ///
        /// Decode with [`Event::from_value`] or [`Event::from_json`]; encode
        /// with [`Event::to_value`], which writes the tag back. A `type` this
        /// version does not know becomes [`Event::Unknown`] with the raw JSON
        /// kept whole.
        #[derive(Debug, Clone, PartialEq)]
        #[non_exhaustive]
        pub enum Event {
            #(
                #[doc = #variant_docs]
                #variants(#structs),
            )*
            /// An event whose `type` this version does not know, kept as
            /// received (including its `type`).
            Unknown {
                /// The event's `type`.
                kind: ::std::string::String,
                /// The whole event object, as received.
                raw: ::serde_json::Value,
            },
        }

        impl Event {
            /// The event's wire `type` tag.
            pub fn kind(&self) -> &str {
                match self {
                    #(Event::#variants(_) => #tags,)*
                    Event::Unknown { kind, .. } => kind,
                }
            }

            /// The decoder for a known `kind`: it takes the event object
            /// without its `type`. `None` when `kind` is not in [`KNOWN_KINDS`].
            pub(crate) fn decoder(kind: &str) -> ::std::option::Option<crate::BodyDecoder> {
                match kind {
                    #(#tags => ::std::option::Option::Some(|body| {
                        crate::decode_body::<#structs>(#tags, body).map(Event::#variants)
                    }),)*
                    _ => ::std::option::Option::None,
                }
            }

            /// Deserializes the body of a known `kind` straight from `de`, a
            /// map that no longer yields the `type` entry, into `out`;
            /// `Ok(false)` when `kind` is not in [`KNOWN_KINDS`]. The fast
            /// path of [`Event::from_json`]: no `Value` is built and no field
            /// path is tracked (`crate::fast` leaves failures to the slow
            /// path, which names the field). `out` rather than a returned
            /// `Event` because the enum is large and every `Result` layer
            /// would copy it again.
            pub(crate) fn deserialize_known<'de, D>(
                kind: &str,
                de: D,
                out: &mut ::std::option::Option<Event>,
            ) -> ::std::result::Result<bool, D::Error>
            where
                D: ::serde::Deserializer<'de>,
            {
                match kind {
                    #(#tags => {
                        *out = ::std::option::Option::Some(Event::#variants(
                            <#structs as ::serde::Deserialize>::deserialize(de)?,
                        ));
                        ::std::result::Result::Ok(true)
                    })*
                    _ => ::std::result::Result::Ok(false),
                }
            }

            /// Encodes a known variant (tag included); `None` for `Unknown`.
            pub(crate) fn encode_known(&self) -> ::std::option::Option<::serde_json::Value> {
                match self {
                    #(Event::#variants(body) => ::std::option::Option::Some(crate::encode_body(#tags, body)),)*
                    Event::Unknown { .. } => ::std::option::Option::None,
                }
            }

            #envelope_accessors
        }

        #(
            impl ::std::convert::From<#structs> for Event {
                fn from(body: #structs) -> Self {
                    Event::#variants(body)
                }
            }
        )*
    }
}

/// One `fn <field>(&self) -> Option<&str>` per envelope property, reading it
/// from whichever variant holds it (the raw JSON for `Unknown`).
fn envelope_accessors(events: &[EventDef]) -> TokenStream {
    let Some(first) = events.first() else {
        return TokenStream::new();
    };
    let mut out = TokenStream::new();
    for (wire, _) in &first.envelope {
        let fn_name = format_ident!("{}", snake(wire));
        let doc = format!(
            "The event's `{wire}`, whichever variant it is (also read from the raw JSON of `Unknown`)."
        );
        let arms = events.iter().map(|e| {
            let variant = format_ident!("{}", e.variant);
            let read = match e.envelope.iter().find(|(w, _)| w == wire).map(|(_, a)| a) {
                Some(Access::Required(f)) => {
                    let f = format_ident!("{}", f);
                    quote!(::std::option::Option::Some(e.#f.as_str()))
                }
                Some(Access::Optional(f)) => {
                    let f = format_ident!("{}", f);
                    quote!(e.#f.as_deref())
                }
                Some(Access::Extra { fallback }) => {
                    let extra = quote!(e.extra.get(#wire).and_then(::serde_json::Value::as_str));
                    match fallback {
                        Some(f) => {
                            let f = format_ident!("{}", f);
                            quote!(#extra.or(e.#f.as_deref()))
                        }
                        None => extra,
                    }
                }
                None => quote!(::std::option::Option::None),
            };
            quote!(Event::#variant(e) => #read,)
        });
        out.extend(quote! {
            #[doc = #doc]
            pub fn #fn_name(&self) -> ::std::option::Option<&str> {
                match self {
                    #(#arms)*
                    Event::Unknown { raw, .. } => raw.get(#wire).and_then(::serde_json::Value::as_str),
                }
            }
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema_text() -> String {
        let path = crate::workspace_root().join("spec/events.schema.json");
        std::fs::read_to_string(path).expect("spec/events.schema.json is readable")
    }

    #[test]
    fn generates_from_the_committed_schema_deterministically() {
        let text = schema_text();
        let a = generate(&text).expect("generation succeeds");
        let b = generate(&text).expect("generation succeeds");
        assert_eq!(a, b);
        assert!(a.contains("pub enum Event"));
        assert!(!a.contains("untagged"), "no untagged enum may be generated");
    }

    /// `PLATOS_WRITE_EVENTS=1 cargo test -p xtask write_events_only` rewrites
    /// only `platos-events/src/generated.rs` (same header as `cargo xtask
    /// codegen`), for when the REST half of codegen cannot run.
    #[test]
    fn write_events_only() {
        if std::env::var_os("PLATOS_WRITE_EVENTS").is_none() {
            return;
        }
        let text = schema_text();
        let body = generate(&text).expect("generation succeeds");
        let contents = crate::with_header(
            &format!(
                "typify {}, prettyplease {}",
                crate::TYPIFY_VERSION,
                crate::PRETTYPLEASE_VERSION
            ),
            &[("spec/events.schema.json", &text)],
            &body,
        );
        let path = crate::workspace_root().join("platos-events/src/generated.rs");
        std::fs::write(path, contents).expect("generated.rs is writable");
    }

    #[test]
    fn envelope_clash_without_omit_is_an_error() {
        let schema = serde_json::json!({
            "allOf": [{"$ref": "#/definitions/Env"}],
            "oneOf": [{"$ref": "#/definitions/MetaEvent"}],
            "definitions": {
                "Env": {"type": "object", "properties": {"threadId": {"type": "string"}}},
                "MetaEvent": {"type": "object", "properties": {
                    "type": {"const": "meta"}, "thread_id": {"type": "string"}}}
            }
        });
        let err = generate(&schema.to_string()).expect_err("clash must be reported");
        assert!(format!("{err:#}").contains("x-envelope-omit"), "{err:#}");
    }

    #[test]
    fn event_without_tag_is_an_error() {
        let schema = serde_json::json!({
            "oneOf": [{"$ref": "#/definitions/TokenEvent"}],
            "definitions": {"TokenEvent": {"type": "object", "properties": {"text": {"type": "string"}}}}
        });
        let err = generate(&schema.to_string()).expect_err("missing tag must be reported");
        assert!(
            format!("{err:#}").contains("properties.type.const"),
            "{err:#}"
        );
    }
}
