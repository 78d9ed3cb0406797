//! V1 frame payload generation: `spec/v1-frames.schema.json` →
//! `platos-client/src/v1/payload.rs`.
//!
//! The schema is read like the event schema (`events.rs`: one definition per
//! tag in the root `oneOf`, each naming its tag as `properties.t.const`,
//! unknown members kept in a flattened `extra` map, typify for the structs),
//! with `t` as the tag and `<Variant>Payload` definitions. What differs is the
//! dispatcher: a frame's envelope (`sv`, `t`, `seq`, `ts`) is read by the
//! hand-written reader (`v1/frame.rs`), which hands the remaining members to
//! `FramePayload::decode` with the already-parsed `t`, so the payload is typed
//! from the one parse of the frame. The generated structs are
//! `#[non_exhaustive]`: a member added to the schema later is not a semver
//! break. `FrameType` is generated from the same list, so the two enums cannot
//! disagree on the vocabulary.

use anyhow::{Context, Result};
use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use serde_json::Value;

use crate::events::{self, EventDef, Tagging};

const FRAMES: Tagging = Tagging {
    tag: "t",
    suffix: "Payload",
    what: "V1 frame",
};

/// Turns `spec/v1-frames.schema.json` into the body of `platos-client/src/v1/payload.rs`.
pub fn generate(schema_json: &str) -> Result<String> {
    let schema: Value = serde_json::from_str(schema_json).context("parsing the V1 frame schema")?;
    let (typify_input, frames) = events::preprocess(&schema, &FRAMES)?;
    let structs = events::typify_structs(typify_input, &FRAMES)?;
    let dispatcher = dispatcher(&frames);
    events::finish(
        quote! {
            #structs
            #dispatcher
        },
        true,
    )
}

fn dispatcher(frames: &[EventDef]) -> TokenStream {
    let tags: Vec<&str> = frames.iter().map(|f| f.tag.as_str()).collect();
    let variants: Vec<_> = frames
        .iter()
        .map(|f| format_ident!("{}", f.variant))
        .collect();
    let structs: Vec<_> = frames
        .iter()
        .map(|f| format_ident!("{}", f.def_name))
        .collect();
    let type_docs: Vec<String> = tags.iter().map(|t| format!("`{t}`")).collect();
    let payload_docs: Vec<String> = frames
        .iter()
        .map(|f| match &f.doc {
            Some(d) => format!("`{}`: {}", f.tag, d),
            None => format!("`{}`.", f.tag),
        })
        .collect();

    quote! {
        /// Every `t` this version types, in schema order.
        pub const KNOWN_FRAME_TYPES: &[&str] = &[#(#tags),*];

        /// The frame types the stream contract names. New types may appear: an
        /// unknown one is kept as [`FrameType::Unknown`] with its raw name, and its
        /// frame is admitted and handed over like any other.
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum FrameType {
            #(
                #[doc = #type_docs]
                #variants,
            )*
            /// A type this SDK does not know yet.
            Unknown(::std::string::String),
        }

        impl FrameType {
            /// Reads a wire name.
            pub fn from_wire(t: &str) -> Self {
                match t {
                    #(#tags => FrameType::#variants,)*
                    other => FrameType::Unknown(other.to_owned()),
                }
            }

            /// The wire name.
            pub fn as_str(&self) -> &str {
                match self {
                    #(FrameType::#variants => #tags,)*
                    FrameType::Unknown(t) => t,
                }
            }
        }

        /// A frame's payload, typed by its `t`: every member but the envelope's
        /// `sv`, `t`, `seq` and `ts`. Members a payload type does not name are
        /// kept in its `extra` map; a `t` this version does not know is
        /// [`FramePayload::Unknown`] with its members as received.
        #[derive(Debug, Clone, PartialEq)]
        #[non_exhaustive]
        pub enum FramePayload {
            #(
                #[doc = #payload_docs]
                #variants(#structs),
            )*
            /// A frame whose `t` this version does not know, kept as received.
            Unknown {
                /// The frame's `t`.
                t: ::std::string::String,
                /// The payload's members, as received.
                fields: ::serde_json::Map<::std::string::String, ::serde_json::Value>,
            },
        }

        impl FramePayload {
            /// The type of the frame this payload belongs to.
            pub fn frame_type(&self) -> FrameType {
                match self {
                    #(FramePayload::#variants(_) => FrameType::#variants,)*
                    FramePayload::Unknown { t, .. } => FrameType::Unknown(t.clone()),
                }
            }

            /// The payload's members as JSON (an object, without `t`): the
            /// typed members as the schema spells them, then the kept unknown
            /// ones; for [`FramePayload::Unknown`], the members as received.
            pub fn to_value(&self) -> ::serde_json::Value {
                let value = match self {
                    #(FramePayload::#variants(payload) => ::serde_json::to_value(payload),)*
                    FramePayload::Unknown { fields, .. } => {
                        return ::serde_json::Value::Object(fields.clone());
                    }
                };
                // Serializing these structs cannot fail (string keys only).
                value.unwrap_or(::serde_json::Value::Null)
            }

            /// Types the members of a frame of type `t` (the frame without its
            /// envelope); a known type whose members do not match its payload is
            /// an error naming the member at fault.
            pub(crate) fn decode(
                t: &FrameType,
                fields: &::serde_json::Map<::std::string::String, ::serde_json::Value>,
            ) -> ::std::result::Result<Self, ::std::string::String> {
                match t {
                    #(FrameType::#variants => super::frame::decode_payload(fields).map(FramePayload::#variants),)*
                    FrameType::Unknown(t) => ::std::result::Result::Ok(FramePayload::Unknown {
                        t: t.clone(),
                        fields: fields.clone(),
                    }),
                }
            }
        }

        #(
            impl ::std::convert::From<#structs> for FramePayload {
                fn from(payload: #structs) -> Self {
                    FramePayload::#variants(payload)
                }
            }
        )*
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_from_the_committed_schema_deterministically() {
        let path = crate::workspace_root().join("spec/v1-frames.schema.json");
        let text = std::fs::read_to_string(path).expect("spec/v1-frames.schema.json is readable");
        let a = generate(&text).expect("generation succeeds");
        assert_eq!(a, generate(&text).expect("generation succeeds"));
        assert!(a.contains("pub enum FramePayload"));
        assert!(!a.contains("untagged"), "no untagged enum may be generated");
    }

    #[test]
    fn payload_without_its_tag_is_an_error() {
        let schema = serde_json::json!({
            "oneOf": [{"$ref": "#/definitions/MetaPayload"}],
            "definitions": {"MetaPayload": {"type": "object", "properties": {"thread_id": {"type": "string"}}}}
        });
        let err = generate(&schema.to_string()).expect_err("a missing tag must be reported");
        assert!(format!("{err:#}").contains("properties.t.const"), "{err:#}");
    }

    #[test]
    fn payload_named_without_the_suffix_is_an_error() {
        let schema = serde_json::json!({
            "oneOf": [{"$ref": "#/definitions/Meta"}],
            "definitions": {"Meta": {"type": "object", "properties": {"t": {"const": "meta"}}}}
        });
        let err = generate(&schema.to_string()).expect_err("the name must be reported");
        assert!(format!("{err:#}").contains("<Variant>Payload"), "{err:#}");
    }
}
