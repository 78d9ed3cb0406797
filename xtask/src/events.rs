//! Event enum generation (typify + an emitted tag dispatcher).

use anyhow::Result;

/// Turns `spec/events.schema.json` into the body of `platos-events/src/generated.rs`.
pub fn generate(_schema_json: &str) -> Result<String> {
    anyhow::bail!("event codegen not written yet")
}
