//! `kiln login REGISTRY` / `kiln logout REGISTRY`: save or remove credentials in
//! the docker config file (or its credential helper), as `docker login` does.

use std::io::{BufRead, IsTerminal};

use kiln_registry::auth::{Credential, CredentialSources, login};
use kiln_registry::{ClientConfig, RegistryClient};

use super::{Failure, runtime};
use crate::printer::Printer;

#[derive(Debug, clap::Args)]
pub struct LoginArgs {
    /// The registry (`ghcr.io`, `localhost:5000`; default Docker Hub)
    #[arg(default_value = "docker.io")]
    pub registry: String,
    #[arg(short, long)]
    pub username: Option<String>,
    /// The password or token (prefer --password-stdin)
    #[arg(short, long)]
    pub password: Option<String>,
    /// Read the password or token from stdin
    #[arg(long)]
    pub password_stdin: bool,
    /// A registry allowed over plain HTTP (loopback always is); repeatable
    #[arg(long = "insecure-registry", value_name = "HOST")]
    pub insecure_registries: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct LogoutArgs {
    /// The registry (default Docker Hub)
    #[arg(default_value = "docker.io")]
    pub registry: String,
}

pub fn login(args: LoginArgs, printer: &Printer) -> Result<(), Failure> {
    let username = args.username.clone().ok_or_else(|| {
        Failure::usage("kiln login needs --username")
            .with_hint("kiln login -u USER --password-stdin REGISTRY")
    })?;
    let password = match (&args.password, args.password_stdin) {
        (Some(_), true) => {
            return Err(Failure::usage(
                "--password and --password-stdin are exclusive",
            ));
        }
        (Some(p), false) => {
            printer.warn(
                "a password on the command line can be seen by other users; use --password-stdin",
            );
            p.clone()
        }
        (None, true) => {
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .map_err(|e| Failure::new(format!("reading the password from stdin: {e}")))?;
            line.trim_end_matches(['\n', '\r']).to_owned()
        }
        (None, false) => {
            if std::io::stdin().is_terminal() {
                return Err(Failure::usage("no password given").with_hint(
                    "pipe it in: echo \"$TOKEN\" | kiln login -u USER --password-stdin REGISTRY",
                ));
            }
            return Err(Failure::usage("no password given").with_hint("use --password-stdin"));
        }
    };
    let sources = CredentialSources::from_env().with_credential(
        &args.registry,
        Credential::Basic {
            username: username.clone(),
            password: password.clone(),
        },
    );
    let client = RegistryClient::new(ClientConfig {
        credentials: sources,
        insecure_registries: args.insecure_registries.clone(),
        ..Default::default()
    });
    runtime()?
        .block_on(client.check_credentials(&args.registry))
        .map_err(|e| Failure::from_error(&e).with_hint("check the user name and token"))?;
    let stored = login::store_login(
        &CredentialSources::from_env(),
        &args.registry,
        &username,
        &password,
    )
    .map_err(|e| Failure::from_error(&e))?;
    printer.info(&format!("Login Succeeded ({stored:?})"));
    Ok(())
}

pub fn logout(args: LogoutArgs, printer: &Printer) -> Result<(), Failure> {
    match login::erase_login(&CredentialSources::from_env(), &args.registry)
        .map_err(|e| Failure::from_error(&e))?
    {
        Some(_) => printer.info(&format!("Removing login credentials for {}", args.registry)),
        None => printer.info(&format!("Not logged in to {}", args.registry)),
    }
    Ok(())
}
