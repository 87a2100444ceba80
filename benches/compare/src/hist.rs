//! Latency histogram: 16 buckets per power of two of nanoseconds (about 4.4% wide). Children
//! send theirs to the parent as one text field (`encode`, `decode`); the parent merges them.

use crate::systems::R;

const PER_OCTAVE: f64 = 16.0;
const BUCKETS: usize = 64 * 16;

#[derive(Clone)]
pub struct Hist {
    pub counts: Vec<u64>,
    pub max_ns: u64,
}

impl Default for Hist {
    fn default() -> Self {
        Self::new()
    }
}

impl Hist {
    pub fn new() -> Self {
        Self { counts: vec![0; BUCKETS], max_ns: 0 }
    }
    pub fn record(&mut self, ns: u64) {
        let i = ((ns.max(1) as f64).log2() * PER_OCTAVE) as usize;
        self.counts[i.min(BUCKETS - 1)] += 1;
        self.max_ns = self.max_ns.max(ns);
    }
    pub fn merge(&mut self, o: &Hist) {
        for (a, b) in self.counts.iter_mut().zip(&o.counts) {
            *a += b;
        }
        self.max_ns = self.max_ns.max(o.max_ns);
    }
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }
    /// The upper edge of the bucket holding quantile `q`, in ns (capped at the maximum seen).
    pub fn quantile(&self, q: f64) -> u64 {
        let total = self.total();
        if total == 0 {
            return 0;
        }
        let rank = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let edge = 2f64.powf((i + 1) as f64 / PER_OCTAVE) as u64;
                return edge.min(self.max_ns);
            }
        }
        self.max_ns
    }
    pub fn encode(&self) -> String {
        let parts: Vec<String> = self
            .counts
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(i, c)| format!("{i}:{c}"))
            .collect();
        format!("{};{}", self.max_ns, parts.join(","))
    }
    pub fn decode(s: &str) -> R<Hist> {
        let mut h = Hist::new();
        let (max, rest) = s.split_once(';').ok_or("bad histogram")?;
        h.max_ns = max.parse()?;
        for p in rest.split(',').filter(|p| !p.is_empty()) {
            let (i, c) = p.split_once(':').ok_or("bad bucket")?;
            h.counts[i.parse::<usize>()?] = c.parse()?;
        }
        Ok(h)
    }
}
