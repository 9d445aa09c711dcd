//! A bounded, seeded fuzz harness for [`JwtKey::verify`] (issue 16: no panic reachable from
//! input). Stable Rust only: a fixed number of cases from a fixed seed, so a failure reproduces;
//! `POOLGATE_FUZZ_CASES` (a count, or `x<factor>`) and `POOLGATE_FUZZ_SEED` change them.
//!
//! Two kinds of case:
//! - **tampered**: a validly signed token, then its segments or bytes changed (segments swapped
//!   for mutated JSON, base64 garbage, other tokens' segments; bit flips, truncation, inserted
//!   dots, padding, unicode). It must never verify unless the text is the original again.
//! - **re-signed**: mutated header and claims (huge or wrong-typed `exp`/`nbf`/`iat`, deep
//!   nesting, `alg` changes, raw byte garbage) signed with the right key, so the parsing after the
//!   signature check is reached. Whatever verifies must satisfy every documented rule, and every
//!   refusal must be the one its claims call for.

use serde_json::{json, Map, Value};

use super::*;

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
const FALLBACK: &[u8] = b"former-secret-former-secret-0000";
const ISSUER: &str = "https://idp.example";
const AUDIENCE: &str = "poolgate";
const NOW: i64 = 1_700_000_000;

/// The corpus: claims an identity provider might sign (`NOW` lies inside their validity).
const SEEDS: &[&str] = &[
    r#"{"sub":"alice","exp":1700000600,"roles":["admin"]}"#,
    r#"{"sub":"bob","exp":1700000600,"iat":1700000000,"nbf":1699999990,"permissions":["servers.update"]}"#,
    r#"{"sub":"a","exp":9223372036854775807,"nbf":-9223372036854775808,"iat":0}"#,
    r#"{"sub":"c","exp":1700000600,"iss":"https://idp.example","aud":["other","poolgate"]}"#,
    r#"{"sub":"d","exp":1700000001,"iss":"https://idp.example","aud":"poolgate","x":{"y":[1,2.5,null]}}"#,
    r#"{"sub":"\u00e9\u202e\u0000","exp":1700000030,"roles":[]}"#,
];
const HEADERS: &[&str] = &[
    r#"{"alg":"HS256","typ":"JWT"}"#,
    r#"{"alg":"HS256"}"#,
    r#"{"typ":"JWT","alg":"HS256","kid":"k1"}"#,
];
const DEFAULT_CASES: usize = 8_000;
const DEFAULT_SEED: u64 = 0x0A07_F022;

/// xorshift64*: a few lines, deterministic from its seed.
struct Rng(u64);

impl Rng {
    /// Seeded through splitmix64, so neighbouring seeds give unrelated streams.
    fn new(seed: u64) -> Rng {
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
    fn below(&mut self, n: usize) -> usize {
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

/// Bytes worth inserting into a token or a JSON text.
const INTERESTING: &[&str] = &[
    ".",
    "..",
    "=",
    "==",
    "+",
    "/",
    " ",
    "\t",
    "\n",
    "\0",
    "\u{7f}",
    "\u{e9}",
    "\u{feff}",
    "\u{202e}",
    "\u{1d11e}",
    "\\u0000",
    "\\ud800",
    "1e999",
    "-1e999",
    "99999999999999999999999",
    "-9223372036854775809",
    "9223372036854775808",
    "{",
    "}",
    "[",
    "]",
    "\"",
    ",",
    ":",
    "null",
];

/// Claim names (and others) a mutation may add.
const KEYS: &[&str] = &[
    "sub",
    "exp",
    "nbf",
    "iat",
    "roles",
    "permissions",
    "iss",
    "aud",
    "alg",
    "typ",
    "",
];

fn nested(depth: usize) -> Value {
    let mut v = json!(1);
    for i in 0..depth {
        v = if i % 2 == 0 { json!([v]) } else { json!({ "a": v }) };
    }
    v
}

fn interesting_value(rng: &mut Rng) -> Value {
    match rng.below(20) {
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
        11 => json!("\u{0}\u{202e}\u{e9}"),
        12 => json!([]),
        13 => json!({}),
        14 => nested(1 + rng.below(200)),
        15 => json!(["admin", 1, null]),
        16 => json!(NOW + rng.below(1000) as i64 - 500),
        17 => json!("HS256"),
        18 => json!(*rng.pick(&["none", "hs256", "HS512", "RS256", "HS256 "])),
        _ => json!(rng.next() as i64),
    }
}

/// One structural change somewhere inside `v`: a value replaced (type swaps included), a key
/// removed or added, a level of nesting added.
fn mutate_json(rng: &mut Rng, v: &mut Value) {
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
                        mutate_json(rng, inner);
                    }
                }
            }
        }
        Value::Array(a) if !a.is_empty() && !rng.one_in(5) => {
            let i = rng.below(a.len());
            match rng.below(3) {
                0 => {
                    a.remove(i);
                }
                1 => a[i] = interesting_value(rng),
                _ => mutate_json(rng, &mut a[i]),
            }
        }
        Value::Object(m) => {
            m.insert((*rng.pick(KEYS)).to_owned(), interesting_value(rng));
        }
        _ => *v = interesting_value(rng),
    }
}

fn mutate_bytes(rng: &mut Rng, input: &mut Vec<u8>, others: &[Vec<u8>]) {
    let len = input.len();
    match rng.below(8) {
        0 if len > 0 => {
            let i = rng.below(len);
            input[i] ^= 1 << rng.below(8);
        }
        1 => input.truncate(rng.below(len + 1)),
        2 if !others.is_empty() => {
            let other = rng.pick(others);
            input.truncate(rng.below(len + 1));
            input.extend_from_slice(&other[rng.below(other.len() + 1)..]);
        }
        3 if len > 0 => {
            let a = rng.below(len);
            let b = a + 1 + rng.below(len - a);
            let copy = input[a..b].to_vec();
            let at = rng.below(len + 1);
            input.splice(at..at, copy);
        }
        4 if len > 0 => {
            let a = rng.below(len);
            let b = a + 1 + rng.below(len - a);
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

/// `header.payload.signature` over raw (possibly non-JSON) segment texts, signed with `secret`.
fn sign(secret: &[u8], header: &[u8], payload: &[u8]) -> String {
    let input = format!("{}.{}", B64.encode(header), B64.encode(payload));
    let mut mac = mac_with(secret);
    mac.update(input.as_bytes());
    format!("{input}.{}", B64.encode(mac.finalize().into_bytes()))
}

/// A segment of base64url garbage (sometimes of the standard alphabet, or padded).
fn garbage_segment(rng: &mut Rng) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_+/=";
    (0..rng.below(90))
        .map(|_| {
            let n = if rng.one_in(10) { ALPHABET.len() } else { 64 };
            ALPHABET[rng.below(n)] as char
        })
        .collect()
}

fn mutated_json_text(rng: &mut Rng, seeds: &[&str]) -> Vec<u8> {
    let mut v: Value = serde_json::from_str(rng.text(seeds)).unwrap_or_default();
    for _ in 0..1 + rng.below(3) {
        mutate_json(rng, &mut v);
    }
    let mut text = serde_json::to_vec(&v).unwrap_or_default();
    if rng.one_in(4) {
        mutate_bytes(rng, &mut text, &[]);
    }
    text
}

/// The fields the oracle reads (unknown ones are skipped as `verify` skips them, at any depth).
#[derive(serde::Deserialize)]
struct HeaderProbe {
    #[serde(default)]
    alg: Option<Value>,
}

#[derive(serde::Deserialize)]
struct Probe {
    #[serde(default)]
    iss: Option<Value>,
    #[serde(default)]
    aud: Option<Value>,
}

/// Whether a verified token's claims satisfy every rule `verify` documents.
fn check_accepted(key_strict: bool, payload: &[u8], header: &[u8], claims: &Claims, now: i64) -> Result<(), String> {
    let h: HeaderProbe = serde_json::from_slice(header).map_err(|e| format!("header is not JSON: {e}"))?;
    if h.alg != Some(json!("HS256")) {
        return Err(format!("alg is not HS256: {:?}", h.alg));
    }
    let parsed: Claims = serde_json::from_slice(payload).map_err(|e| format!("claims do not parse: {e}"))?;
    if &parsed != claims {
        return Err("claims differ from the payload".into());
    }
    if claims.sub.is_empty() {
        return Err("empty sub".into());
    }
    if claims.exp.saturating_add(LEEWAY_SECONDS) <= now {
        return Err(format!("expired: exp {} at {now}", claims.exp));
    }
    if claims.nbf.is_some_and(|nbf| nbf.saturating_sub(LEEWAY_SECONDS) > now) {
        return Err(format!("not yet valid: nbf {:?} at {now}", claims.nbf));
    }
    if key_strict {
        let v: Probe = serde_json::from_slice(payload).map_err(|e| e.to_string())?;
        if v.iss != Some(json!(ISSUER)) {
            return Err(format!("iss {:?}", v.iss));
        }
        let names = match &v.aud {
            Some(Value::String(a)) => a == AUDIENCE,
            Some(Value::Array(all)) => all.iter().all(Value::is_string) && all.contains(&json!(AUDIENCE)),
            _ => false,
        };
        if !names {
            return Err(format!("aud {:?}", v.aud));
        }
    }
    Ok(())
}

/// Whether a refusal of a correctly signed token is the one its content calls for.
fn check_refused(err: &TokenError, header: &[u8], payload: &[u8], now: i64) -> Result<(), String> {
    let claims = serde_json::from_slice::<Claims>(payload);
    match err {
        TokenError::BadSignature => Err("a token signed with the key was refused as badly signed".into()),
        TokenError::UnsupportedAlgorithm => match serde_json::from_slice::<HeaderProbe>(header) {
            Ok(h) if h.alg.as_ref().is_some_and(|a| a != "HS256") => Ok(()),
            _ => Err("refused the algorithm of a header without a foreign alg".into()),
        },
        TokenError::Expired => match claims {
            Ok(c) if c.exp.saturating_add(LEEWAY_SECONDS) <= now => Ok(()),
            _ => Err("refused as expired".into()),
        },
        TokenError::NotYetValid => match claims {
            Ok(c) if c.nbf.is_some_and(|n| n.saturating_sub(LEEWAY_SECONDS) > now) => Ok(()),
            _ => Err("refused as not yet valid".into()),
        },
        TokenError::Malformed(_) | TokenError::WrongIssuer | TokenError::WrongAudience => Ok(()),
    }
}

#[test]
fn fuzz_jwt_verify_never_panics_and_never_accepts_a_changed_token() {
    let seed = env_seed(DEFAULT_SEED);
    let cases = env_cases(DEFAULT_CASES);
    let mut rng = Rng::new(seed);
    let plain = JwtKey::new(SECRET).with_fallbacks(&[FALLBACK]);
    let strict = plain.clone().expecting(Some(ISSUER), Some(AUDIENCE));
    // Every valid token of the corpus, signed by the key and by the fallback.
    let originals: Vec<String> = SEEDS
        .iter()
        .flat_map(|p| HEADERS.iter().map(move |h| (h, p)))
        .flat_map(|(h, p)| {
            [
                sign(SECRET, h.as_bytes(), p.as_bytes()),
                sign(FALLBACK, h.as_bytes(), p.as_bytes()),
            ]
        })
        .collect();
    for t in &originals {
        assert!(plain.verify(t, NOW).is_ok(), "corpus token refused: {t}");
    }
    let original_bytes: Vec<Vec<u8>> = originals.iter().map(|t| t.as_bytes().to_vec()).collect();
    let started = std::time::Instant::now();
    let (mut accepted, mut tampered) = (0usize, 0usize);
    for case in 0..cases {
        let now = if rng.one_in(8) {
            *rng.pick(&[0, -1, i64::MAX, i64::MIN, i64::MAX - 29, i64::MIN + 29])
        } else {
            NOW
        };
        let key = if rng.one_in(3) { &strict } else { &plain };
        if rng.one_in(2) {
            // Tampered: any change to the text of a signed token must be refused.
            tampered += 1;
            let original = rng.pick(&originals).clone();
            let mut parts: Vec<String> = original.split('.').map(str::to_owned).collect();
            for _ in 0..1 + rng.below(3) {
                match rng.below(6) {
                    0 => {
                        // A segment replaced by the encoding of mutated JSON.
                        let i = rng.below(parts.len().min(2));
                        let json = mutated_json_text(&mut rng, if i == 0 { HEADERS } else { SEEDS });
                        parts[i] = B64.encode(json);
                    }
                    1 => {
                        let i = rng.below(parts.len());
                        parts[i] = garbage_segment(&mut rng);
                    }
                    2 => {
                        // The segment of another valid token (mixes keys, headers and claims).
                        let other = rng.pick(&originals).split('.').map(str::to_owned).collect::<Vec<_>>();
                        let i = rng.below(parts.len().min(other.len()));
                        parts[i] = other[i].clone();
                    }
                    3 => {
                        if rng.one_in(2) && parts.len() > 1 {
                            parts.remove(rng.below(parts.len()));
                        } else {
                            let at = rng.below(parts.len() + 1);
                            parts.insert(at, garbage_segment(&mut rng));
                        }
                    }
                    _ => {
                        let mut bytes = parts.join(".").into_bytes();
                        mutate_bytes(&mut rng, &mut bytes, &original_bytes);
                        parts = String::from_utf8_lossy(&bytes).split('.').map(str::to_owned).collect();
                    }
                }
            }
            let token = parts.join(".");
            if let Ok(claims) = key.verify(&token, now) {
                assert!(
                    originals.contains(&token),
                    "case {case} (seed {seed:#x}): a changed token verified as {claims:?}: {token:?} (from {original:?})"
                );
                accepted += 1;
            }
        } else {
            // Re-signed: the signature holds, so the claims' parsing and rules are reached.
            let header = if rng.one_in(3) {
                mutated_json_text(&mut rng, HEADERS)
            } else {
                rng.pick(HEADERS).as_bytes().to_vec()
            };
            let payload = match rng.below(8) {
                0 => {
                    // Raw bytes of no particular shape.
                    let mut b: Vec<u8> = (0..rng.below(64)).map(|_| rng.next() as u8).collect();
                    mutate_bytes(&mut rng, &mut b, &[]);
                    b
                }
                1 => {
                    // Deep nesting in a claim (serde_json's recursion limit must hold).
                    let depth = 100 + rng.below(2_500);
                    let mut v: Map<String, Value> = serde_json::from_str(rng.text(SEEDS)).unwrap_or_default();
                    let field = (*rng.pick(&["roles", "sub", "aud", "exp", "x"])).to_owned();
                    let text = format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
                    v.insert(field.clone(), Value::Null);
                    let body = serde_json::to_string(&v).unwrap_or_default();
                    body.replacen(&format!("\"{field}\":null"), &format!("\"{field}\":{text}"), 1)
                        .into_bytes()
                }
                _ => mutated_json_text(&mut rng, SEEDS),
            };
            let token = sign(SECRET, &header, &payload);
            let strict_key = std::ptr::eq(key, &strict);
            match key.verify(&token, now) {
                Ok(claims) => {
                    accepted += 1;
                    if let Err(why) = check_accepted(strict_key, &payload, &header, &claims, now) {
                        panic!(
                            "case {case} (seed {seed:#x}): accepted against the rules ({why}): header {:?} payload {:?} now {now}",
                            String::from_utf8_lossy(&header),
                            String::from_utf8_lossy(&payload)
                        );
                    }
                }
                Err(e) => {
                    if token.len() <= 8 * 1024 {
                        if let Err(why) = check_refused(&e, &header, &payload, now) {
                            panic!(
                                "case {case} (seed {seed:#x}): {e:?}: {why}: header {:?} payload {:?} now {now}",
                                String::from_utf8_lossy(&header),
                                String::from_utf8_lossy(&payload)
                            );
                        }
                    }
                }
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "fuzz jwt: seed {seed:#x}, {cases} cases ({tampered} tampered, {accepted} accepted in all), {:.0} cases/s ({secs:.2} s)",
        cases as f64 / secs.max(1e-9)
    );
}
