//! Requests per day as Google counts them: the day runs from midnight to midnight in
//! America/Los_Angeles (SPEC 4), not UTC, with daylight saving time.

use super::clock::Millis;
use chrono::{Days, NaiveTime, TimeZone, Utc};
use chrono_tz::America::Los_Angeles;

/// The start and end (ms) of the Pacific day holding `t`.
pub fn pacific_day(t: Millis) -> (Millis, Millis) {
    let Some(utc) = Utc.timestamp_millis_opt(t as i64).single() else {
        return (t, t + 86_400_000);
    };
    let date = utc.with_timezone(&Los_Angeles).date_naive();
    let midnight = |d: chrono::NaiveDate| {
        Los_Angeles
            .from_local_datetime(&d.and_time(NaiveTime::MIN))
            .earliest()
            .map_or(t, |dt| dt.timestamp_millis() as Millis)
    };
    let next = date.checked_add_days(Days::new(1)).unwrap_or(date);
    (midnight(date), midnight(next))
}

/// Requests counted in the current Pacific day.
#[derive(Default)]
pub struct DayCount {
    ends: Millis,
    count: u64,
}

impl DayCount {
    fn roll(&mut self, now: Millis) {
        if now >= self.ends {
            self.ends = pacific_day(now).1;
            self.count = 0;
        }
    }

    pub fn count(&mut self, now: Millis) -> u64 {
        self.roll(now);
        self.count
    }

    pub fn has_room(&mut self, now: Millis, rpd: Option<u64>) -> bool {
        self.roll(now);
        rpd.is_none_or(|limit| self.count < limit)
    }

    pub fn charge(&mut self, now: Millis) {
        self.roll(now);
        self.count += 1;
    }

    /// Takes back a charge made at `charged_at`, if that day is still the current one.
    pub fn refund(&mut self, now: Millis, charged_at: Millis) {
        self.roll(now);
        if charged_at < self.ends && pacific_day(charged_at).1 == self.ends {
            self.count = self.count.saturating_sub(1);
        }
    }

    /// When the count resets.
    pub fn ends(&mut self, now: Millis) -> Millis {
        self.roll(now);
        self.ends
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::DateTime;

    fn ms(rfc3339: &str) -> Millis {
        DateTime::parse_from_rfc3339(rfc3339).unwrap().timestamp_millis() as Millis
    }

    #[test]
    fn days_turn_at_pacific_midnight() {
        // 2026-07-01 06:59 UTC is 23:59 PDT on June 30.
        let (start, end) = pacific_day(ms("2026-07-01T06:59:00Z"));
        assert_eq!(start, ms("2026-06-30T07:00:00Z"));
        assert_eq!(end, ms("2026-07-01T07:00:00Z"));
        // In winter the offset is -8.
        assert_eq!(pacific_day(ms("2026-12-04T12:00:00Z")).1, ms("2026-12-05T08:00:00Z"));
        // The day DST ends is 25 hours long.
        let (s, e) = pacific_day(ms("2026-11-01T12:00:00Z"));
        assert_eq!(e - s, 25 * 3_600_000);
    }

    #[test]
    fn counts_reset_at_the_pacific_midnight_not_utc() {
        let mut day = DayCount::default();
        let before_utc_midnight = ms("2026-12-04T23:30:00Z"); // 15:30 PST
        for _ in 0..3 {
            day.charge(before_utc_midnight);
        }
        assert!(!day.has_room(before_utc_midnight, Some(3)));
        // UTC midnight passes: still the same Pacific day.
        assert!(!day.has_room(ms("2026-12-05T00:30:00Z"), Some(3)));
        // Pacific midnight (08:00 UTC): a new day.
        assert!(day.has_room(ms("2026-12-05T08:00:00Z"), Some(3)));
        assert_eq!(day.count(ms("2026-12-05T08:00:00Z")), 0);
    }
}
