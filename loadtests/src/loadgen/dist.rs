//! Random numbers, tool-duration distributions and the workload mix.
//!
//! Why our own: the generator needs one fast, seedable PRNG and four small distributions. A
//! SplitMix64 with inverse-transform (Pareto) and Box–Muller (log-normal) sampling keeps the
//! dependency list short and makes every run reproducible from `--seed`.

use std::fmt;

/// SplitMix64: tiny, fast, good enough for load shaping (not for cryptography).
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box–Muller; one of the pair is dropped, simplicity over speed).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.f64(); // (0, 1]: ln() is finite
        let u2 = self.f64();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

/// A duration distribution in milliseconds for the `slow` tool.
#[derive(Clone, Debug, PartialEq)]
pub enum Dist {
    Fixed(f64),
    /// Uniform in [lo, hi].
    Uniform(f64, f64),
    /// Log-normal with the given median (ms) and sigma of the underlying normal.
    LogNormal(f64, f64),
    /// Pareto with scale x_m (ms, the minimum) and shape alpha (heavy tail for alpha <= 2).
    Pareto(f64, f64),
}

impl Dist {
    /// `fixed:MS`, `uniform:LO:HI`, `lognormal:MEDIAN:SIGMA`, `pareto:SCALE:ALPHA`.
    pub fn parse(s: &str) -> Result<Dist, String> {
        let parts: Vec<&str> = s.split(':').collect();
        let num = |i: usize| -> Result<f64, String> {
            let raw = parts.get(i).ok_or_else(|| format!("{s:?}: missing parameter {i}"))?;
            let v: f64 = raw.parse().map_err(|_| format!("{s:?}: {raw:?} is not a number"))?;
            if !v.is_finite() || v < 0.0 {
                return Err(format!("{s:?}: {raw:?} must be a finite number >= 0"));
            }
            Ok(v)
        };
        let d = match (parts.first().copied(), parts.len()) {
            (Some("fixed"), 2) => Dist::Fixed(num(1)?),
            (Some("uniform"), 3) => {
                let (lo, hi) = (num(1)?, num(2)?);
                if lo > hi {
                    return Err(format!("{s:?}: lo must be <= hi"));
                }
                Dist::Uniform(lo, hi)
            }
            (Some("lognormal"), 3) => Dist::LogNormal(num(1)?, num(2)?),
            (Some("pareto"), 3) => {
                let (scale, alpha) = (num(1)?, num(2)?);
                if alpha <= 0.0 {
                    return Err(format!("{s:?}: alpha must be > 0"));
                }
                Dist::Pareto(scale, alpha)
            }
            _ => {
                return Err(format!(
                    "{s:?}: expected fixed:MS, uniform:LO:HI, lognormal:MEDIAN:SIGMA or pareto:SCALE:ALPHA"
                ))
            }
        };
        Ok(d)
    }

    /// One sample in milliseconds (never negative).
    pub fn sample(&self, rng: &mut Rng) -> f64 {
        match *self {
            Dist::Fixed(ms) => ms,
            Dist::Uniform(lo, hi) => lo + (hi - lo) * rng.f64(),
            Dist::LogNormal(median, sigma) => median * (sigma * rng.normal()).exp(),
            Dist::Pareto(scale, alpha) => scale / (1.0 - rng.f64()).powf(1.0 / alpha),
        }
    }
}

impl fmt::Display for Dist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dist::Fixed(ms) => write!(f, "fixed:{ms}"),
            Dist::Uniform(lo, hi) => write!(f, "uniform:{lo}:{hi}"),
            Dist::LogNormal(m, s) => write!(f, "lognormal:{m}:{s}"),
            Dist::Pareto(x, a) => write!(f, "pareto:{x}:{a}"),
        }
    }
}

/// One kind of request the workload sends on an open session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Op {
    /// `tools/call echo`.
    Echo,
    /// `tools/call slow` with a sampled duration.
    Slow,
    /// `tools/list`.
    List,
}

impl Op {
    pub fn name(self) -> &'static str {
        match self {
            Op::Echo => "echo",
            Op::Slow => "slow",
            Op::List => "list",
        }
    }
}

/// Weighted choice of [`Op`]s, e.g. `echo=80,slow=10,list=10`.
#[derive(Clone, Debug, PartialEq)]
pub struct Mix(Vec<(Op, u32)>);

impl Mix {
    pub fn only(op: Op) -> Mix {
        Mix(vec![(op, 1)])
    }

    pub fn parse(s: &str) -> Result<Mix, String> {
        let mut out = Vec::new();
        for part in s.split(',').filter(|p| !p.trim().is_empty()) {
            let (name, weight) = part.split_once('=').unwrap_or((part, "1"));
            let op = match name.trim() {
                "echo" => Op::Echo,
                "slow" => Op::Slow,
                "list" => Op::List,
                other => return Err(format!("unknown op {other:?} in --mix (echo, slow, list)")),
            };
            let w: u32 = weight
                .trim()
                .parse()
                .map_err(|_| format!("weight {weight:?} of {name} is not a whole number"))?;
            if w > 0 {
                out.push((op, w));
            }
        }
        if out.is_empty() {
            return Err(format!("--mix {s:?} has no op with a weight above 0"));
        }
        Ok(Mix(out))
    }

    pub fn pick(&self, rng: &mut Rng) -> Op {
        let total: u64 = self.0.iter().map(|(_, w)| u64::from(*w)).sum();
        let mut x = rng.next_u64() % total.max(1);
        for (op, w) in &self.0 {
            if x < u64::from(*w) {
                return *op;
            }
            x -= u64::from(*w);
        }
        self.0.first().map_or(Op::Echo, |(op, _)| *op)
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|(op, w)| format!("{}={w}", op.name())).collect();
        f.write_str(&parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distributions_parse_and_sample_sensibly() {
        let mut rng = Rng::new(7);
        let d = Dist::parse("uniform:5:15").expect("parses");
        for _ in 0..1000 {
            let v = d.sample(&mut rng);
            assert!((5.0..=15.0).contains(&v));
        }
        let p = Dist::parse("pareto:2:1.5").expect("parses");
        let mut samples: Vec<f64> = (0..10_000).map(|_| p.sample(&mut rng)).collect();
        samples.sort_by(f64::total_cmp);
        assert!(samples[0] >= 2.0);
        // Heavy tail: the 99.9th percentile is far above the median.
        assert!(samples[9990] > 20.0 * samples[5000]);
        let l = Dist::parse("lognormal:10:0.5").expect("parses");
        let mut ls: Vec<f64> = (0..10_000).map(|_| l.sample(&mut rng)).collect();
        ls.sort_by(f64::total_cmp);
        assert!((8.5..11.5).contains(&ls[5000]), "median {}", ls[5000]);
        assert!(Dist::parse("uniform:9:1").is_err());
        assert!(Dist::parse("gauss:1").is_err());
    }

    #[test]
    fn mix_follows_weights() {
        let mix = Mix::parse("echo=3,list=1").expect("parses");
        let mut rng = Rng::new(1);
        let echoes = (0..40_000).filter(|_| mix.pick(&mut rng) == Op::Echo).count();
        assert!((29_000..31_000).contains(&echoes), "{echoes}");
        assert!(Mix::parse("echo=0").is_err());
        assert!(Mix::parse("nope=1").is_err());
    }
}
