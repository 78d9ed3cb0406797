//! `platos auth login`: writes a profile of the config file (created with
//! permissions 0600, directory 0700). The credential is read from stdin,
//! never from a flag (flags show in `ps`), and never printed.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use clap::{Arg, ArgMatches, Command};

use crate::config::{profile_name, profile_path, read_profiles};
use crate::fail::{Failure, Result};

pub fn command() -> Command {
    Command::new("login")
        .about("Save a server and credential as a profile (the credential is read from stdin)")
        .arg(
            Arg::new("kind")
                .long("kind")
                .value_name("KIND")
                .value_parser(["session-token", "operator-token", "api-key"])
                .default_value("session-token")
                .help("Which credential stdin holds"),
        )
        .arg(
            Arg::new("agent")
                .long("agent")
                .value_name("ID")
                .help("A default agent for `platos chat`"),
        )
}

pub fn run(m: &ArgMatches, profile: Option<&str>, root: &ArgMatches) -> Result<ExitCode> {
    let (name, _) = profile_name(profile);
    let path =
        profile_path().ok_or_else(|| Failure::usage("neither XDG_CONFIG_HOME nor HOME is set"))?;
    let key = match m.get_one::<String>("kind").map(String::as_str) {
        Some("operator-token") => "operator_token",
        Some("api-key") => "api_key",
        _ => "session_token",
    };
    let secret = if std::io::stdin().is_terminal() {
        eprint!("{key} (not shown as you type): ");
        let _ = std::io::stderr().flush();
        rpassword::read_password().map_err(|e| Failure::io("the terminal", e))?
    } else {
        let mut secret = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut secret)
            .map_err(|e| Failure::io("stdin", e))?;
        secret
    };
    let secret = secret.trim();
    if secret.is_empty() {
        return Err(Failure::usage(format!("no {key} on stdin")));
    }
    let mut profiles = read_profiles()?;
    let table = profiles
        .entry("profiles")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    let toml::Value::Table(table) = table else {
        return Err(Failure::usage(format!(
            "{}: `profiles` is not a table",
            path.display()
        )));
    };
    let entry = table
        .entry(name.clone())
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    let toml::Value::Table(entry) = entry else {
        return Err(Failure::usage(format!(
            "{}: profile `{name}` is not a table",
            path.display()
        )));
    };
    if let Some(url) = root.get_one::<String>("base-url") {
        entry.insert("base_url".into(), toml::Value::String(url.clone()));
    }
    if let Some(agent) = m.get_one::<String>("agent") {
        entry.insert("agent_id".into(), toml::Value::String(agent.clone()));
    }
    entry.insert(key.into(), toml::Value::String(secret.to_owned()));
    let text = toml::to_string(&profiles)
        .map_err(|e| Failure::usage(format!("writing the profile: {e}")))?;
    write_private(&path, &text)?;
    eprintln!("saved profile `{name}` ({key}) in {}", path.display());
    Ok(ExitCode::SUCCESS)
}

/// Writes `text` to `path` readable by its owner only: a temporary file made
/// 0600 before the secret is written, then renamed over the old one.
fn write_private(path: &std::path::Path, text: &str) -> Result<()> {
    let io = |e| Failure::io(&path.display().to_string(), e);
    if let Some(dir) = path.parent() {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(dir).map_err(io)?;
    }
    let tmp = path.with_extension("toml.tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&tmp).map_err(io)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(io)?;
    }
    file.write_all(text.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    Ok(())
}
