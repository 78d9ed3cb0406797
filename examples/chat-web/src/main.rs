//! `cargo run -p platos-chat-web`: the chat page against the embedded test
//! server, or against a real Platos when `PLATOS_URL`, `PLATOS_SECRET`,
//! `PLATOS_ENTITY_ID`, `PLATOS_ORGANIZATION_ID`, `PLATOS_PROJECT_ID`,
//! `PLATOS_ENVIRONMENT_ID` and `PLATOS_AGENT_ID` are set. `PORT` picks the
//! page's port (default 3000).

use platos_chat_web::{Settings, router};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    // Kept alive for as long as the page runs.
    let mut embedded = None;
    let settings = match var("PLATOS_URL") {
        Some(base_url) => {
            let need = |k: &str| var(k).ok_or_else(|| anyhow::anyhow!("{k} is not set"));
            Settings {
                base_url,
                secret: need("PLATOS_SECRET")?,
                entity_id: need("PLATOS_ENTITY_ID")?,
                scope: (
                    need("PLATOS_ORGANIZATION_ID")?,
                    need("PLATOS_PROJECT_ID")?,
                    need("PLATOS_ENVIRONMENT_ID")?,
                ),
                user_id: var("PLATOS_USER_ID").unwrap_or_else(|| "demo-user".into()),
                agent_id: need("PLATOS_AGENT_ID")?,
            }
        }
        None => {
            let server = platos_test_server::TestServer::start().await?;
            let settings = platos_chat_web::embedded_settings(&server);
            println!("embedded Platos test server at {}", server.base_url());
            embedded = Some(server);
            settings
        }
    };
    let port: u16 = var("PORT").and_then(|p| p.parse().ok()).unwrap_or(3000);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("chat page at http://{}/", listener.local_addr()?);
    axum::serve(listener, router(&settings)?).await?;
    drop(embedded);
    Ok(())
}
