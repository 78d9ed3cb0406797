//! REST client generation (progenitor). Owned by the spec/codegen work.

use anyhow::Result;

/// Turns `spec/openapi.yaml` into the body of `platos-client/src/generated/mod.rs`.
pub fn generate(_openapi_yaml: &str) -> Result<String> {
    anyhow::bail!("REST codegen not written yet")
}
