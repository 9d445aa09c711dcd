//! A bounded, seeded fuzz harness for what clients send (issue 16 item 2: "no panic reachable
//! from input"). Stable Rust only: every target runs a fixed number of cases generated from a
//! fixed seed (mutations of a small inline corpus mixed with random generation), so a failure
//! reproduces and the whole harness stays within seconds. `POOLGATE_FUZZ_CASES` sets the count
//! (a number of cases per target, or `x<factor>` to scale each target's default) and
//! `POOLGATE_FUZZ_SEED` the seed (decimal or `0x…`); each target prints its seed, case count and
//! rate to stderr.
//!
//! Targets:
//! - `fuzz_session_ids`: [`SessionCodec::decode`] on mutated valid ids (string and raw-byte
//!   mutations) and random strings: never panics, never accepts anything but an id it issued
//!   (AES-GCM authenticates). The valid ids carry a random nonce, so only those bytes differ
//!   between runs; a failure prints the exact id.
//! - `fuzz_pool_config_patches`: random `PoolConfigPatch` bodies through the admin API's own
//!   parsing (`http::json::parse`, and bulk-update's `split_object` + `from_value`) and
//!   `PoolConfig::apply`: never panics, refusals are 400/422, and every accepted patch yields a
//!   configuration that validates again (as the store re-validates rows it reads back).
//! - `fuzz_admin_pool_config_over_http`: the same bodies PUT to a node (`/pool/config`,
//!   `/bulk-update`): 200/4xx JSON only, and what was accepted is what the node serves back.
//! - `fuzz_mcp_endpoint`: a node with a pooled shared-isolation server and a sessionless (2026)
//!   one; fuzzed JSON-RPC (session era and 2026-07-28, `_meta` and routing headers included),
//!   random bytes and content types, with and without valid or mutated `Mcp-Session-Id`s: no 5xx
//!   but 502/503, every answer a JSON-RPC object, and afterwards no lease left held and normal
//!   calls still served on both servers.

use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use futures_util::StreamExt as _;
use poolgate_node::http::json::{from_value, parse, split_object};
use poolgate_node::session_id::{ClientSession, SessionCodec, SessionMode, MAX_ID_LEN};
use poolgate_shared::domain::pool::{
    Isolation, PoolConfig, PoolConfigPatch, Strategy, MAX_POOL_SIZE, MAX_SESSION_CAPACITY, MAX_TIMEOUT_SECONDS,
    MAX_TTL_SECONDS, PATCH_FIELDS,
};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};
use serde_json::{json, Map, Value};

use crate::helpers::{Backend, TestApp};
use crate::mcp_client::{register, stateless_upstream, upstream, Client};
use poolgate_loadtests::upstream::UpstreamConfig;

// ---------------------------------------------------------------------------
// The harness: a seeded PRNG, the case budget, mutations
// ---------------------------------------------------------------------------

/// xorshift64*: a few lines, deterministic from its seed.
pub(crate) struct Rng(u64);

impl Rng {
    /// Seeded through splitmix64, so neighbouring seeds give unrelated streams.
    pub(crate) fn new(seed: u64) -> Rng {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Rng((z ^ (z >> 31)) | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `0..n` (0 when `n` is 0).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
    fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }
    fn pick<'a, T>(&mut self, from: &'a [T]) -> &'a T {
        &from[self.below(from.len())]
    }
    fn text<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len())]
    }
}

fn env_cases(default: usize) -> usize {
    match std::env::var("POOLGATE_FUZZ_CASES") {
        Ok(v) => match v.strip_prefix('x') {
            Some(f) => (default as f64 * f.parse::<f64>().unwrap_or(1.0)) as usize,
            None => v.parse().unwrap_or(default),
        },
        Err(_) => default,
    }
}

fn env_seed(default: u64) -> u64 {
    std::env::var("POOLGATE_FUZZ_SEED")
        .ok()
        .and_then(|v| match v.strip_prefix("0x") {
            Some(h) => u64::from_str_radix(h, 16).ok(),
            None => v.parse().ok(),
        })
        .unwrap_or(default)
}

fn report(target: &str, seed: u64, cases: usize, started: Instant, extra: &str) {
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "fuzz {target}: seed {seed:#x}, {cases} cases{extra}, {:.0} cases/s ({secs:.2} s)",
        cases as f64 / secs.max(1e-9)
    );
}

/// Texts worth inserting: separators, control and multi-byte characters, JSON structure, numbers
/// no integer type holds.
const INTERESTING: &[&str] = &[
    "\0",
    "\u{7f}",
    "\t",
    "\r\n",
    "\u{e9}",
    "\u{feff}",
    "\u{202e}",
    "\u{1d11e}",
    "\\u0000",
    "\\ud800",
    "\\",
    "=",
    "+",
    "/",
    ".",
    "{",
    "}",
    "[",
    "]",
    "\"",
    ",",
    ":",
    "null",
    "1e999",
    "-1e999",
    "99999999999999999999999",
    "-9223372036854775809",
    "18446744073709551616",
    "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
];

fn range(rng: &mut Rng, len: usize) -> (usize, usize) {
    let a = rng.below(len);
    (a, a + 1 + rng.below(len - a))
}

/// One byte-level change: bit flip, truncation, splice with another input, duplicated or
/// deleted run, inserted interesting text or random byte.
fn mutate_bytes(rng: &mut Rng, input: &mut Vec<u8>, others: &[&[u8]]) {
    let len = input.len();
    match rng.below(8) {
        0 if len > 0 => {
            let i = rng.below(len);
            input[i] ^= 1 << rng.below(8);
        }
        1 => input.truncate(rng.below(len + 1)),
        2 if !others.is_empty() => {
            let other = *rng.pick(others);
            input.truncate(rng.below(len + 1));
            input.extend_from_slice(&other[rng.below(other.len() + 1)..]);
        }
        3 if len > 0 => {
            let (a, b) = range(rng, len);
            let copy = input[a..b].to_vec();
            let at = rng.below(len + 1);
            input.splice(at..at, copy);
        }
        4 if len > 0 => {
            let (a, b) = range(rng, len);
            input.drain(a..b);
        }
        5 | 6 => {
            let at = rng.below(len + 1);
            let what = rng.pick(INTERESTING).as_bytes().to_vec();
            input.splice(at..at, what);
        }
        _ => {
            let at = rng.below(len + 1);
            input.insert(at, rng.next() as u8);
        }
    }
}

fn nested(depth: usize) -> Value {
    let mut v = json!(1);
    for i in 0..depth {
        v = if i % 2 == 0 { json!([v]) } else { json!({ "a": v }) };
    }
    v
}

/// A value of any JSON type, favouring edges: integer extremes, floats, empty and odd strings,
/// empty and nested containers.
fn interesting_value(rng: &mut Rng) -> Value {
    match rng.below(22) {
        0 => Value::Null,
        1 => json!(rng.one_in(2)),
        2 => json!(i64::MAX),
        3 => json!(i64::MIN),
        4 => json!(u64::MAX),
        5 => json!(-1),
        6 => json!(0),
        7 => json!(1.5),
        8 => json!(1e300),
        9 => json!(-0.0),
        10 => json!(""),
        11 => json!("\u{0}\u{202e}\u{e9}\u{1d11e}"),
        12 => json!([]),
        13 => json!({}),
        14 => nested(1 + rng.below(140)),
        15 => json!(["a", 1, null, {"b": []}]),
        16 => json!("x".repeat(rng.below(5000))),
        17 => json!(rng.below(100)),
        18 => json!(*rng.pick(&["echo", "tools/call", "initialize", "2026-07-28", "2025-06-18", "pg:1"])),
        19 => json!({"_meta": {"progressToken": interesting_scalar(rng)}}),
        _ => json!(rng.next() as i64),
    }
}

fn interesting_scalar(rng: &mut Rng) -> Value {
    match rng.below(6) {
        0 => Value::Null,
        1 => json!(i64::MIN),
        2 => json!(1.25),
        3 => json!("t\u{0}"),
        4 => json!([1]),
        _ => json!(rng.below(10)),
    }
}

/// One structural change somewhere inside `v`: a value replaced (null/array/object/number/string
/// swaps), a key removed or added, a level of nesting added.
fn mutate_json(rng: &mut Rng, v: &mut Value, keys: &[&str]) {
    match v {
        Value::Object(m) if !m.is_empty() && !rng.one_in(5) => {
            let key = m.keys().nth(rng.below(m.len())).cloned().unwrap_or_default();
            match rng.below(5) {
                0 => {
                    m.remove(&key);
                }
                1 => {
                    m.insert(key, interesting_value(rng));
                }
                2 => {
                    let inner = m.remove(&key).unwrap_or_default();
                    let wrapped = if rng.one_in(2) {
                        json!([inner])
                    } else {
                        json!({ "v": inner })
                    };
                    m.insert(key, wrapped);
                }
                _ => {
                    if let Some(inner) = m.get_mut(&key) {
                        mutate_json(rng, inner, keys);
                    }
                }
            }
        }
        Value::Array(a) if !a.is_empty() && !rng.one_in(5) => {
            let i = rng.below(a.len());
            match rng.below(4) {
                0 => {
                    a.remove(i);
                }
                1 => a[i] = interesting_value(rng),
                2 => {
                    let copy = a[i].clone();
                    a.push(copy);
                }
                _ => mutate_json(rng, &mut a[i], keys),
            }
        }
        Value::Object(m) => {
            let key = if keys.is_empty() || rng.one_in(6) {
                "\u{e9}x".to_owned()
            } else {
                (*rng.pick(keys)).to_owned()
            };
            m.insert(key, interesting_value(rng));
        }
        _ => *v = interesting_value(rng),
    }
}

// ---------------------------------------------------------------------------
// 2. client session ids
// ---------------------------------------------------------------------------

const SECRET: &[u8] = b"fuzz-session-secret-fuzz-session-secret!";
const FORMER: &[u8] = b"former-session-secret-former-session-sec";

fn session_seeds() -> Vec<ClientSession> {
    let base = ClientSession {
        sub: "alice".into(),
        srv: "s1".into(),
        key: "alice:s1:0123456789abcdef".into(),
        url: "http://127.0.0.1:1/mcp".into(),
        sid: Some("upstream-session".into()),
        pv: "2025-11-25".into(),
        cv: "2025-06-18".into(),
        mode: SessionMode::Bound,
        iat: 1_700_000_000,
    };
    vec![
        base.clone(),
        ClientSession {
            sub: "\u{e9}\u{202e}\u{1d11e}".into(),
            sid: None,
            mode: SessionMode::Shared,
            iat: i64::MIN,
            ..base.clone()
        },
        ClientSession {
            sub: "b".into(),
            key: String::new(),
            url: format!("http://example.com/{}", "p".repeat(900)),
            mode: SessionMode::Direct,
            iat: i64::MAX,
            ..base
        },
    ]
}

const B64_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn mutate_id(rng: &mut Rng, id: &str, ids: &[String]) -> String {
    match rng.below(6) {
        0 if !id.is_empty() => {
            // One character swapped for another of the alphabet (or a standard-base64 one).
            let mut b = id.as_bytes().to_vec();
            let i = rng.below(b.len());
            b[i] = if rng.one_in(8) {
                *rng.pick(b"+/=")
            } else {
                *rng.pick(B64_ALPHABET)
            };
            String::from_utf8_lossy(&b).into_owned()
        }
        1 => {
            // Raw bytes changed (version, nonce, ciphertext or tag), then re-encoded.
            let mut raw = B64.decode(id).unwrap_or_default();
            if !raw.is_empty() && rng.one_in(2) {
                let anywhere = rng.below(raw.len());
                let i = *rng.pick(&[0, 1, 12, 13, raw.len() - 1, anywhere]);
                let i = i.min(raw.len() - 1);
                raw[i] ^= 1 << rng.below(8);
            } else {
                mutate_bytes(rng, &mut raw, &[]);
            }
            B64.encode(raw)
        }
        2 => {
            // Grown around the length bound.
            let target = *rng.pick(&[MAX_ID_LEN - 1, MAX_ID_LEN, MAX_ID_LEN + 1, 3 * MAX_ID_LEN]);
            let mut s = id.to_owned();
            while s.len() < target {
                s.push(*rng.pick(B64_ALPHABET) as char);
            }
            s.truncate(target);
            s
        }
        3 => {
            // Random: alphabet soup, or a well-formed envelope of random bytes.
            if rng.one_in(2) {
                (0..rng.below(200)).map(|_| *rng.pick(B64_ALPHABET) as char).collect()
            } else {
                let mut raw: Vec<u8> = (0..29 + rng.below(200)).map(|_| rng.next() as u8).collect();
                raw[0] = 1;
                B64.encode(raw)
            }
        }
        _ => {
            let mut b = id.as_bytes().to_vec();
            let others: Vec<&[u8]> = ids.iter().map(|s| s.as_bytes()).collect();
            for _ in 0..1 + rng.below(3) {
                mutate_bytes(rng, &mut b, &others);
            }
            String::from_utf8_lossy(&b).into_owned()
        }
    }
}

#[test]
fn fuzz_session_ids() {
    let seed = env_seed(0x5E55_F022);
    let cases = env_cases(6_000);
    let mut rng = Rng::new(seed);
    let old = SessionCodec::new(FORMER, &[]);
    let codec = SessionCodec::new(SECRET, &[FORMER]);
    let stranger = SessionCodec::new(b"someone-else-someone-else-someone-else!!", &[]);
    let sessions = session_seeds();
    // Ids issued by the current key and by the former one (still accepted).
    let mut valid: Vec<(String, ClientSession)> = Vec::new();
    for s in &sessions {
        valid.push((codec.encode(s).expect("encode"), s.clone()));
        valid.push((old.encode(s).expect("encode"), s.clone()));
    }
    let ids: Vec<String> = valid.iter().map(|(id, _)| id.clone()).collect();
    for (id, s) in &valid {
        assert_eq!(codec.decode(id).as_ref(), Some(s), "corpus id refused");
        assert_eq!(stranger.decode(id), None, "a foreign key decoded an id");
    }
    let started = Instant::now();
    let mut unchanged = 0;
    for case in 0..cases {
        let (id, _) = rng.pick(&valid);
        let mut m = id.clone();
        for _ in 0..1 + rng.below(2) {
            m = mutate_id(&mut rng, &m, &ids);
        }
        let got = codec.decode(&m);
        match valid.iter().find(|(v, _)| *v == m) {
            Some((_, s)) => {
                unchanged += 1;
                assert_eq!(got.as_ref(), Some(s), "case {case}: a valid id stopped decoding");
            }
            None => assert_eq!(
                got, None,
                "case {case} (seed {seed:#x}): a changed id decoded: {m:?} (from {id:?})"
            ),
        }
        assert_eq!(stranger.decode(&m), None, "case {case}: foreign key decoded {m:?}");
    }
    report(
        "session ids",
        seed,
        cases,
        started,
        &format!(" ({unchanged} mutated back to a valid id)"),
    );
}

// ---------------------------------------------------------------------------
// 4. pool configuration patches
// ---------------------------------------------------------------------------

/// The corpus: bodies the admin API accepts.
const PATCH_SEEDS: &[&str] = &[
    r#"{"pool_max_size": 20}"#,
    r#"{"pool_enabled": true, "pool_strategy": "sticky", "pool_min_size": 2, "pool_max_size": 5}"#,
    r#"{"strategy": "least_connections", "isolation": "shared", "session_capacity": 4}"#,
    r#"{"pool_timeout": 3600, "pool_recycle_seconds": 2592000, "pool_lease_ttl": 1, "pool_idle_ttl": 60}"#,
    r#"{"enabled": false, "pre_ping": false, "auto_optimize": true, "min_size": 0}"#,
    r#"{"pool_isolation": "session", "pool_strategy": "weighted", "max_size": 10000, "timeout": 1}"#,
    r#"{"server_ids": ["cfg"], "pool_strategy": "none", "pool_session_capacity": 1000}"#,
];

/// A value for a patch field: mostly of the right type, at and around its bounds; sometimes of
/// any type.
fn patch_value(rng: &mut Rng, field: &str) -> Value {
    if rng.one_in(4) {
        return interesting_value(rng);
    }
    let name = field.trim_start_matches("pool_");
    match name {
        "enabled" | "pre_ping" | "auto_optimize" => json!(rng.one_in(2)),
        "strategy" => json!(*rng.pick(&[
            "round_robin",
            "least_connections",
            "sticky",
            "weighted",
            "none",
            "Sticky",
            "sticky ",
            "",
            "\u{0}"
        ])),
        "isolation" => json!(*rng.pick(&["session", "shared", "SHARED", "none", ""])),
        _ => {
            let max = match name {
                "min_size" | "max_size" => MAX_POOL_SIZE,
                "timeout" => MAX_TIMEOUT_SECONDS,
                "session_capacity" => MAX_SESSION_CAPACITY,
                _ => MAX_TTL_SECONDS,
            };
            match rng.below(8) {
                0 => json!(-1),
                1 => json!(0),
                2 => json!(1),
                3 => json!(max),
                4 => json!(max + 1),
                5 => json!(*rng.pick(&[i64::MIN, i64::MAX, i64::from(u32::MAX), i64::from(u32::MAX) + 1])),
                6 => json!(*rng.pick(&[1.0, 2.5, -0.0, 1e10])),
                _ => json!(rng.below(max as usize + 1)),
            }
        }
    }
}

/// A body: a random object of patch fields (a few unknown keys too), or a mutated seed, or
/// either as text with byte-level damage.
fn patch_body(rng: &mut Rng) -> Vec<u8> {
    let mut value = if rng.one_in(2) {
        let mut m = Map::new();
        for _ in 0..rng.below(6) {
            let key = if rng.one_in(12) {
                (*rng.pick(&["server_ids", "pool_max", "MAX_SIZE", "", "name"])).to_owned()
            } else {
                (*rng.pick(PATCH_FIELDS)).to_owned()
            };
            let v = if key == "server_ids" {
                json!(["cfg"])
            } else {
                patch_value(rng, &key)
            };
            m.insert(key, v);
        }
        Value::Object(m)
    } else {
        let mut v: Value = serde_json::from_str(rng.text(PATCH_SEEDS)).unwrap_or_default();
        for _ in 0..rng.below(3) {
            mutate_json(rng, &mut v, PATCH_FIELDS);
        }
        v
    };
    if rng.one_in(20) {
        value = interesting_value(rng);
    }
    let mut text = serde_json::to_vec(&value).unwrap_or_default();
    if rng.one_in(8) {
        // A field sent twice (as its name and its alias, or twice by one name).
        let field = *rng.pick(PATCH_FIELDS);
        let dup = format!("\"{field}\":{},", patch_value(rng, field));
        if text.first() == Some(&b'{') {
            text.splice(1..1, dup.into_bytes());
            if text.ends_with(b",}") {
                let n = text.len();
                text.remove(n - 2);
            }
        }
    }
    if rng.one_in(5) {
        let seeds: Vec<&[u8]> = PATCH_SEEDS.iter().map(|s| s.as_bytes()).collect();
        for _ in 0..1 + rng.below(3) {
            mutate_bytes(rng, &mut text, &seeds);
        }
    }
    text
}

/// Every rule SPEC §2 sets on a stored configuration, checked field by field.
fn assert_valid(cfg: &PoolConfig, what: &str) {
    let within = |v: u32, lo: i64, hi: i64| (lo..=hi).contains(&i64::from(v));
    assert!(within(cfg.pool_min_size, 0, MAX_POOL_SIZE), "{what}: {cfg:?}");
    assert!(within(cfg.pool_max_size, 1, MAX_POOL_SIZE), "{what}: {cfg:?}");
    assert!(cfg.pool_min_size <= cfg.pool_max_size, "{what}: {cfg:?}");
    assert!(within(cfg.pool_timeout, 1, MAX_TIMEOUT_SECONDS), "{what}: {cfg:?}");
    assert!(
        within(cfg.pool_session_capacity, 1, MAX_SESSION_CAPACITY),
        "{what}: {cfg:?}"
    );
    for ttl in [cfg.pool_recycle_seconds, cfg.pool_lease_ttl, cfg.pool_idle_ttl] {
        assert!(within(ttl, 1, MAX_TTL_SECONDS), "{what}: {cfg:?}");
    }
    // As the store validates a row it reads back.
    assert_eq!(
        PoolConfig::default().apply(&cfg.to_patch()).as_ref(),
        Ok(cfg),
        "{what}: read back"
    );
}

/// An accepted patch changed exactly the fields it set, to exactly the values it sent.
fn assert_applied(base: &PoolConfig, patch: &PoolConfigPatch, cfg: &PoolConfig, what: &str) {
    fn num<T: Into<i64>>(sent: Option<i64>, before: T, after: T, field: &str, what: &str) {
        let (before, after) = (before.into(), after.into());
        assert_eq!(after, sent.unwrap_or(before), "{what}: {field}");
    }
    num(patch.pool_min_size, base.pool_min_size, cfg.pool_min_size, "min", what);
    num(patch.pool_max_size, base.pool_max_size, cfg.pool_max_size, "max", what);
    num(patch.pool_timeout, base.pool_timeout, cfg.pool_timeout, "timeout", what);
    num(
        patch.pool_recycle_seconds,
        base.pool_recycle_seconds,
        cfg.pool_recycle_seconds,
        "recycle",
        what,
    );
    num(
        patch.pool_session_capacity,
        base.pool_session_capacity,
        cfg.pool_session_capacity,
        "capacity",
        what,
    );
    num(
        patch.pool_lease_ttl,
        base.pool_lease_ttl,
        cfg.pool_lease_ttl,
        "lease",
        what,
    );
    num(patch.pool_idle_ttl, base.pool_idle_ttl, cfg.pool_idle_ttl, "idle", what);
    assert_eq!(
        cfg.pool_enabled,
        patch.pool_enabled.unwrap_or(base.pool_enabled),
        "{what}"
    );
    assert_eq!(
        cfg.pool_pre_ping,
        patch.pool_pre_ping.unwrap_or(base.pool_pre_ping),
        "{what}"
    );
    assert_eq!(
        cfg.pool_auto_optimize,
        patch.pool_auto_optimize.unwrap_or(base.pool_auto_optimize),
        "{what}"
    );
    let strategy = patch.pool_strategy.as_deref().map(|s| s.parse::<Strategy>());
    assert_eq!(
        Some(cfg.pool_strategy),
        strategy.map_or(Some(base.pool_strategy), Result::ok),
        "{what}"
    );
    let isolation = patch.pool_isolation.as_deref().map(|s| s.parse::<Isolation>());
    assert_eq!(
        Some(cfg.pool_isolation),
        isolation.map_or(Some(base.pool_isolation), Result::ok),
        "{what}"
    );
}

/// A patch as `put_config` and `bulk_update` treat it after parsing.
fn check_patch(base: &PoolConfig, patch: &PoolConfigPatch, what: &str) -> bool {
    if patch.is_empty() {
        return false; // refused by the API: "must set at least one pool field"
    }
    match base.apply(patch) {
        Ok(cfg) => {
            assert_valid(&cfg, what);
            assert_applied(base, patch, &cfg, what);
            true
        }
        Err(e) => {
            assert!(
                PATCH_FIELDS.contains(&e.field.as_str()) && e.field.starts_with("pool_"),
                "{what}: refusal names {:?}",
                e.field
            );
            false
        }
    }
}

#[test]
fn fuzz_pool_config_patches() {
    let seed = env_seed(0x9A7C_F022);
    let cases = env_cases(20_000);
    let mut rng = Rng::new(seed);
    // Bases: the defaults and what each seed makes of them.
    let mut bases = vec![PoolConfig::default()];
    for s in PATCH_SEEDS {
        let mut m: Map<String, Value> = serde_json::from_str(s).expect("seed");
        m.remove("server_ids");
        let patch: PoolConfigPatch = serde_json::from_value(Value::Object(m)).expect("seed patch");
        bases.push(PoolConfig::default().apply(&patch).expect("seed applies"));
    }
    let started = Instant::now();
    let (mut accepted, mut refused) = (0usize, 0usize);
    for case in 0..cases {
        let body = patch_body(&mut rng);
        let base = *rng.pick(&bases);
        let what = format!("case {case} (seed {seed:#x}) body {:?}", String::from_utf8_lossy(&body));
        // PUT /api/servers/{id}/pool/config
        match parse::<PoolConfigPatch>(&body) {
            Ok(patch) => {
                if check_patch(&base, &patch, &what) {
                    accepted += 1;
                } else {
                    refused += 1;
                }
            }
            Err(e) => {
                refused += 1;
                assert!(
                    matches!(e.status.as_u16(), 400 | 422),
                    "{what}: answered {} {}",
                    e.status,
                    e.message
                );
            }
        }
        // PUT /api/servers/bulk-update: the pool keys split off the body.
        if let Ok(map) = parse::<Map<String, Value>>(&body) {
            let (_rest, pool) = split_object(map, PATCH_FIELDS);
            match from_value::<PoolConfigPatch>(pool) {
                Ok(patch) => {
                    check_patch(&base, &patch, &what);
                }
                Err(e) => assert_eq!(e.status.as_u16(), 422, "{what}: {}", e.message),
            }
        }
    }
    report(
        "pool config patches",
        seed,
        cases,
        started,
        &format!(" ({accepted} accepted, {refused} refused)"),
    );
}

#[tokio::test]
async fn fuzz_admin_pool_config_over_http() {
    let seed = env_seed(0xAD31_F022);
    let cases = env_cases(150);
    let mut rng = Rng::new(seed);
    let app = TestApp::spawn(Backend::Sqlite).await;
    app.create_server("cfg", json!({})).await;
    let token = app.admin_token();
    let http = reqwest::Client::new();
    let started = Instant::now();
    let mut last_accepted: Option<PoolConfig> = None;
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for case in 0..cases {
        let body = patch_body(&mut rng);
        let bulk = rng.one_in(4);
        let path = if bulk {
            "/api/servers/bulk-update"
        } else {
            "/api/servers/cfg/pool/config"
        };
        let content_type = if rng.one_in(10) {
            *rng.pick(&[
                "text/plain",
                "application/json; charset=utf-8",
                "application/problem+json",
                "",
            ])
        } else {
            "application/json"
        };
        let resp = http
            .put(app.url(path))
            .bearer_auth(&token)
            .header("content-type", content_type)
            .body(body.clone())
            .send()
            .await
            .expect("sent");
        let status = resp.status();
        *statuses.entry(status.as_u16()).or_default() += 1;
        let text = resp.text().await.expect("body");
        let what = format!(
            "case {case} (seed {seed:#x}) PUT {path} {content_type:?} {:?} -> {status} {text}",
            String::from_utf8_lossy(&body)
        );
        let answer: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{what}: not JSON ({e})"));
        match status.as_u16() {
            200 if bulk => {
                assert!(answer["updated"].is_u64(), "{what}");
            }
            200 => {
                let cfg: PoolConfig = serde_json::from_value(answer.clone()).unwrap_or_else(|e| panic!("{what}: {e}"));
                assert_valid(&cfg, &what);
                last_accepted = Some(cfg);
            }
            400 | 413 | 415 | 422 => {
                assert!(answer["error"]["message"].is_string(), "{what}");
            }
            _ => panic!("{what}: unexpected status"),
        }
        if bulk && status == StatusCode::OK {
            last_accepted = None; // checked below through GET instead
        }
    }
    let (status, served) = app.admin(Method::GET, "/api/servers/cfg/pool/config", None).await;
    assert_eq!(status, StatusCode::OK, "{served}");
    let served: PoolConfig = serde_json::from_value(served).expect("a configuration");
    assert_valid(&served, "served after the fuzz loop");
    if let Some(cfg) = last_accepted {
        assert_eq!(served, cfg, "the node serves the last accepted configuration");
    }
    report(
        "admin pool config (HTTP)",
        seed,
        cases,
        started,
        &format!(" (statuses {statuses:?})"),
    );
    app.stop().await;
}

// ---------------------------------------------------------------------------
// 5. the MCP endpoint over HTTP
// ---------------------------------------------------------------------------

const V2026: &str = "2026-07-28";
const META_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
const META_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";

/// The corpus: session-era messages (requests, notifications, a client's answer, a batch).
const MCP_SEEDS: &[&str] = &[
    r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"f","version":"1"}}}"#,
    r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"},"_meta":{"progressToken":7}}}"#,
    r#"{"jsonrpc":"2.0","id":"three","method":"tools/list","params":{}}"#,
    r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":2,"reason":"fuzz"}}"#,
    r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    r#"{"jsonrpc":"2.0","id":4,"method":"ping"}"#,
    r#"{"jsonrpc":"2.0","id":"srv-1","result":{}}"#,
    r#"[{"jsonrpc":"2.0","id":5,"method":"tools/list"},{"jsonrpc":"2.0","method":"notifications/initialized"}]"#,
    r#"{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"add","arguments":{"a":1e308,"b":1e308}}}"#,
    r#"{"jsonrpc":"2.0","id":7,"method":"resources/read","params":{"uri":"file:///x"}}"#,
];

/// The corpus: 2026-07-28 messages (their `_meta` and routing headers are added).
const MODERN_SEEDS: &[&str] = &[
    r#"{"jsonrpc":"2.0","id":1,"method":"server/discover","params":{}}"#,
    r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"}}}"#,
    r#"{"jsonrpc":"2.0","id":3,"method":"tools/list","params":{"cursor":"x"}}"#,
    r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":2}}"#,
    r#"{"jsonrpc":"2.0","id":4,"method":"prompts/get","params":{"name":"p"}}"#,
    r#"{"jsonrpc":"2.0","id":5,"method":"resources/read","params":{"uri":"file:///x"}}"#,
    r#"{"jsonrpc":"2.0","id":6,"method":"subscriptions/listen","params":{}}"#,
    r#"{"jsonrpc":"2.0","id":7,"method":"initialize","params":{}}"#,
];

/// Keys a JSON mutation may add to a message.
const MCP_KEYS: &[&str] = &[
    "jsonrpc",
    "id",
    "method",
    "params",
    "result",
    "error",
    "_meta",
    "requestId",
    "progressToken",
    "name",
    "uri",
    "arguments",
    "protocolVersion",
    META_VERSION,
    META_CAPABILITIES,
];

const CONTENT_TYPES: &[&str] = &[
    "application/json",
    "application/json; charset=utf-8",
    "APPLICATION/JSON",
    "application/vnd.mcp+json",
    "text/plain",
    "",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "application/json;;;",
    "json",
];

/// One request to send.
struct HttpCase {
    /// 0: the shared-isolation server, 1: the sessionless one.
    server: usize,
    method: Method,
    headers: Vec<(&'static str, Vec<u8>)>,
    body: Vec<u8>,
}

impl HttpCase {
    fn describe(&self) -> String {
        let headers: Vec<String> = self
            .headers
            .iter()
            .map(|(k, v)| format!("{k}: {:?}", String::from_utf8_lossy(v)))
            .collect();
        format!(
            "{} server {} headers [{}] body {:?}",
            self.method,
            self.server,
            headers.join(", "),
            String::from_utf8_lossy(&self.body)
        )
    }
}

/// A session-era message: a mutated seed (ids of every type, swapped params, nesting).
fn session_message(rng: &mut Rng) -> Value {
    let mut v: Value = serde_json::from_str(rng.text(MCP_SEEDS)).unwrap_or_default();
    if let Some(obj) = v.as_object_mut().filter(|_| rng.one_in(3)) {
        obj.insert("id".into(), interesting_value(rng));
    }
    for _ in 0..rng.below(4) {
        mutate_json(rng, &mut v, MCP_KEYS);
    }
    v
}

/// A 2026-07-28 message with its `_meta`, perhaps damaged.
fn modern_message(rng: &mut Rng) -> Value {
    let mut v: Value = serde_json::from_str(rng.text(MODERN_SEEDS)).unwrap_or_default();
    if v["params"].is_object() || v["params"].is_null() {
        v["params"]["_meta"] = json!({META_VERSION: V2026, META_CAPABILITIES: {}});
    }
    if let Some(obj) = v.as_object_mut().filter(|_| rng.one_in(3)) {
        obj.insert("id".into(), interesting_value(rng));
    }
    for _ in 0..rng.below(3) {
        if rng.one_in(2) {
            if let Some(meta) = v.pointer_mut("/params/_meta") {
                mutate_json(rng, meta, &[META_VERSION, META_CAPABILITIES, "progressToken"]);
                continue;
            }
        }
        mutate_json(rng, &mut v, MCP_KEYS);
    }
    v
}

/// The routing headers a 2026 client sends for `msg`, then perhaps dropped, changed, doubled.
fn modern_headers(rng: &mut Rng, msg: &Value) -> Vec<(&'static str, Vec<u8>)> {
    let method = msg.get("method").and_then(Value::as_str).unwrap_or("tools/list");
    let version = msg
        .pointer("/params/_meta")
        .and_then(|m| m.get(META_VERSION))
        .and_then(Value::as_str)
        .unwrap_or(V2026);
    let mut headers = vec![
        ("mcp-protocol-version", version.as_bytes().to_vec()),
        ("mcp-method", method.as_bytes().to_vec()),
    ];
    let name = msg
        .pointer("/params/name")
        .or_else(|| msg.pointer("/params/uri"))
        .and_then(Value::as_str);
    if let Some(name) = name {
        headers.push(("mcp-name", name.as_bytes().to_vec()));
    }
    for _ in 0..rng.below(3) {
        let i = rng.below(headers.len());
        match rng.below(5) {
            0 => {
                headers.remove(i);
                if headers.is_empty() {
                    break;
                }
            }
            1 => {
                let dup = headers[i].clone();
                headers.push(dup);
            }
            2 => {
                headers[i].1 = rng
                    .pick(&["2025-06-18", "2024-11-05", "", "2026-07-29", V2026])
                    .as_bytes()
                    .to_vec()
            }
            _ => mutate_bytes(rng, &mut headers[i].1, &[]),
        }
    }
    headers
}

fn generate_case(rng: &mut Rng, sessions: &[Vec<String>; 2], ids: &[&[u8]]) -> HttpCase {
    let server = rng.below(2);
    let mut headers: Vec<(&'static str, Vec<u8>)> = Vec::new();
    let method = match rng.below(40) {
        0 => Method::GET,
        1 => Method::DELETE,
        _ => Method::POST,
    };
    let kind = rng.below(14);
    let body = match kind {
        // Random bytes (or random ASCII).
        0 => {
            let ascii = rng.one_in(2);
            (0..rng.below(300))
                .map(|_| {
                    if ascii {
                        32 + rng.below(95) as u8
                    } else {
                        rng.next() as u8
                    }
                })
                .collect()
        }
        // 2026-07-28.
        1..=5 => {
            let original = modern_message(rng);
            let mut msg = original.clone();
            if rng.one_in(3) {
                mutate_json(rng, &mut msg, MCP_KEYS);
            }
            // Headers that match the message as sent, or as it was before the last change.
            let of = if rng.one_in(2) { &msg } else { &original };
            headers.extend(modern_headers(rng, of));
            serde_json::to_vec(&msg).unwrap_or_default()
        }
        // Session era.
        _ => serde_json::to_vec(&session_message(rng)).unwrap_or_default(),
    };
    let mut body = body;
    if kind != 0 && rng.one_in(8) {
        let seeds: Vec<&[u8]> = MCP_SEEDS.iter().chain(MODERN_SEEDS).map(|s| s.as_bytes()).collect();
        for _ in 0..1 + rng.below(3) {
            mutate_bytes(rng, &mut body, &seeds);
        }
    }
    if kind != 0 && rng.one_in(25) {
        // Deep nesting past the parser's recursion limit.
        let depth = 100 + rng.below(3_000);
        body = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{}{}}}"#,
            "[".repeat(depth),
            "]".repeat(depth)
        )
        .into_bytes();
    }
    // Session id: a valid one of this server (or of the other one), a mutated one, or none.
    match rng.below(6) {
        0..=2 => headers.push(("mcp-session-id", rng.pick(&sessions[server]).as_bytes().to_vec())),
        3 => headers.push(("mcp-session-id", rng.pick(&sessions[1 - server]).as_bytes().to_vec())),
        4 => {
            let mut id = rng.pick(&sessions[server]).as_bytes().to_vec();
            mutate_bytes(rng, &mut id, ids);
            headers.push(("mcp-session-id", id));
        }
        _ => {}
    }
    match rng.below(16) {
        0 => {}
        1 => headers.push(("content-type", rng.pick(CONTENT_TYPES).as_bytes().to_vec())),
        2 => headers.push(("content-type", b"application/json\xff".to_vec())),
        _ => headers.push(("content-type", b"application/json".to_vec())),
    }
    let accept: &[u8] = match rng.below(8) {
        0 => b"application/json",
        1 => b"text/event-stream",
        2 => b"*/*",
        3 => b"",
        _ => b"application/json, text/event-stream",
    };
    if !accept.is_empty() {
        headers.push(("accept", accept.to_vec()));
    }
    HttpCase {
        server,
        method,
        headers,
        body,
    }
}

/// What came back for one case.
struct Outcome {
    status: StatusCode,
    content_type: String,
    text: String,
}

async fn send(http: &reqwest::Client, url: &str, token: &str, case: &HttpCase) -> Outcome {
    let mut headers = HeaderMap::new();
    for (k, v) in &case.headers {
        // reqwest refuses values no HTTP/1 peer could send (line ends, NUL): those bytes become
        // spaces; obs-text and the like go as they are.
        let bytes: Vec<u8> = v
            .iter()
            .map(|&b| if b == b'\t' || b >= 0x20 && b != 0x7f { b } else { b' ' })
            .collect();
        if let Ok(value) = HeaderValue::from_bytes(&bytes) {
            headers.append(HeaderName::from_static(k), value);
        }
    }
    let resp = http
        .request(case.method.clone(), url)
        .bearer_auth(token)
        .headers(headers)
        .body(case.body.clone())
        .send()
        .await
        .unwrap_or_else(|e| panic!("no answer ({e}) to {}", case.describe()));
    let status = resp.status();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let text = resp
        .text()
        .await
        .unwrap_or_else(|e| panic!("body broke off ({e}) for {}", case.describe()));
    Outcome {
        status,
        content_type,
        text,
    }
}

/// A JSON-RPC answer: `jsonrpc` 2.0, an `id`, and a result or an error object with an integer
/// code and a message.
fn is_answer(v: &Value) -> bool {
    let Some(obj) = v.as_object() else { return false };
    let error_ok = |e: &Value| e["code"].is_i64() && e["message"].is_string();
    obj.get("jsonrpc") == Some(&json!("2.0"))
        && obj.contains_key("id")
        && match (obj.get("result"), obj.get("error")) {
            (Some(_), None) => true,
            (None, Some(e)) => error_ok(e),
            _ => false,
        }
}

/// Checks one exchange; returns the answer (the last event of a stream), if any.
fn check(case: &HttpCase, out: &Outcome, n: usize, seed: u64) -> Option<Value> {
    let what = || {
        format!(
            "case {n} (seed {seed:#x}): {} -> {} {:?} {}",
            case.describe(),
            out.status,
            out.content_type,
            out.text
        )
    };
    let s = out.status.as_u16();
    assert!(
        (200..300).contains(&s) || (400..500).contains(&s) || s == 502 || s == 503,
        "status: {}",
        what()
    );
    if out.status == StatusCode::ACCEPTED || (out.text.is_empty() && case.method != Method::POST) {
        // Notifications and client answers (202); DELETE (200) and 405 to sessionless GET/DELETE.
        assert!(out.text.is_empty(), "a body with {}: {}", out.status, what());
        return None;
    }
    let answer = if out.content_type.starts_with("text/event-stream") {
        let events: Vec<Value> = out
            .text
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(|d| serde_json::from_str(d.trim()).unwrap_or_else(|e| panic!("event not JSON ({e}): {}", what())))
            .collect();
        for e in &events {
            assert!(
                e.get("jsonrpc") == Some(&json!("2.0")),
                "an event not JSON-RPC: {}",
                what()
            );
        }
        events
            .last()
            .cloned()
            .unwrap_or_else(|| panic!("an empty stream: {}", what()))
    } else {
        assert!(out.content_type.starts_with("application/json"), "not JSON: {}", what());
        serde_json::from_str(&out.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", what()))
    };
    assert!(is_answer(&answer), "not a JSON-RPC answer: {}", what());
    // A successful answer goes back under the id the client sent (ids are rewritten upstream).
    if answer.get("result").is_some() {
        if let Ok(req) = serde_json::from_slice::<Value>(&case.body) {
            if req.get("method").is_some_and(Value::is_string) {
                if let Some(id) = req.get("id") {
                    assert_eq!(&answer["id"], id, "the answer's id: {}", what());
                }
            }
        }
    }
    Some(answer)
}

/// A 2026-07-28 `tools/call echo` that must succeed.
async fn modern_echo(http: &reqwest::Client, url: &str, token: &str, text: &str) {
    let body = json!({"jsonrpc": "2.0", "id": 99, "method": "tools/call",
        "params": {"name": "echo", "arguments": {"text": text},
                   "_meta": {META_VERSION: V2026, META_CAPABILITIES: {}}}});
    let resp = http
        .post(url)
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", V2026)
        .header("mcp-method", "tools/call")
        .header("mcp-name", "echo")
        .json(&body)
        .send()
        .await
        .expect("sent");
    let status = resp.status();
    let answer: Value = resp.json().await.expect("JSON");
    assert_eq!(status, StatusCode::OK, "{url}: {answer}");
    assert_eq!(answer["result"]["content"][0]["text"], text, "{url}: {answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuzz_mcp_endpoint() {
    let seed = env_seed(0x3C9F_F022);
    let cases = env_cases(3_000);
    let mut rng = Rng::new(seed);
    let era25 = upstream(UpstreamConfig::default()).await;
    let era26 = stateless_upstream().await;
    let app = TestApp::spawn_with(Backend::Sqlite, &[("UPSTREAM_REQUEST_TIMEOUT", "5")], &[]).await;
    const SERVERS: [&str; 2] = ["fz-shared", "fz-sessionless"];
    register(&app, SERVERS[0], &era25.url(), json!({"pool_isolation": "shared"})).await;
    register(&app, SERVERS[1], &era26.url(), json!({})).await;
    let user = "fuzzer";
    let token = app.token(user, &["reader"], &[], 600);
    // Valid session ids: two client sessions per server.
    let mut sessions: [Vec<String>; 2] = [Vec::new(), Vec::new()];
    for (i, server) in SERVERS.iter().enumerate() {
        for _ in 0..2 {
            let mut c = Client::new(&app, server, user);
            c.initialize().await;
            sessions[i].push(c.session.clone().expect("session id"));
        }
    }
    let all_ids: Vec<Vec<u8>> = sessions.iter().flatten().map(|s| s.as_bytes().to_vec()).collect();
    let id_refs: Vec<&[u8]> = all_ids.iter().map(Vec::as_slice).collect();
    // Every case first (deterministic from the seed), then sent four at a time.
    let generated: Vec<HttpCase> = (0..cases)
        .map(|_| generate_case(&mut rng, &sessions, &id_refs))
        .collect();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let urls: Vec<String> = SERVERS.iter().map(|s| app.url(&format!("/servers/{s}/mcp"))).collect();
    let started = Instant::now();
    let outcomes: Vec<(usize, Outcome)> = futures_util::stream::iter(generated.iter().enumerate())
        .map(|(n, case)| {
            let (http, url, token) = (&http, &urls[case.server], &token);
            async move { (n, send(http, url, token, case).await) }
        })
        .buffer_unordered(4)
        .collect()
        .await;
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    let mut codes = std::collections::BTreeMap::<i64, usize>::new();
    let mut results = 0;
    for (n, out) in &outcomes {
        *statuses.entry(out.status.as_u16()).or_default() += 1;
        if let Some(answer) = check(&generated[*n], out, *n, seed) {
            match answer["error"]["code"].as_i64() {
                Some(code) => *codes.entry(code).or_default() += 1,
                None => results += 1,
            }
        }
    }
    report(
        "mcp endpoint (HTTP)",
        seed,
        cases,
        started,
        &format!(" (HTTP statuses {statuses:?}; {results} results, JSON-RPC error codes {codes:?})"),
    );
    // The node lost nothing: every lease comes back, and both servers still serve normal calls.
    for server in SERVERS {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (status, stats) = app
                .admin(Method::GET, &format!("/api/servers/{server}/pool/stats"), None)
                .await;
            assert_eq!(status, StatusCode::OK, "{stats}");
            if stats["leases"] == 0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{server}: leases still held after the fuzz loop: {stats}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut c = Client::new(&app, server, "after-fuzz");
        c.initialize().await;
        let result = c.call_ok(1, "echo", json!({"text": "still here"})).await;
        assert_eq!(result["content"][0]["text"], "still here", "{server}");
        modern_echo(
            &http,
            &app.url(&format!("/servers/{server}/mcp")),
            &token,
            "modern still here",
        )
        .await;
    }
    let (status, _) = app.call(Method::GET, "/health", None, None).await;
    assert_eq!(status, StatusCode::OK);
    app.stop().await;
}
