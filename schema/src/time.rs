//! Event timestamps: an instant plus the UTC offset it was written with, so that features such as
//! "night" and "weekend" can use the local time where the payment happened.

use std::fmt;

use chrono::{DateTime, FixedOffset, SecondsFormat};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::ids::deserialize_parsed;

/// 2000-01-01T00:00:00Z: the earliest timestamp the contract accepts.
const MIN_UNIX_SECONDS: i64 = 946_684_800;
/// 2100-01-01T00:00:00Z: timestamps must be before it.
const MAX_UNIX_SECONDS: i64 = 4_102_444_800;
const SECONDS_PER_DAY: i64 = 86_400;

/// An RFC 3339 timestamp between the years 2000 and 2099, kept to the millisecond.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Timestamp {
    unix_millis: i64,
    offset_minutes: i16,
}

impl Timestamp {
    pub fn parse(text: &str) -> Result<Self, &'static str> {
        let parsed =
            DateTime::parse_from_rfc3339(text).map_err(|_| "must be an RFC 3339 timestamp")?;
        Self::from_unix_millis(
            parsed.timestamp_millis(),
            parsed.offset().local_minus_utc() / 60,
        )
    }

    /// A timestamp at `unix_millis` written with a UTC offset of `offset_minutes`.
    pub fn from_unix_millis(unix_millis: i64, offset_minutes: i32) -> Result<Self, &'static str> {
        if !(MIN_UNIX_SECONDS * 1000..MAX_UNIX_SECONDS * 1000).contains(&unix_millis) {
            return Err("must be between 2000-01-01 and 2099-12-31");
        }
        let offset_minutes = i16::try_from(offset_minutes)
            .ok()
            .filter(|m| m.abs() < 24 * 60)
            .ok_or("has a UTC offset out of range")?;
        Ok(Self {
            unix_millis,
            offset_minutes,
        })
    }

    pub fn unix_millis(self) -> i64 {
        self.unix_millis
    }

    pub fn unix_seconds(self) -> i64 {
        self.unix_millis.div_euclid(1000)
    }

    pub fn offset_minutes(self) -> i16 {
        self.offset_minutes
    }

    /// Seconds since the epoch on the local wall clock of the offset.
    fn local_seconds(self) -> i64 {
        self.unix_seconds() + i64::from(self.offset_minutes) * 60
    }

    /// The local hour of day, 0 to 23.
    pub fn local_hour(self) -> u8 {
        (self.local_seconds().rem_euclid(SECONDS_PER_DAY) / 3600) as u8
    }

    /// The local day of the week, Monday = 0 to Sunday = 6.
    pub fn local_weekday(self) -> u8 {
        // 1970-01-01 was a Thursday.
        (self.local_seconds().div_euclid(SECONDS_PER_DAY) + 3).rem_euclid(7) as u8
    }

    /// The UTC day number since the epoch.
    pub fn utc_day(self) -> i64 {
        self.unix_seconds().div_euclid(SECONDS_PER_DAY)
    }

    fn to_chrono(self) -> Option<DateTime<FixedOffset>> {
        let offset = FixedOffset::east_opt(i32::from(self.offset_minutes) * 60)?;
        Some(DateTime::from_timestamp_millis(self.unix_millis)?.with_timezone(&offset))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_chrono() {
            Some(t) => f.write_str(&t.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
            None => write!(f, "{}ms", self.unix_millis),
        }
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_parsed(deserializer, Self::parse)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_offset_for_local_time() {
        let t = Timestamp::parse("2026-03-07T23:30:00+01:00").unwrap();
        assert_eq!(t.local_hour(), 23);
        assert_eq!(t.local_weekday(), 5); // a Saturday
        assert_eq!(
            t.unix_seconds(),
            Timestamp::parse("2026-03-07T22:30:00Z")
                .unwrap()
                .unix_seconds()
        );
        assert_eq!(t.to_string(), "2026-03-07T23:30:00+01:00");
        assert_eq!(
            Timestamp::parse("2026-03-07T22:30:00.250Z")
                .unwrap()
                .to_string(),
            "2026-03-07T22:30:00.250Z"
        );
    }

    #[test]
    fn refuses_bad_and_out_of_range_times() {
        assert!(Timestamp::parse("2026-03-07 22:30").is_err());
        assert!(Timestamp::parse("1999-12-31T23:59:59Z").is_err());
        assert!(Timestamp::parse("2100-01-01T00:00:00Z").is_err());
    }
}
