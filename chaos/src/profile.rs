//! How long a scenario runs. One knob for every scenario, so CI's short run
//! and a by-hand soak differ only in time, never in what is checked.

use std::time::Duration;

/// A scenario's length and fault rhythm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Profile {
    /// How long load runs while faults are injected.
    pub duration: Duration,
    /// Time between the end of one fault's healing and the next fault.
    pub calm: Duration,
    /// How long a fault lasts before it is healed.
    pub fault: Duration,
}

impl Profile {
    /// CI: a few fault rounds.
    pub const SHORT: Profile = Profile {
        duration: Duration::from_secs(15),
        calm: Duration::from_secs(1),
        fault: Duration::from_secs(2),
    };
    /// By hand: minutes of faults.
    pub const LONG: Profile = Profile {
        duration: Duration::from_secs(300),
        calm: Duration::from_secs(2),
        fault: Duration::from_secs(4),
    };

    /// `CHAOS_PROFILE` (`short`, the default, or `long`), with
    /// `CHAOS_SECONDS` overriding the duration.
    pub fn from_env() -> Profile {
        let mut p = match std::env::var("CHAOS_PROFILE").as_deref() {
            Ok("long") => Profile::LONG,
            _ => Profile::SHORT,
        };
        if let Some(s) = std::env::var("CHAOS_SECONDS")
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
        {
            p.duration = Duration::from_secs(s);
        }
        p
    }
}
