//! Provider keys: rotating the secret behind one.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use serde_json::json;

use super::environment::environment_of;
use super::{Check, Class, Op, S, not_found, now, ok, refuse, run};

const ROTATE_SECRET: Op = Op::new("provider_keys_rotate_secret", Class::Required);

pub(crate) async fn rotate_secret(
    State(s): S,
    Path(id): Path<String>,
    uri: Uri,
    h: HeaderMap,
    b: Bytes,
) -> Response {
    run(&s, &ROTATE_SECRET, &h, uri.path(), &b, |cx, d| {
        let mut c = Check::new(&cx.body);
        let env = c.string("environmentId");
        // The plaintext is checked and dropped: nothing here may ever show it again.
        let _plaintext = c.string("plaintext");
        c.done()?;
        let org = environment_of(d, &env, &cx.user())?;
        if d.membership(&org, &cx.user())
            .is_some_and(|m| m.role == "MEMBER")
        {
            return Err(refuse(
                403,
                "TENANCY_ENVIRONMENT_FORBIDDEN",
                "Rotating a provider key needs secret:mutate.",
            ));
        }
        let key = d
            .provider_keys
            .iter_mut()
            .find(|k| k.owner == env && k.v["providerKeyId"] == id.as_str())
            .ok_or_else(|| not_found("PROVIDERS_KEY_NOT_FOUND", "The provider key"))?;
        key.v["updatedAt"] = json!(now());
        ok(key.v.clone())
    })
}
