//! Every fuzz target's body (fuzz/src/lib.rs) on its committed seeds and on
//! a fixed, seeded set of mutations of them, through the ordinary test
//! build.
//!
//! Coverage-guided fuzzing (`ci/fuzz.sh`) needs an instrumented build of the
//! whole stack, which costs more than twenty minutes on two cores; this
//! replay costs seconds, so every test run still feeds each decoder its
//! seeds and the kinds of damage that found past crashes: truncations, bit
//! flips, length fields set to extremes, inserted and deleted bytes, and
//! splices of two seeds. An input that panics is saved under
//! `fuzz/artifacts/<target>/`, where `cargo fuzz run` reproduces it.

#[path = "../fuzz/src/lib.rs"]
mod targets;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

/// Mutants per seed, and random inputs per target.
const MUTANTS: usize = 400;
const RANDOM: usize = 200;

/// splitmix64: a fixed stream, so a failure reproduces run after run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// Values a length or count field is most often wrong with.
const EXTREMES: [u32; 6] = [0, 1, 0x7f, 0xffff, 0x7fff_ffff, u32::MAX];

/// One to three stacked edits of `seed`; `other` is a second seed of the
/// same target to splice with.
fn mutate(rng: &mut Rng, seed: &[u8], other: &[u8]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..1 + rng.below(3) {
        let at = rng.below(v.len() + 1);
        match rng.below(7) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] = [0, 0xff, 0x7f, 0x80, rng.next() as u8][rng.below(5)];
            }
            2 => v.truncate(at),
            3 => {
                let n = 1 + rng.below(16);
                let insert = rng.bytes(n);
                v.splice(at..at, insert);
            }
            4 => {
                let end = (at + 1 + rng.below(32)).min(v.len());
                v.drain(at.min(end)..end);
            }
            5 => {
                let from = rng.below(other.len() + 1);
                v.truncate(at);
                v.extend_from_slice(&other[from..]);
            }
            _ if v.len() >= 4 => {
                let i = rng.below(v.len() - 3);
                let x = EXTREMES[rng.below(EXTREMES.len())];
                let bytes = if rng.below(2) == 0 {
                    x.to_le_bytes()
                } else {
                    x.to_be_bytes()
                };
                v[i..i + 4].copy_from_slice(&bytes);
            }
            _ => v.push(rng.next() as u8),
        }
    }
    v
}

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

fn seeds(target: &str) -> Vec<Vec<u8>> {
    let dir = fuzz_dir().join("seeds").join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files.iter().map(|f| std::fs::read(f).unwrap()).collect()
}

/// Run `body` on `input`; a panic saves the input and returns where.
fn run(target: &str, body: fn(&[u8]), input: &[u8]) -> Result<(), String> {
    if catch_unwind(AssertUnwindSafe(|| body(input))).is_ok() {
        return Ok(());
    }
    let dir = fuzz_dir().join("artifacts").join(target);
    std::fs::create_dir_all(&dir).unwrap();
    let name = format!("replay-{:016x}", fnv(input));
    std::fs::write(dir.join(&name), input).unwrap();
    Err(format!(
        "{target}: panicked on fuzz/artifacts/{target}/{name} \
         (reproduce: cd fuzz && cargo fuzz run -s none {target} artifacts/{target}/{name})"
    ))
}

fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

#[test]
fn every_target_survives_its_seeds_and_their_mutations() {
    let mut failures = Vec::new();
    for (t, (target, body)) in targets::TARGETS.iter().enumerate() {
        let seeds = seeds(target);
        assert!(
            !seeds.is_empty(),
            "{target}: no seeds in fuzz/seeds/{target}"
        );
        let mut rng = Rng(0x5eed ^ t as u64);
        let mut inputs = 0usize;
        let mut check = |input: &[u8]| {
            inputs += 1;
            if let Err(e) = run(target, *body, input) {
                failures.push(e);
            }
        };
        for (i, seed) in seeds.iter().enumerate() {
            check(seed);
            // The first byte picks the mode in most targets: every seed
            // under each of the first eight selectors.
            for selector in 0..8u8 {
                let mut v = seed.clone();
                if let Some(b) = v.first_mut() {
                    *b = selector;
                }
                check(&v);
            }
            let other = &seeds[(i + 1) % seeds.len()];
            for _ in 0..MUTANTS {
                let v = mutate(&mut rng, seed, other);
                check(&v);
            }
        }
        for _ in 0..RANDOM {
            let n = rng.below(512);
            let v = rng.bytes(n);
            check(&v);
        }
        eprintln!("{target}: {inputs} inputs");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
