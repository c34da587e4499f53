//! Glob patterns of Parquet source URLs: `*` and `?` within one path
//! segment, `**` across segments, `[abc]` character classes.
//!
//! Why iterative and bounded: a pattern comes from a client and is kept in
//! the catalog, so it is matched on every listing, after every restart. A
//! recursive matcher overflowed the stack on a pattern of about a million
//! `*`, and the server crashed again each time it started. Here matching
//! is two loops that backtrack to the last star (over path segments for
//! `**`, over bytes within a segment): no recursion, at most
//! O(len(pattern) × len(name)) steps for any input. And a source refuses
//! at open a pattern longer than [`MAX_GLOB_BYTES`] or with more than
//! [`MAX_GLOB_WILDCARDS`] wildcards, so a stored pattern is small anyway.

/// Longest glob accepted (the part of the URL from the directory holding
/// the first wildcard), in bytes.
pub const MAX_GLOB_BYTES: usize = 1024;
/// Most wildcard characters (`*`, `?`, `[`) a glob may hold; `**` counts
/// as two.
pub const MAX_GLOB_WILDCARDS: usize = 16;

/// One element of a segment pattern; each but [`Tok::Star`] matches
/// exactly one byte.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    /// `*`: any run of bytes within the segment.
    Star,
    /// `?`: any one byte.
    Any,
    /// `[abc]`: one of the listed bytes (an empty class matches nothing).
    Class(Vec<u8>),
    /// A `[` without its `]`: matches nothing, so the segment never matches.
    Never,
    /// A literal byte.
    Byte(u8),
}

impl Tok {
    fn matches(&self, b: u8) -> bool {
        match self {
            Tok::Star | Tok::Any => true,
            Tok::Class(set) => set.contains(&b),
            Tok::Never => false,
            Tok::Byte(c) => *c == b,
        }
    }
}

/// One `/`-separated segment of a pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Seg {
    /// `**`: any number of whole segments, none included.
    AnyDepth,
    /// A segment pattern, matching exactly one segment.
    One(Vec<Tok>),
}

/// A compiled glob (see the module doc for its syntax).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Glob {
    segs: Vec<Seg>,
}

impl Glob {
    /// Compile `pattern` after checking it against [`MAX_GLOB_BYTES`] and
    /// [`MAX_GLOB_WILDCARDS`]; the error says which limit it broke.
    pub fn new(pattern: &str) -> Result<Glob, String> {
        check(pattern)?;
        Ok(Glob::compile(pattern))
    }

    /// Compile without the limits (matching stays iterative and
    /// O(len(pattern) × len(name)), so this is safe, only not small).
    fn compile(pattern: &str) -> Glob {
        let segs = pattern
            .split('/')
            .map(|s| match s {
                "**" => Seg::AnyDepth,
                s => Seg::One(tokens(s.as_bytes())),
            })
            .collect();
        Glob { segs }
    }

    /// True when `text` (a `/`-separated relative path) matches.
    pub fn matches(&self, text: &str) -> bool {
        let t: Vec<&str> = text.split('/').collect();
        // Star matching over segments: `**` is the star, a segment pattern
        // matches exactly one segment; on a mismatch, retry from the last
        // `**` with one more segment swallowed by it.
        let (mut pi, mut ti) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while ti < t.len() {
            match self.segs.get(pi) {
                Some(Seg::AnyDepth) => {
                    star = Some((pi + 1, ti));
                    pi += 1;
                }
                Some(Seg::One(p)) if seg_match(p, t[ti].as_bytes()) => {
                    pi += 1;
                    ti += 1;
                }
                _ => match star {
                    Some((sp, st)) => {
                        star = Some((sp, st + 1));
                        pi = sp;
                        ti = st + 1;
                    }
                    None => return false,
                },
            }
        }
        self.segs[pi..].iter().all(|s| *s == Seg::AnyDepth)
    }
}

/// Refuse a pattern over [`MAX_GLOB_BYTES`] or [`MAX_GLOB_WILDCARDS`].
fn check(pattern: &str) -> Result<(), String> {
    if pattern.len() > MAX_GLOB_BYTES {
        return Err(format!(
            "the glob is {} bytes long, more than the limit of {MAX_GLOB_BYTES} bytes",
            pattern.len()
        ));
    }
    let wildcards = pattern
        .bytes()
        .filter(|b| matches!(b, b'*' | b'?' | b'['))
        .count();
    if wildcards > MAX_GLOB_WILDCARDS {
        return Err(format!(
            "the glob has {wildcards} wildcards (*, ?, [), more than the limit of {MAX_GLOB_WILDCARDS}"
        ));
    }
    Ok(())
}

/// The tokens of one segment pattern.
fn tokens(p: &[u8]) -> Vec<Tok> {
    let mut out = Vec::with_capacity(p.len());
    let mut i = 0;
    while i < p.len() {
        match p[i] {
            b'*' => out.push(Tok::Star),
            b'?' => out.push(Tok::Any),
            b'[' => match p[i + 1..].iter().position(|&c| c == b']') {
                Some(len) => {
                    out.push(Tok::Class(p[i + 1..i + 1 + len].to_vec()));
                    i += len + 1;
                }
                None => {
                    out.push(Tok::Never);
                    break;
                }
            },
            c => out.push(Tok::Byte(c)),
        }
        i += 1;
    }
    out
}

/// Star matching of one segment: on a mismatch, retry from the last `*`
/// with one more byte swallowed by it.
fn seg_match(p: &[Tok], t: &[u8]) -> bool {
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some(Tok::Star) => {
                star = Some((pi + 1, ti));
                pi += 1;
            }
            Some(tok) if tok.matches(t[ti]) => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    star = Some((sp, st + 1));
                    pi = sp;
                    ti = st + 1;
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|t| *t == Tok::Star)
}

/// Match `text` against a glob, without the size limits (see
/// [`Glob::new`] for the checked form a source uses).
pub fn glob_match(pattern: &str, text: &str) -> bool {
    Glob::compile(pattern).matches(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The recursive matcher this module replaced, kept as the reference
    /// its semantics are compared with (on small inputs only).
    fn reference(pattern: &str, text: &str) -> bool {
        let p: Vec<&str> = pattern.split('/').collect();
        let t: Vec<&str> = text.split('/').collect();
        fn segs(p: &[&str], t: &[&str]) -> bool {
            match p.first() {
                None => t.is_empty(),
                Some(&"**") => (0..=t.len()).any(|i| segs(&p[1..], &t[i..])),
                Some(seg) => {
                    !t.is_empty()
                        && seg_match(seg.as_bytes(), t[0].as_bytes())
                        && segs(&p[1..], &t[1..])
                }
            }
        }
        fn seg_match(p: &[u8], t: &[u8]) -> bool {
            match p.first() {
                None => t.is_empty(),
                Some(b'*') => (0..=t.len()).any(|i| seg_match(&p[1..], &t[i..])),
                Some(b'?') => !t.is_empty() && seg_match(&p[1..], &t[1..]),
                Some(b'[') => match p.iter().position(|&c| c == b']') {
                    Some(end) if !t.is_empty() => {
                        p[1..end].contains(&t[0]) && seg_match(&p[end + 1..], &t[1..])
                    }
                    _ => false,
                },
                Some(c) => !t.is_empty() && *c == t[0] && seg_match(&p[1..], &t[1..]),
            }
        }
        segs(&p, &t)
    }

    #[test]
    fn globs() {
        assert!(glob_match("*.parquet", "a.parquet"));
        assert!(!glob_match("*.parquet", "d/a.parquet"));
        assert!(glob_match("**/*.parquet", "d/e/a.parquet"));
        assert!(glob_match("**/*.parquet", "a.parquet"));
        assert!(glob_match("d/**", "d/e/a.parquet"));
        assert!(glob_match("d/**", "d"));
        assert!(!glob_match("d/**/x", "d/e/a.parquet"));
        assert!(glob_match("part-?.parquet", "part-1.parquet"));
        assert!(glob_match("part-[12].parquet", "part-2.parquet"));
        assert!(!glob_match("part-[12].parquet", "part-3.parquet"));
        assert!(!glob_match("part-[12.parquet", "part-1.parquet"));
        assert!(!glob_match("part-[]x", "part-]x"));
        assert!(glob_match("a*b*c", "axxbyybzc"));
        assert!(!glob_match("a*b*c", "axxbyybz"));
    }

    /// Every pattern and name over a small alphabet (with `/`, `*`, `?`,
    /// `[`, `]`) up to a few bytes: the same answer as the recursive
    /// matcher.
    #[test]
    fn same_answers_as_the_recursive_matcher() {
        // A small deterministic generator (xorshift), no dependency.
        let mut s: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        let pat_alphabet = b"ab/*?[]";
        let text_alphabet = b"ab/]";
        let word = |alphabet: &[u8], n: u64, next: &mut dyn FnMut() -> u64| -> String {
            (0..n)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize] as char)
                .collect()
        };
        let mut checked = 0;
        for _ in 0..200_000 {
            let pn = next() % 9;
            let tn = next() % 8;
            let mut p = word(pat_alphabet, pn, &mut next);
            if next() % 4 == 0 {
                p = p.replacen('*', "**", 1);
            }
            let t = word(text_alphabet, tn, &mut next);
            assert_eq!(glob_match(&p, &t), reference(&p, &t), "{p:?} against {t:?}");
            checked += 1;
        }
        assert_eq!(checked, 200_000);
    }

    #[test]
    fn limits_at_their_edges() {
        let long = format!("{}.parquet", "a".repeat(MAX_GLOB_BYTES - 8));
        assert_eq!(long.len(), MAX_GLOB_BYTES);
        assert!(Glob::new(&long).is_ok());
        let err = Glob::new(&format!("{long}x")).unwrap_err();
        assert!(err.contains("1024"), "{err}");

        let wild = "*?".repeat(MAX_GLOB_WILDCARDS / 2);
        assert!(Glob::new(&wild).is_ok());
        let err = Glob::new(&format!("{wild}[ab]")).unwrap_err();
        assert!(err.contains("17 wildcards") && err.contains("16"), "{err}");
        assert!(Glob::new(&"**/".repeat(5)).is_ok());
        assert!(Glob::new(&"**/".repeat(9)).is_err());
    }

    /// A million stars: refused by the checked form without scanning more
    /// than its length, and matched by the unchecked one without recursion.
    #[test]
    fn a_million_stars_neither_crash_nor_pass() {
        let bomb = "*".repeat(1_000_000);
        assert!(Glob::new(&bomb).is_err());
        assert!(glob_match(&bomb, "part-0.parquet"));
        assert!(!glob_match(&format!("{bomb}x"), "part-0.parquet"));
        let deep = "**/".repeat(300_000) + "*.parquet";
        assert!(glob_match(&deep, "a/b/c.parquet"));
        assert!(!glob_match(&deep, "a/b/c.csv"));
    }
}
