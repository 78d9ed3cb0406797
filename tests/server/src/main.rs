//! `platos-test-server --port 3100`: the in-memory Platos server for humans.

use std::time::Duration;

use clap::Parser;
use platos_test_server::TestServer;

/// A Platos-compatible in-memory server (REST + Socket.IO) for local development.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 3100)]
    port: u16,
    /// Entity secret (≥ 16 characters) for session tokens.
    #[arg(long)]
    secret: Option<String>,
    /// Api key accepted in direct mode.
    #[arg(long)]
    api_key: Option<String>,
    /// Engine.IO ping interval in milliseconds.
    #[arg(long, default_value_t = 25_000)]
    ping_interval_ms: u64,
    /// Engine.IO ping timeout in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    ping_timeout_ms: u64,
    /// Pause between scripted agent events in milliseconds.
    #[arg(long, default_value_t = 30)]
    event_delay_ms: u64,
    /// Start without seed data.
    #[arg(long)]
    no_seed: bool,
    /// Emit `server.deprecation` on the shared namespace.
    #[arg(long)]
    deprecation: bool,
    /// Answer job dispatches `{accepted:false}`, like a server without a job runtime.
    #[arg(long)]
    no_job_runtime: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut b = TestServer::builder()
        .port(args.port)
        .ping_interval(Duration::from_millis(args.ping_interval_ms))
        .ping_timeout(Duration::from_millis(args.ping_timeout_ms))
        .event_delay(Duration::from_millis(args.event_delay_ms))
        .seed(!args.no_seed)
        .deprecation(args.deprecation)
        .job_runtime(!args.no_job_runtime);
    if let Some(s) = args.secret {
        b = b.secret(s);
    }
    if let Some(k) = args.api_key {
        b = b.api_key(k);
    }
    let server = b.start().await?;
    let scope = server.scope();
    println!("Platos test server listening on {}", server.base_url());
    println!("  REST prefix    {}/api/v1/agent", server.base_url());
    println!(
        "  Socket.IO      {} (namespace {})",
        server.socket_url(),
        server.namespace()
    );
    println!(
        "  scope          organizationId={} projectId={} environmentId={}",
        scope.organization_id, scope.project_id, scope.environment_id
    );
    println!("  user           {}", server.user_id());
    println!("  entity         {}", server.entity_id());
    // This is a local development server: printing its throwaway credentials is the point.
    println!("  secret         {}", server.secret());
    println!("  api key        {}", server.api_key());
    println!("  session token  {} (end user)", server.session_token());
    println!(
        "  operator token {} (agents, budgets, jobs, dashboards)",
        server.operator_token()
    );
    tokio::signal::ctrl_c().await?;
    server.shutdown().await;
    Ok(())
}
