//! The one table of REST routes: every route is added here with its method, so
//! the router and the server's own route listing (`GET /api/v1/agent/openapi.json`,
//! what `cargo xtask spec-diff` compares with `spec/`) come from the same calls
//! and cannot drift apart.

use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::handler::Handler;
use axum::routing::{MethodFilter, on};
use serde_json::{Map, Value, json};

use crate::Shared;

/// A router under construction, and what it serves: `(method, path)`.
pub(crate) struct Routes {
    prefix: &'static str,
    router: Router<Arc<Shared>>,
    served: Vec<(&'static str, String)>,
}

impl Routes {
    /// Routes whose paths all start with `prefix` (`""` for none).
    pub(crate) fn new(prefix: &'static str) -> Self {
        Routes {
            prefix,
            router: Router::new(),
            served: Vec::new(),
        }
    }

    fn add<H, T>(mut self, method: &'static str, filter: MethodFilter, path: &str, h: H) -> Self
    where
        H: Handler<T, Arc<Shared>>,
        T: 'static,
    {
        let full = format!("{}{path}", self.prefix);
        self.router = self.router.route(&full, on(filter, h));
        self.served.push((method, full));
        self
    }

    pub(crate) fn get<H: Handler<T, Arc<Shared>>, T: 'static>(self, path: &str, h: H) -> Self {
        self.add("get", MethodFilter::GET, path, h)
    }

    pub(crate) fn post<H: Handler<T, Arc<Shared>>, T: 'static>(self, path: &str, h: H) -> Self {
        self.add("post", MethodFilter::POST, path, h)
    }

    pub(crate) fn put<H: Handler<T, Arc<Shared>>, T: 'static>(self, path: &str, h: H) -> Self {
        self.add("put", MethodFilter::PUT, path, h)
    }

    pub(crate) fn patch<H: Handler<T, Arc<Shared>>, T: 'static>(self, path: &str, h: H) -> Self {
        self.add("patch", MethodFilter::PATCH, path, h)
    }

    pub(crate) fn delete<H: Handler<T, Arc<Shared>>, T: 'static>(self, path: &str, h: H) -> Self {
        self.add("delete", MethodFilter::DELETE, path, h)
    }

    /// Adds another table's routes (and their listing) to this one.
    pub(crate) fn merge(mut self, other: Routes) -> Self {
        self.router = self.router.merge(other.router);
        self.served.extend(other.served);
        self
    }

    /// The router, with `GET /api/v1/agent/openapi.json` answering the listing of
    /// every route in it (itself included).
    pub(crate) fn with_listing(mut self) -> Router<Arc<Shared>> {
        let listing: Arc<OnceLock<Value>> = Arc::new(OnceLock::new());
        let doc = listing.clone();
        self.prefix = "";
        let routes = self.get("/api/v1/agent/openapi.json", move || {
            let doc = doc.clone();
            async move { axum::Json(doc.get().cloned().unwrap_or(Value::Null)) }
        });
        let _ = listing.set(openapi(&routes.served));
        routes.router
    }
}

/// An OpenAPI 3.1 document naming every route (no schemas: the routes are the
/// facts), marked `x-platos-inventory: test-server`.
fn openapi(served: &[(&'static str, String)]) -> Value {
    let mut paths: Map<String, Value> = Map::new();
    for (method, path) in served {
        let item = paths
            .entry(path.clone())
            .or_insert_with(|| Value::Object(Map::new()));
        item[*method] = json!({
            "x-platos-schema-source": "undeclared",
            "responses": {"default": {"description": "See the test server's crate docs."}}
        });
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "platos-test-server routes",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Every REST route the embedded Platos test server answers, listed from the table that builds its router."
        },
        "x-platos-inventory": "test-server",
        "paths": paths
    })
}
