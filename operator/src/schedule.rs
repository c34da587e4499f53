//! Backup schedules: the five-field cron expressions Kubernetes users
//! write for CronJobs, read in UTC.
//!
//! Why the operator runs the schedule itself rather than creating a
//! CronJob: a backup is one admin call (`CreateBackup`), and the operator
//! already holds what that call needs (the cluster's address, its TLS
//! trust, the admin key); a Job pod would need all of it mounted, a
//! NetworkPolicy path to the coordinators, and a second place to report
//! results from. The operator needs two answers of a schedule: the last
//! slot at or before now (is a backup due?) and the next one (when to look
//! again).
//!
//! The language: `minute hour day-of-month month day-of-week`, each a `*`,
//! a number, a range `a-b`, a step `*/n` or `a-b/n`, or a comma list of
//! those; day-of-week 0–7 (0 and 7 are Sunday); and `@hourly`, `@daily`
//! (`@midnight`), `@weekly`, `@monthly`, `@yearly` (`@annually`). As in
//! cron, when both day fields are restricted a day matches either.

use k8s_openapi::jiff::civil::{Date, DateTime};
use k8s_openapi::jiff::{tz::TimeZone, Timestamp, ToSpan};

/// How far a search for a slot goes: five years covers a 29 February.
const SEARCH_DAYS: i64 = 5 * 366;

/// A parsed schedule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    /// Whether day-of-month, resp. day-of-week, was `*`.
    any_day: bool,
    any_weekday: bool,
}

impl std::str::FromStr for Schedule {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let expanded = match text {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            other => other,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        let [minute, hour, day, month, weekday] = fields[..] else {
            return Err(format!(
                "schedule {text:?}: five fields (minute hour day-of-month month day-of-week) or @daily-style name expected"
            ));
        };
        let weekdays = field(weekday, 0, 7, "day-of-week")?;
        Ok(Schedule {
            minutes: field(minute, 0, 59, "minute")?,
            hours: field(hour, 0, 23, "hour")?,
            days: field(day, 1, 31, "day-of-month")?,
            months: field(month, 1, 12, "month")?,
            // 7 is Sunday too.
            weekdays: (weekdays | (weekdays >> 7)) & 0x7f,
            any_day: day == "*",
            any_weekday: weekday == "*",
        })
    }
}

/// One field's values as a bit mask.
fn field(text: &str, min: u32, max: u32, name: &str) -> Result<u64, String> {
    let bad = |why: &str| Err(format!("{name} {text:?}: {why} (values {min}-{max})"));
    let mut mask = 0u64;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => match s.parse::<u32>() {
                Ok(s) if s > 0 => (r, Some(s)),
                _ => return bad("a step is a positive number"),
            },
            None => (part, None),
        };
        let number = |s: &str| s.parse::<u32>().ok().filter(|v| (min..=max).contains(v));
        let (lo, hi) = if range == "*" {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            match (number(a), number(b)) {
                (Some(a), Some(b)) if a <= b => (a, b),
                _ => return bad("a range is two values, low-high"),
            }
        } else {
            match number(range) {
                // `a/n` is `a-max/n`.
                Some(a) => (a, if step.is_some() { max } else { a }),
                None => return bad("not a value"),
            }
        };
        for v in (lo..=hi).step_by(step.unwrap_or(1) as usize) {
            mask |= 1 << v;
        }
    }
    Ok(mask)
}

fn has(mask: u64, v: i8) -> bool {
    v >= 0 && mask & (1 << v) != 0
}

impl Schedule {
    fn matches_day(&self, d: Date) -> bool {
        if !has(self.months, d.month()) {
            return false;
        }
        let day = has(self.days, d.day());
        let weekday = has(self.weekdays, d.weekday().to_sunday_zero_offset());
        if self.any_day || self.any_weekday {
            day && weekday
        } else {
            day || weekday
        }
    }

    /// The latest slot at or before `now`, if there is one in the last
    /// five years.
    pub fn last_at_or_before(&self, now: Timestamp) -> Option<Timestamp> {
        let now = now.to_zoned(TimeZone::UTC).datetime();
        (0..=SEARCH_DAYS).find_map(|back| {
            let date = now.date().checked_sub(back.days()).ok()?;
            if !self.matches_day(date) {
                return None;
            }
            let (max_hour, max_minute) = if back == 0 {
                (now.hour(), now.minute())
            } else {
                (23, 59)
            };
            (0..=max_hour).rev().find_map(|h| {
                let last = if h == max_hour { max_minute } else { 59 };
                (0..=last)
                    .rev()
                    .find(|&m| has(self.hours, h) && has(self.minutes, m))
                    .and_then(|m| utc(date.at(h, m, 0, 0)))
            })
        })
    }

    /// The first slot after `now`, if there is one in the next five years.
    pub fn next_after(&self, now: Timestamp) -> Option<Timestamp> {
        let now = now.to_zoned(TimeZone::UTC).datetime();
        (0..=SEARCH_DAYS).find_map(|ahead| {
            let date = now.date().checked_add(ahead.days()).ok()?;
            if !self.matches_day(date) {
                return None;
            }
            // Strictly after `now`: from the next minute on today.
            let (min_hour, min_minute) = if ahead == 0 {
                (now.hour(), now.minute() + 1)
            } else {
                (0, 0)
            };
            (min_hour..=23).find_map(|h| {
                let first = if h == min_hour { min_minute } else { 0 };
                (first..=59)
                    .find(|&m| has(self.hours, h) && has(self.minutes, m))
                    .and_then(|m| utc(date.at(h, m, 0, 0)))
            })
        })
    }
}

fn utc(dt: DateTime) -> Option<Timestamp> {
    dt.to_zoned(TimeZone::UTC).ok().map(|z| z.timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn schedule(s: &str) -> Schedule {
        s.parse().unwrap()
    }

    #[test]
    fn daily_slots_fall_at_the_given_minute() {
        let s = schedule("30 3 * * *");
        let now = at("2026-12-07T10:00:00Z");
        assert_eq!(s.last_at_or_before(now), Some(at("2026-12-07T03:30:00Z")));
        assert_eq!(s.next_after(now), Some(at("2026-12-08T03:30:00Z")));
        // A slot is due at its own minute, and the next is a day later.
        let slot = at("2026-12-07T03:30:00Z");
        assert_eq!(s.last_at_or_before(slot), Some(slot));
        assert_eq!(s.next_after(slot), Some(at("2026-12-08T03:30:00Z")));
        assert_eq!(
            s.last_at_or_before(at("2026-12-07T03:29:59Z")),
            Some(at("2026-12-06T03:30:00Z"))
        );
    }

    #[test]
    fn steps_ranges_lists_and_names() {
        let s = schedule("*/15 9-17 * * 1-5");
        // Sunday 2026-12-06: the last weekday slot is Friday 17:45.
        assert_eq!(
            s.last_at_or_before(at("2026-12-06T12:00:00Z")),
            Some(at("2026-12-04T17:45:00Z"))
        );
        assert_eq!(
            s.next_after(at("2026-12-07T09:07:00Z")),
            Some(at("2026-12-07T09:15:00Z"))
        );
        assert_eq!(schedule("@daily"), schedule("0 0 * * *"));
        assert_eq!(schedule("@weekly"), schedule("0 0 * * 7"));
        assert_eq!(
            schedule("0 0 1,15 * *").next_after(at("2026-12-02T00:00:00Z")),
            Some(at("2026-12-15T00:00:00Z"))
        );
        assert_eq!(
            schedule("5/20 * * * *").next_after(at("2026-12-07T10:26:00Z")),
            Some(at("2026-12-07T10:45:00Z"))
        );
    }

    #[test]
    fn restricted_day_fields_match_either_day() {
        // The 13th, or any Friday.
        let s = schedule("0 12 13 * 5");
        assert_eq!(
            s.next_after(at("2026-12-07T00:00:00Z")),
            Some(at("2026-12-11T12:00:00Z"))
        );
        assert_eq!(
            s.next_after(at("2026-12-11T12:00:00Z")),
            Some(at("2026-12-13T12:00:00Z"))
        );
    }

    #[test]
    fn rare_slots_are_found_and_impossible_ones_are_none() {
        let leap = schedule("0 0 29 2 *");
        assert_eq!(
            leap.next_after(at("2026-12-07T00:00:00Z")),
            Some(at("2028-02-29T00:00:00Z"))
        );
        assert_eq!(
            leap.last_at_or_before(at("2026-12-07T00:00:00Z")),
            Some(at("2024-02-29T00:00:00Z"))
        );
        assert_eq!(
            schedule("0 0 31 2 *").next_after(at("2026-12-07T00:00:00Z")),
            None
        );
    }

    #[test]
    fn bad_schedules_say_what_is_wrong() {
        for (text, says) in [
            ("0 3 * *", "five fields"),
            ("60 3 * * *", "minute"),
            ("0 24 * * *", "hour"),
            ("0 0 0 * *", "day-of-month"),
            ("0 0 * 13 *", "month"),
            ("0 0 * * 8", "day-of-week"),
            ("*/0 * * * *", "step"),
            ("5-1 * * * *", "range"),
            ("@sometimes", "five fields"),
        ] {
            let e = text.parse::<Schedule>().unwrap_err();
            assert!(e.contains(says), "{text}: {e}");
        }
    }
}
