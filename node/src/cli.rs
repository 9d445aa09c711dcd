//! `poolgate-node` commands:
//!
//! ```text
//! poolgate-node [serve]                       run the node (default)
//! poolgate-node migrate up|status             apply / list migrations
//! poolgate-node migrate down [--to VERSION]   revert the newest migration (or all above VERSION)
//! poolgate-node token --sub NAME [--role R]... [--permission P]... [--exp MINUTES]
//! ```
//!
//! Exit codes: 0 success, 1 runtime failure, 2 bad usage or invalid configuration.

use std::process::ExitCode;

use anyhow::Context as _;

use poolgate_shared::auth::{now_unix, Claims};
use poolgate_shared::config::Config;
use poolgate_shared::telemetry;
use poolgate_store::MigrationState;

use crate::app::{open_store, Node};

const USAGE: &str = "usage:
  poolgate-node [serve]
  poolgate-node migrate up|status
  poolgate-node migrate down [--to VERSION]
  poolgate-node token --sub NAME [--role ROLE]... [--permission PERM]... [--exp MINUTES]

Configuration comes from environment variables and config.yaml (see README).";

/// Default token lifetime in minutes.
const DEFAULT_TOKEN_MINUTES: i64 = 60;

#[derive(Debug, PartialEq)]
enum Command {
    Serve,
    MigrateUp,
    MigrateDown {
        to: Option<i64>,
    },
    MigrateStatus,
    Token {
        sub: String,
        roles: Vec<String>,
        permissions: Vec<String>,
        minutes: i64,
    },
    Help,
    Version,
}

fn parse(args: &[String]) -> Result<Command, String> {
    let strs: Vec<&str> = args.iter().map(String::as_str).collect();
    match strs.as_slice() {
        [] | ["serve"] => Ok(Command::Serve),
        ["-h" | "--help" | "help"] => Ok(Command::Help),
        ["-V" | "--version" | "version"] => Ok(Command::Version),
        ["migrate", "up"] => Ok(Command::MigrateUp),
        ["migrate", "status"] => Ok(Command::MigrateStatus),
        ["migrate", "down"] => Ok(Command::MigrateDown { to: None }),
        ["migrate", "down", "--to", v] => v
            .parse()
            .map(|to| Command::MigrateDown { to: Some(to) })
            .map_err(|_| format!("--to must be a migration version number (got {v:?})")),
        ["token", rest @ ..] => {
            let (mut sub, mut roles, mut permissions, mut minutes) = (None, vec![], vec![], DEFAULT_TOKEN_MINUTES);
            let mut it = rest.iter();
            while let Some(flag) = it.next() {
                let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
                match *flag {
                    "--sub" => sub = Some(value.to_string()),
                    "--role" => roles.push(value.to_string()),
                    "--permission" => permissions.push(value.to_string()),
                    "--exp" => {
                        minutes = value
                            .parse()
                            .ok()
                            .filter(|m| (1..=525_600).contains(m))
                            .ok_or_else(|| format!("--exp must be minutes between 1 and 525600 (got {value:?})"))?
                    }
                    other => return Err(format!("unknown option {other:?}")),
                }
            }
            let sub = sub.filter(|s| !s.is_empty()).ok_or("token needs --sub NAME")?;
            Ok(Command::Token {
                sub,
                roles,
                permissions,
                minutes,
            })
        }
        _ => Err(format!("unknown command {:?}", args.join(" "))),
    }
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = match parse(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("poolgate-node: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match command {
        Command::Help => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Command::Version => {
            println!("poolgate-node {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        _ => {}
    }
    let config = match Config::from_process_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("poolgate-node: {e}");
            return ExitCode::from(2);
        }
    };
    telemetry::init_logging(&config.server.log_level);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("poolgate-node: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(command, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("poolgate-node: {e:#}");
            // A setting found unusable at start-up (e.g. POOL_AUDIT_LOG_PATH not writable).
            if e.downcast_ref::<poolgate_shared::config::ConfigError>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

async fn run(command: Command, config: Config) -> anyhow::Result<()> {
    match command {
        Command::Serve => {
            telemetry::log_config(&config);
            let node = Node::bind(config).await?;
            node.serve(poolgate_shared::shutdown::signal()).await
        }
        Command::MigrateUp => {
            let (store, _) = open_store(&config).await?;
            print_status(&store).await
        }
        Command::MigrateStatus => {
            let store = poolgate_store::Store::connect(&config.database.url, &config.database.kind)?;
            print_status(&store).await
        }
        Command::MigrateDown { to } => {
            let store = poolgate_store::Store::connect(&config.database.url, &config.database.kind)?;
            let reverted = store.migrate_down(to).await.context("migrate down failed")?;
            if reverted.is_empty() {
                println!("nothing to revert");
            }
            for v in reverted {
                println!("reverted {v}");
            }
            print_status(&store).await
        }
        Command::Token {
            sub,
            roles,
            permissions,
            minutes,
        } => {
            let (_, secret) = open_store(&config).await?;
            // Minted with the configured iss/aud, so the node accepts it.
            let key = crate::app::jwt_key(&config, &secret);
            let now = now_unix();
            let claims = Claims {
                sub,
                exp: now + minutes * 60,
                iat: Some(now),
                nbf: None,
                roles,
                permissions,
            };
            println!("{}", key.mint(&claims));
            Ok(())
        }
        Command::Help | Command::Version => Ok(()),
    }
}

async fn print_status(store: &poolgate_store::Store) -> anyhow::Result<()> {
    for m in store.migration_status().await? {
        let state = match m.state {
            MigrationState::Applied => "applied",
            MigrationState::Pending => "pending",
        };
        println!("{} {:<8} {}", m.version, state, m.description);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn commands() {
        assert_eq!(parse(&args("")), Ok(Command::Serve));
        assert_eq!(
            parse(&args("migrate down --to 20260101000003")),
            Ok(Command::MigrateDown {
                to: Some(20260101000003)
            })
        );
        assert_eq!(
            parse(&args("token --sub alice --role admin --exp 5")),
            Ok(Command::Token {
                sub: "alice".into(),
                roles: vec!["admin".into()],
                permissions: vec![],
                minutes: 5
            })
        );
        assert!(parse(&args("token --role admin")).is_err());
        assert!(parse(&args("token --sub a --exp 0")).is_err());
        assert!(parse(&args("token --sub")).is_err());
        assert!(parse(&args("migrate sideways")).is_err());
    }
}
