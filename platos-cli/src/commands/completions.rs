//! `platos completions bash|zsh|fish`: the shell's completion script on stdout.

use std::process::ExitCode;

use clap::{Arg, ArgMatches, Command, value_parser};
use clap_complete::Shell;

use crate::fail::Result;

pub fn command() -> Command {
    Command::new("completions")
        .about("Print the completion script of a shell (bash, zsh, fish, elvish, powershell)")
        .arg(
            Arg::new("shell")
                .required(true)
                .value_parser(value_parser!(Shell)),
        )
}

pub fn run(m: &ArgMatches) -> Result<ExitCode> {
    let shell = m.get_one::<Shell>("shell").copied().unwrap_or(Shell::Bash);
    let mut cli = crate::cli();
    clap_complete::generate(shell, &mut cli, "platos", &mut std::io::stdout());
    Ok(ExitCode::SUCCESS)
}
