//! EventBridge Scheduler expressions: `cron(min hour day-of-month month day-of-week year)` in
//! an explicit IANA time zone, and `rate(N unit)`. Pure: parsing (errors name the part) and
//! the occurrences between two instants, so the CLI (`jobs claim --now`, `jobs list`), the
//! catch-up check and the missed-run check agree with the schedule Scheduler runs.
//!
//! Supported cron syntax: `*`, `?`, lists `a,b`, ranges `a-b`, steps `*/n` and `a-b/n` / `a/n`,
//! month and weekday names (`JAN`, `MON`); weekdays are 1-7 = SUN-SAT as in AWS. `L`, `W` and
//! `#` are rejected (no job uses them; a rejected expression is a clear error, never a guess).
//! A local time that does not exist (DST gap) has no occurrence; an ambiguous one (DST fold)
//! fires once, at the earlier instant.

use std::collections::BTreeSet;

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, Timelike, Utc};
use jiff::tz::{AmbiguousOffset, TimeZone};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    Cron(Cron),
    /// Every `minutes` minutes. Scheduler anchors a rate at the schedule's creation, which we
    /// cannot know: occurrences are taken on multiples of the period since the Unix epoch.
    Rate {
        minutes: i64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    minutes: BTreeSet<u32>,
    hours: BTreeSet<u32>,
    /// `None` = `?` (the other day field decides).
    days_of_month: Option<BTreeSet<u32>>,
    months: BTreeSet<u32>,
    /// chrono weekday numbers from Sunday = 0.
    days_of_week: Option<BTreeSet<u32>>,
    years: Option<BTreeSet<i32>>,
    tz: Tz,
}

/// An IANA time zone from jiff's bundled database (only `parse_timezone` makes one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tz(TimeZone);

impl Tz {
    pub fn name(&self) -> &str {
        self.0
            .iana_name()
            .expect("parse_timezone accepts IANA names only")
    }

    /// The local date at an instant.
    fn date_at(&self, t: DateTime<Utc>) -> NaiveDate {
        let local = self.0.to_datetime(to_timestamp(t));
        NaiveDate::from_ymd_opt(
            local.year().into(),
            local.month() as u32,
            local.day() as u32,
        )
        .expect("jiff's civil dates are valid chrono dates")
    }

    /// The instant of a local time: `None` in a DST gap (that time does not exist), the earlier
    /// instant in a fold (it happens twice).
    fn instant_of(&self, local: NaiveDateTime) -> Option<DateTime<Utc>> {
        let civil = jiff::civil::DateTime::new(
            i16::try_from(local.year()).ok()?,
            local.month() as i8,
            local.day() as i8,
            local.hour() as i8,
            local.minute() as i8,
            local.second() as i8,
            0,
        )
        .ok()?;
        let offset = match self.0.to_ambiguous_timestamp(civil).offset() {
            AmbiguousOffset::Unambiguous { offset } => offset,
            AmbiguousOffset::Gap { .. } => return None,
            // The offset before a fall-back transition is the larger one: the earlier instant.
            AmbiguousOffset::Fold { before, .. } => before,
        };
        let seconds = local.and_utc().timestamp() - i64::from(offset.seconds());
        DateTime::from_timestamp(seconds, 0)
    }
}

fn to_timestamp(t: DateTime<Utc>) -> jiff::Timestamp {
    jiff::Timestamp::from_second(t.timestamp()).expect("a chrono instant is in jiff's range")
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// An IANA time-zone name, spelled exactly (EventBridge Scheduler gets the same string).
pub fn parse_timezone(tz: &str) -> Result<Tz, String> {
    let not_iana = || format!("{tz:?} is not an IANA time zone (e.g. UTC, Asia/Tokyo)");
    let zone = jiff::tz::db().get(tz).map_err(|_| not_iana())?;
    match zone.iana_name() {
        Some(name) if name == tz => Ok(Tz(zone)),
        Some(name) => Err(format!("{tz:?} is spelled {name:?} in the IANA database")),
        None => Err(not_iana()),
    }
}

impl Schedule {
    /// Parse `cron(...)` or `rate(...)`, with the schedule's time zone.
    pub fn parse(expr: &str, timezone: &str) -> Result<Schedule, String> {
        let tz = parse_timezone(timezone)?;
        let expr = expr.trim();
        if let Some(body) = expr.strip_prefix("cron(").and_then(|r| r.strip_suffix(')')) {
            return Cron::parse(body, tz).map(Schedule::Cron);
        }
        if let Some(body) = expr.strip_prefix("rate(").and_then(|r| r.strip_suffix(')')) {
            let parts: Vec<&str> = body.split_whitespace().collect();
            let [n, unit] = parts[..] else {
                return Err(format!(
                    "{expr:?}: rate takes `N unit`, e.g. rate(15 minutes)"
                ));
            };
            let n: i64 = n
                .parse()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("{expr:?}: {n:?} is not a positive whole number"))?;
            let per = match (unit, n) {
                ("minute", 1) | ("minutes", 2..) => 1,
                ("hour", 1) | ("hours", 2..) => 60,
                ("day", 1) | ("days", 2..) => 1440,
                _ => {
                    return Err(format!(
                        "{expr:?}: unit must be minute(s), hour(s) or day(s) (singular only for 1)"
                    ))
                }
            };
            return Ok(Schedule::Rate { minutes: n * per });
        }
        Err(format!(
            "{expr:?} is neither cron(min hour dom month dow year) nor rate(N unit)"
        ))
    }

    /// Occurrences in `[from, to]`, ascending, at most `limit`.
    pub fn occurrences(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: usize,
    ) -> Vec<DateTime<Utc>> {
        match self {
            Schedule::Cron(c) => c.occurrences(from, to, limit),
            Schedule::Rate { minutes } => {
                let period = minutes * 60;
                let first = (from.timestamp() + period - 1).div_euclid(period) * period;
                let mut out = Vec::new();
                let mut t = first;
                while t <= to.timestamp() && out.len() < limit {
                    out.push(DateTime::from_timestamp(t, 0).expect("in range"));
                    t += period;
                }
                out
            }
        }
    }

    /// Whether `t` (to the minute) is an occurrence.
    pub fn is_occurrence(&self, t: DateTime<Utc>) -> bool {
        self.occurrences(t, t, 1).first() == Some(&t)
    }

    /// The latest occurrence at or before `t` within `window`.
    pub fn latest_at_or_before(&self, t: DateTime<Utc>, window: Duration) -> Option<DateTime<Utc>> {
        self.occurrences(t - window, t, usize::MAX).pop()
    }

    /// The next `n` occurrences after `t` (within five years).
    pub fn next(&self, t: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        self.occurrences(t + Duration::seconds(1), t + Duration::days(5 * 366), n)
    }
}

fn field(
    name: &str,
    text: &str,
    lo: u32,
    hi: u32,
    names: Option<(&[&str], u32)>,
) -> Result<BTreeSet<u32>, String> {
    let value = |s: &str| -> Result<u32, String> {
        if let Some((list, base)) = names {
            if let Some(i) = list.iter().position(|n| n.eq_ignore_ascii_case(s)) {
                return Ok(i as u32 + base);
            }
        }
        let v: u32 = s
            .parse()
            .map_err(|_| format!("{name}: {s:?} is not a number in {lo}-{hi}"))?;
        if v < lo || v > hi {
            return Err(format!("{name}: {v} is outside {lo}-{hi}"));
        }
        Ok(v)
    };
    let mut set = BTreeSet::new();
    for part in text.split(',') {
        if part.contains(['L', 'W', '#']) && names.is_none_or(|_| part.contains('#')) {
            return Err(format!(
                "{name}: {part:?} uses L, W or #, which batchless does not support"
            ));
        }
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => {
                let step: u32 = s
                    .parse()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| format!("{name}: step {s:?} is not a positive number"))?;
                (r, step)
            }
            None => (part, 1),
        };
        let (a, b) = if range == "*" {
            (lo, hi)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a)?, value(b)?)
        } else {
            let a = value(range)?;
            (a, if part.contains('/') { hi } else { a })
        };
        if a > b {
            return Err(format!("{name}: range {range:?} runs backwards"));
        }
        set.extend((a..=b).step_by(step as usize));
    }
    Ok(set)
}

impl Cron {
    fn parse(body: &str, tz: Tz) -> Result<Cron, String> {
        let f: Vec<&str> = body.split_whitespace().collect();
        if f.len() != 6 {
            return Err(format!(
                "cron({body}) has {} fields; Scheduler's cron has 6: minutes hours day-of-month month day-of-week year",
                f.len()
            ));
        }
        let dom_q = f[2] == "?";
        let dow_q = f[4] == "?";
        if dom_q == dow_q {
            return Err(format!(
                "cron({body}): exactly one of day-of-month and day-of-week must be `?`"
            ));
        }
        let years = if f[5] == "*" {
            None
        } else {
            Some(
                field("year", f[5], 1970, 2199, None)?
                    .into_iter()
                    .map(|y| y as i32)
                    .collect(),
            )
        };
        Ok(Cron {
            minutes: field("minutes", f[0], 0, 59, None)?,
            hours: field("hours", f[1], 0, 23, None)?,
            days_of_month: (!dom_q)
                .then(|| field("day-of-month", f[2], 1, 31, None))
                .transpose()?,
            months: field("month", f[3], 1, 12, Some((&MONTHS, 1)))?,
            days_of_week: (!dow_q)
                .then(|| field("day-of-week", f[4], 1, 7, Some((&DAYS, 1))))
                .transpose()?
                .map(|s| s.into_iter().map(|d| d - 1).collect()),
            years,
            tz,
        })
    }

    fn day_matches(&self, d: NaiveDate) -> bool {
        self.months.contains(&d.month())
            && self.years.as_ref().is_none_or(|y| y.contains(&d.year()))
            && self
                .days_of_month
                .as_ref()
                .is_none_or(|s| s.contains(&d.day()))
            && self
                .days_of_week
                .as_ref()
                .is_none_or(|s| s.contains(&d.weekday().num_days_from_sunday()))
    }

    fn occurrences(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: usize,
    ) -> Vec<DateTime<Utc>> {
        let mut out = Vec::new();
        if to < from {
            return out;
        }
        // Local days that can hold an instant in [from, to] (±1 day for offsets).
        let mut day = self.tz.date_at(from) - Duration::days(1);
        let last = self.tz.date_at(to) + Duration::days(1);
        while day <= last && out.len() < limit {
            if self.day_matches(day) {
                for h in &self.hours {
                    for m in &self.minutes {
                        let Some(naive) = day.and_hms_opt(*h, *m, 0) else {
                            continue;
                        };
                        let Some(t) = self.tz.instant_of(naive) else {
                            continue; // DST gap: that local time does not exist
                        };
                        if t >= from && t <= to {
                            out.push(t);
                            if out.len() >= limit {
                                return out;
                            }
                        }
                    }
                }
            }
            day += Duration::days(1);
        }
        out
    }
}

/// A change of a zone's UTC offset.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Transition {
    /// The instant of the change.
    pub at: DateTime<Utc>,
    pub offset_before: String,
    pub offset_after: String,
    /// Spring forward: local times in `[local_from, local_to)` do not exist. Otherwise (fall
    /// back) they happen twice.
    pub gap: bool,
    pub local_from: String,
    pub local_to: String,
    /// What the schedule does there: its local times that are skipped (gap) or that fire once,
    /// at the earlier instant (fold).
    pub affected: Vec<String>,
}

/// `batchless jobs next --around`: the occurrences within `days` of `around`, each with its
/// local time, and the zone's transitions in that window with what they do to the schedule —
/// as Scheduler does: a skipped local time has no occurrence, a repeated one fires once.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Preview {
    pub timezone: String,
    /// (UTC instant, local time with its offset).
    pub occurrences: Vec<(DateTime<Utc>, String)>,
    pub transitions: Vec<Transition>,
}

fn local_text(tz: &Tz, t: DateTime<Utc>) -> String {
    let zoned = to_timestamp(t).to_zoned(tz.0.clone());
    zoned.strftime("%Y-%m-%dT%H:%M%:z").to_string()
}

/// See [`Preview`]. `timezone` is the job's (a `rate()` has occurrences but no local times
/// that a transition could skip or repeat).
pub fn preview(
    schedule: &Schedule,
    timezone: &str,
    around: DateTime<Utc>,
    days: i64,
    limit: usize,
) -> Result<Preview, String> {
    let tz = parse_timezone(timezone)?;
    let from = around - Duration::days(days);
    let to = around + Duration::days(days);
    let occurrences = schedule
        .occurrences(from, to, limit)
        .into_iter()
        .map(|t| (t, local_text(&tz, t)))
        .collect();
    let mut transitions = Vec::new();
    for tr in tz.0.following(to_timestamp(from)) {
        let at = DateTime::from_timestamp(tr.timestamp().as_second(), 0).expect("in range");
        if at > to {
            break;
        }
        let before = tz.0.to_offset(to_timestamp(at - Duration::seconds(1)));
        let after = tr.offset();
        if before == after {
            continue; // an abbreviation change only
        }
        let diff = i64::from(after.seconds() - before.seconds());
        let gap = diff > 0;
        // The local times concerned: [at in the old offset, + |diff|) for a gap; [at in the new
        // offset, + |diff|) for a fold.
        let start_offset = if gap { before } else { after };
        let local_start =
            DateTime::from_timestamp(at.timestamp() + i64::from(start_offset.seconds()), 0)
                .expect("in range")
                .naive_utc();
        let local_end = local_start + Duration::seconds(diff.abs());
        let mut affected = Vec::new();
        if let Schedule::Cron(c) = schedule {
            let mut m = local_start;
            while m < local_end {
                if c.day_matches(m.date())
                    && c.hours.contains(&m.hour())
                    && c.minutes.contains(&m.minute())
                {
                    affected.push(if gap {
                        format!(
                            "{} local does not exist: no occurrence",
                            m.format("%Y-%m-%d %H:%M")
                        )
                    } else {
                        format!(
                            "{} local happens twice: fires once, at {} (the earlier)",
                            m.format("%Y-%m-%d %H:%M"),
                            crate::platform::time::rfc3339(
                                c.tz.instant_of(m).expect("a fold's local time exists")
                            )
                        )
                    });
                }
                m += Duration::minutes(1);
            }
        }
        transitions.push(Transition {
            at,
            offset_before: before.to_string(),
            offset_after: after.to_string(),
            gap,
            local_from: local_start.format("%Y-%m-%dT%H:%M").to_string(),
            local_to: local_end.format("%Y-%m-%dT%H:%M").to_string(),
            affected,
        });
    }
    Ok(Preview {
        timezone: tz.name().to_string(),
        occurrences,
        transitions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        crate::platform::time::parse("t", s).unwrap()
    }

    #[test]
    fn daily_in_tokyo() {
        let s = Schedule::parse("cron(0 3 * * ? *)", "Asia/Tokyo").unwrap();
        let next = s.next(t("2026-11-28T13:00:00Z"), 2);
        assert_eq!(
            next,
            vec![t("2026-11-28T18:00:00Z"), t("2026-11-29T18:00:00Z")]
        );
        assert!(s.is_occurrence(t("2026-11-28T18:00:00Z")));
        assert!(!s.is_occurrence(t("2026-11-28T18:01:00Z")));
    }

    #[test]
    fn steps_lists_names_and_weekdays() {
        let s = Schedule::parse("cron(*/15 9-17 ? * MON-FRI *)", "UTC").unwrap();
        // 2026-11-28 is a Saturday: the next is Monday 09:00.
        assert_eq!(
            s.next(t("2026-11-28T13:00:00Z"), 1),
            vec![t("2026-11-30T09:00:00Z")]
        );
        let s = Schedule::parse("cron(0 12 1,15 JAN,JUL ? *)", "UTC").unwrap();
        assert_eq!(
            s.next(t("2026-11-28T13:00:00Z"), 2),
            vec![t("2027-01-01T12:00:00Z"), t("2027-01-15T12:00:00Z")]
        );
        // AWS weekday 1 is Sunday.
        let s = Schedule::parse("cron(0 0 ? * 1 *)", "UTC").unwrap();
        assert_eq!(
            s.next(t("2026-11-28T13:00:00Z"), 1),
            vec![t("2026-11-29T00:00:00Z")]
        );
    }

    #[test]
    fn dst_gap_and_fold() {
        // New York springs forward on 2027-03-14: 02:30 does not exist that day.
        let s = Schedule::parse("cron(30 2 * * ? *)", "America/New_York").unwrap();
        let occ = s.occurrences(t("2027-03-13T00:00:00Z"), t("2027-03-16T00:00:00Z"), 10);
        assert_eq!(occ.len(), 2, "{occ:?}");
        // Falls back on 2027-11-07: 01:30 happens twice, fires once (the earlier).
        let s = Schedule::parse("cron(30 1 * * ? *)", "America/New_York").unwrap();
        let occ = s.occurrences(t("2027-11-07T00:00:00Z"), t("2027-11-07T12:00:00Z"), 10);
        assert_eq!(occ, vec![t("2027-11-07T05:30:00Z")]);
    }

    #[test]
    fn other_zones_half_hours_and_the_southern_hemisphere() {
        // Kolkata is UTC+05:30 all year.
        let s = Schedule::parse("cron(0 9 * * ? *)", "Asia/Kolkata").unwrap();
        let occ = s.occurrences(t("2027-01-01T00:00:00Z"), t("2027-01-02T23:59:59Z"), 10);
        assert_eq!(
            occ,
            vec![t("2027-01-01T03:30:00Z"), t("2027-01-02T03:30:00Z")]
        );
        // Berlin falls back on 2027-10-31: 02:30 happens twice, fires once at CEST (00:30Z).
        let s = Schedule::parse("cron(30 2 * * ? *)", "Europe/Berlin").unwrap();
        let occ = s.occurrences(t("2027-10-30T12:00:00Z"), t("2027-10-31T12:00:00Z"), 10);
        assert_eq!(occ, vec![t("2027-10-31T00:30:00Z")]);
        // Sydney springs forward on 2027-10-03 (local): 02:30 does not exist that day. 02:30 on
        // the 2nd is AEST (16:30Z on the 1st), on the 4th AEDT (15:30Z on the 3rd).
        let s = Schedule::parse("cron(30 2 * * ? *)", "Australia/Sydney").unwrap();
        let occ = s.occurrences(t("2027-10-01T00:00:00Z"), t("2027-10-04T00:00:00Z"), 10);
        assert_eq!(
            occ,
            vec![t("2027-10-01T16:30:00Z"), t("2027-10-03T15:30:00Z")]
        );
    }

    #[test]
    fn time_zone_names_are_exact() {
        assert_eq!(parse_timezone("Asia/Tokyo").unwrap().name(), "Asia/Tokyo");
        assert_eq!(
            parse_timezone("UTC").unwrap(),
            parse_timezone("UTC").unwrap()
        );
        assert_ne!(
            parse_timezone("UTC").unwrap(),
            parse_timezone("Asia/Tokyo").unwrap()
        );
        let err = parse_timezone("asia/tokyo").unwrap_err();
        assert!(err.contains("spelled \"Asia/Tokyo\""), "{err}");
        for bad in ["", "Mars/Base", "+09:00", "/etc/passwd"] {
            assert!(parse_timezone(bad).unwrap_err().contains("IANA"), "{bad:?}");
        }
    }

    #[test]
    fn rates() {
        let s = Schedule::parse("rate(15 minutes)", "UTC").unwrap();
        assert_eq!(
            s.next(t("2026-11-28T13:05:00Z"), 2),
            vec![t("2026-11-28T13:15:00Z"), t("2026-11-28T13:30:00Z")]
        );
        assert!(Schedule::parse("rate(1 minutes)", "UTC").is_err());
        assert!(Schedule::parse("rate(0 hours)", "UTC").is_err());
        assert!(Schedule::parse("rate(2 weeks)", "UTC").is_err());
    }

    #[test]
    fn latest_before() {
        let s = Schedule::parse("cron(*/15 * * * ? *)", "UTC").unwrap();
        assert_eq!(
            s.latest_at_or_before(t("2026-11-28T13:07:30Z"), Duration::minutes(30)),
            Some(t("2026-11-28T13:00:00Z"))
        );
        assert_eq!(
            s.latest_at_or_before(t("2026-11-28T13:07:30Z"), Duration::minutes(5)),
            None
        );
    }

    #[test]
    fn bad_expressions_say_what_is_wrong() {
        let cases = [
            ("cron(0 3 * * *)", "has 5 fields"),
            ("cron(0 3 * * * *)", "exactly one of day-of-month"),
            ("cron(0 3 ? * ? *)", "exactly one of day-of-month"),
            ("cron(61 3 * * ? *)", "minutes: 61 is outside 0-59"),
            ("cron(0 3 L * ? *)", "day-of-month"),
            ("cron(0 3 ? * 6#3 *)", "L, W or #"),
            ("cron(0 x * * ? *)", "hours"),
            ("every day", "neither cron"),
        ];
        for (expr, want) in cases {
            let err = Schedule::parse(expr, "UTC").unwrap_err();
            assert!(err.contains(want), "{expr}: {err}");
        }
        assert!(Schedule::parse("cron(0 3 * * ? *)", "Mars/Base")
            .unwrap_err()
            .contains("IANA"));
    }

    /// Issue 20: the 2027 transitions of New York and London, pinned: the spring-forward gaps
    /// skip the local times that do not exist, the fall-back folds fire once, at the earlier
    /// instant.
    #[test]
    fn dst_preview_pins_the_2027_gaps_and_folds() {
        // New York: springs forward 2027-03-14 02:00 EST -> 03:00 EDT, falls back 2027-11-07
        // 02:00 EDT -> 01:00 EST.
        let ny = Schedule::parse("cron(30 1,2 * * ? *)", "America/New_York").unwrap();
        let p = preview(&ny, "America/New_York", t("2027-03-14T12:00:00Z"), 1, 20).unwrap();
        assert_eq!(p.transitions.len(), 1, "{p:?}");
        let tr = &p.transitions[0];
        assert!(tr.gap);
        assert_eq!(tr.at, t("2027-03-14T07:00:00Z"));
        assert_eq!(
            (tr.offset_before.as_str(), tr.offset_after.as_str()),
            ("-05", "-04")
        );
        assert_eq!(
            (tr.local_from.as_str(), tr.local_to.as_str()),
            ("2027-03-14T02:00", "2027-03-14T03:00")
        );
        assert_eq!(
            tr.affected,
            vec!["2027-03-14 02:30 local does not exist: no occurrence"]
        );
        let on_the_day: Vec<&str> = p
            .occurrences
            .iter()
            .filter(|(_, l)| l.starts_with("2027-03-14"))
            .map(|(_, l)| l.as_str())
            .collect();
        assert_eq!(on_the_day, vec!["2027-03-14T01:30-05:00"]);

        let p = preview(&ny, "America/New_York", t("2027-11-07T12:00:00Z"), 1, 20).unwrap();
        let tr = &p.transitions[0];
        assert!(!tr.gap);
        assert_eq!(tr.at, t("2027-11-07T06:00:00Z"));
        assert_eq!(
            (tr.local_from.as_str(), tr.local_to.as_str()),
            ("2027-11-07T01:00", "2027-11-07T02:00")
        );
        assert_eq!(
            tr.affected,
            vec!["2027-11-07 01:30 local happens twice: fires once, at 2027-11-07T05:30:00Z (the earlier)"]
        );
        let on_the_day: Vec<DateTime<Utc>> = p
            .occurrences
            .iter()
            .filter(|(_, l)| l.starts_with("2027-11-07"))
            .map(|(u, _)| *u)
            .collect();
        // 01:30 EDT once (not again at 06:30Z EST), then 02:30 EST.
        assert_eq!(
            on_the_day,
            vec![t("2027-11-07T05:30:00Z"), t("2027-11-07T07:30:00Z")]
        );

        // London: springs forward 2027-03-28 01:00 GMT -> 02:00 BST, falls back 2027-10-31
        // 02:00 BST -> 01:00 GMT.
        let ldn = Schedule::parse("cron(30 1 * * ? *)", "Europe/London").unwrap();
        let p = preview(&ldn, "Europe/London", t("2027-03-28T12:00:00Z"), 1, 20).unwrap();
        let tr = &p.transitions[0];
        assert!(tr.gap);
        assert_eq!(tr.at, t("2027-03-28T01:00:00Z"));
        assert_eq!(
            tr.affected,
            vec!["2027-03-28 01:30 local does not exist: no occurrence"]
        );
        assert!(!p
            .occurrences
            .iter()
            .any(|(_, l)| l.starts_with("2027-03-28")));
        let p = preview(&ldn, "Europe/London", t("2027-10-31T12:00:00Z"), 1, 20).unwrap();
        let tr = &p.transitions[0];
        assert!(!tr.gap);
        assert_eq!(tr.at, t("2027-10-31T01:00:00Z"));
        assert_eq!(
            tr.affected,
            vec!["2027-10-31 01:30 local happens twice: fires once, at 2027-10-31T00:30:00Z (the earlier)"]
        );
        let on_the_day: Vec<&(DateTime<Utc>, String)> = p
            .occurrences
            .iter()
            .filter(|(_, l)| l.starts_with("2027-10-31"))
            .collect();
        assert_eq!(on_the_day.len(), 1, "{on_the_day:?}");
        assert_eq!(on_the_day[0].1, "2027-10-31T01:30+01:00");
        // A UTC job has no transitions.
        let utc = Schedule::parse("cron(30 1 * * ? *)", "UTC").unwrap();
        assert!(preview(&utc, "UTC", t("2027-10-31T12:00:00Z"), 3, 20)
            .unwrap()
            .transitions
            .is_empty());
    }
}
