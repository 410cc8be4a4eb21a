//! Per-person date shifting.
//!
//! Under [`DatePolicy::Shift`] every date of a person moves by the same number of days,
//! drawn from the person's pseudonym with the key ([`Pseudonymiser::date_shift_days`]):
//! intervals between a person's events are kept, calendar dates are not, and the shift is
//! recomputed, never stored. It is never 0. [`DatePolicy::KeepTrueDates`] is for registries
//! whose governance allows true dates.

use chrono::{Days, NaiveDate, NaiveDateTime};
use serde::{Deserialize, Serialize};

use crate::pseudonym::{Pseudonym, Pseudonymiser};

/// Largest accepted |shift|, in days (100 years): a bound against configuration mistakes.
pub const MAX_ABS_SHIFT_DAYS: i32 = 36_525;

/// A refused [`ShiftWindow`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DateShiftError {
    /// `min_days > max_days`.
    #[error("date-shift window is empty: min_days ({min}) > max_days ({max})")]
    Empty {
        /// The window's lower bound.
        min: i32,
        /// The window's upper bound.
        max: i32,
    },
    /// The window is exactly `0..=0`, which would keep true dates: use `KeepTrueDates`.
    #[error("date-shift window 0..=0 would not shift dates; use the keep-true-dates policy")]
    ZeroOnly,
    /// A bound is beyond [`MAX_ABS_SHIFT_DAYS`].
    #[error("date-shift window {min}..={max} exceeds {MAX_ABS_SHIFT_DAYS} days")]
    TooWide {
        /// The window's lower bound.
        min: i32,
        /// The window's upper bound.
        max: i32,
    },
}

/// The inclusive range of date shifts, in days. Build it with [`ShiftWindow::new`]
/// (deserialisation checks it the same way). The default is `-365..=-30`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "RawShiftWindow")]
pub struct ShiftWindow {
    /// Smallest shift, in days (may be negative).
    pub min_days: i32,
    /// Largest shift, in days.
    pub max_days: i32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawShiftWindow {
    min_days: i32,
    max_days: i32,
}

impl TryFrom<RawShiftWindow> for ShiftWindow {
    type Error = DateShiftError;

    fn try_from(raw: RawShiftWindow) -> Result<Self, Self::Error> {
        ShiftWindow::new(raw.min_days, raw.max_days)
    }
}

impl ShiftWindow {
    /// A window `min_days..=max_days`. Refuses `min > max`, the window `0..=0`, and bounds
    /// beyond ±[`MAX_ABS_SHIFT_DAYS`].
    pub fn new(min_days: i32, max_days: i32) -> Result<ShiftWindow, DateShiftError> {
        if min_days > max_days {
            return Err(DateShiftError::Empty {
                min: min_days,
                max: max_days,
            });
        }
        if min_days == 0 && max_days == 0 {
            return Err(DateShiftError::ZeroOnly);
        }
        if min_days < -MAX_ABS_SHIFT_DAYS || max_days > MAX_ABS_SHIFT_DAYS {
            return Err(DateShiftError::TooWide {
                min: min_days,
                max: max_days,
            });
        }
        Ok(ShiftWindow { min_days, max_days })
    }

    /// The shift for a draw: uniform over the window (`draw mod size`), skipping 0.
    ///
    /// # Panics
    ///
    /// If the fields were set by hand to a window that [`ShiftWindow::new`] refuses.
    fn pick(&self, draw: u64) -> i32 {
        let checked = ShiftWindow::new(self.min_days, self.max_days)
            .unwrap_or_else(|e| panic!("invalid ShiftWindow: {e}"));
        let (lo, hi) = (i64::from(checked.min_days), i64::from(checked.max_days));
        let contains_zero = lo <= 0 && 0 <= hi;
        let size = (hi - lo + 1) as u64 - u64::from(contains_zero);
        let mut days = lo + (draw % size) as i64;
        if contains_zero && days >= 0 {
            days += 1;
        }
        days as i32
    }
}

impl Default for ShiftWindow {
    fn default() -> Self {
        ShiftWindow {
            min_days: -365,
            max_days: -30,
        }
    }
}

/// How dates of a person are written to the registry.
///
/// Serialised internally tagged, e.g. `{"mode":"shift","min_days":-365,"max_days":-30}` or
/// `{"mode":"keep-true-dates"}`. The default is `Shift` with the default window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "kebab-case")]
pub enum DatePolicy {
    /// Shift every date of a person by the person's shift, drawn from the window.
    Shift(ShiftWindow),
    /// Keep true dates (shift 0).
    KeepTrueDates,
}

impl Default for DatePolicy {
    fn default() -> Self {
        DatePolicy::Shift(ShiftWindow::default())
    }
}

impl Pseudonymiser {
    /// The person's date shift in days: 0 under [`DatePolicy::KeepTrueDates`]; otherwise
    /// uniform over the window (the first 8 bytes of `HMAC("dateshift\0" + pseudonym)` as a
    /// big-endian u64, modulo the window size) and never 0: if the window contains 0, the
    /// draw is over the window without 0. Stable for a given key, domain and pseudonym.
    ///
    /// # Panics
    ///
    /// If the window's public fields were set by hand to one [`ShiftWindow::new`] refuses.
    pub fn date_shift_days(&self, policy: &DatePolicy, person: &Pseudonym) -> i32 {
        match policy {
            DatePolicy::KeepTrueDates => 0,
            DatePolicy::Shift(window) => window.pick(self.dateshift_draw(person)),
        }
    }
}

/// `date` moved by `days` (negative: earlier).
///
/// # Panics
///
/// If the result is outside chrono's range (beyond year ±262,000); see
/// [`checked_shift_date`].
pub fn shift_date(date: NaiveDate, days: i32) -> NaiveDate {
    checked_shift_date(date, days).expect("shifted date out of range")
}

/// `date` moved by `days`, or `None` if that leaves chrono's range.
pub fn checked_shift_date(date: NaiveDate, days: i32) -> Option<NaiveDate> {
    let n = Days::new(u64::from(days.unsigned_abs()));
    if days >= 0 {
        date.checked_add_days(n)
    } else {
        date.checked_sub_days(n)
    }
}

/// `datetime` moved by `days` whole days; the time of day is kept.
///
/// # Panics
///
/// If the result is outside chrono's range; see [`checked_shift_datetime`].
pub fn shift_datetime(datetime: NaiveDateTime, days: i32) -> NaiveDateTime {
    checked_shift_datetime(datetime, days).expect("shifted date-time out of range")
}

/// `datetime` moved by `days` whole days, or `None` if that leaves chrono's range.
pub fn checked_shift_datetime(datetime: NaiveDateTime, days: i32) -> Option<NaiveDateTime> {
    checked_shift_date(datetime.date(), days).map(|d| d.and_time(datetime.time()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::Key;
    use crate::pseudonym::IdentifierType;

    fn pseudonymiser() -> Pseudonymiser {
        Key::from_bytes([7u8; 32])
            .domain("person")
            .unwrap()
            .pseudonymiser()
    }

    fn people(p: &Pseudonymiser, n: usize) -> Vec<Pseudonym> {
        (0..n)
            .map(|i| p.person(IdentifierType::Mrn, &format!("M{i}")).unwrap())
            .collect()
    }

    #[test]
    fn window_validation() {
        assert_eq!(
            ShiftWindow::new(5, 4),
            Err(DateShiftError::Empty { min: 5, max: 4 })
        );
        assert_eq!(ShiftWindow::new(0, 0), Err(DateShiftError::ZeroOnly));
        assert!(matches!(
            ShiftWindow::new(-40_000, -1),
            Err(DateShiftError::TooWide { .. })
        ));
        assert!(ShiftWindow::new(0, 1).is_ok());
        assert!(ShiftWindow::new(3, 3).is_ok());
        assert_eq!(ShiftWindow::default(), ShiftWindow::new(-365, -30).unwrap());
        assert_eq!(
            DatePolicy::default(),
            DatePolicy::Shift(ShiftWindow::default())
        );
    }

    #[test]
    fn policy_serde() {
        let shift = DatePolicy::Shift(ShiftWindow::new(-10, 10).unwrap());
        let json = serde_json::to_string(&shift).unwrap();
        assert_eq!(json, r#"{"mode":"shift","min_days":-10,"max_days":10}"#);
        assert_eq!(serde_json::from_str::<DatePolicy>(&json).unwrap(), shift);
        let keep = serde_json::to_string(&DatePolicy::KeepTrueDates).unwrap();
        assert_eq!(keep, r#"{"mode":"keep-true-dates"}"#);
        assert_eq!(
            serde_json::from_str::<DatePolicy>(&keep).unwrap(),
            DatePolicy::KeepTrueDates
        );
        // Deserialisation validates like ShiftWindow::new.
        for bad in [
            r#"{"mode":"shift","min_days":0,"max_days":0}"#,
            r#"{"mode":"shift","min_days":5,"max_days":-5}"#,
            r#"{"min_days":0,"max_days":0}"#,
        ] {
            assert!(serde_json::from_str::<DatePolicy>(bad).is_err(), "{bad}");
            assert!(serde_json::from_str::<ShiftWindow>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn keep_true_dates_is_zero() {
        let p = pseudonymiser();
        for person in people(&p, 50) {
            assert_eq!(p.date_shift_days(&DatePolicy::KeepTrueDates, &person), 0);
        }
    }

    #[test]
    fn shifts_are_in_window_never_zero_and_stable() {
        let p = pseudonymiser();
        let again = pseudonymiser();
        let persons = people(&p, 3000);
        for (min, max) in [
            (-365, -30),
            (-3, 3),
            (0, 2),
            (-2, 0),
            (-1, 1),
            (0, 1),
            (7, 7),
        ] {
            let policy = DatePolicy::Shift(ShiftWindow::new(min, max).unwrap());
            let mut seen = std::collections::BTreeSet::new();
            for person in &persons {
                let d = p.date_shift_days(&policy, person);
                assert!((min..=max).contains(&d), "{d} not in {min}..={max}");
                assert_ne!(d, 0);
                assert_eq!(d, p.date_shift_days(&policy, person));
                assert_eq!(d, again.date_shift_days(&policy, person));
                seen.insert(d);
            }
            // Every non-zero value of a small window is drawn.
            let expected = (min..=max).filter(|&d| d != 0).count();
            if expected <= 10 {
                assert_eq!(seen.len(), expected, "{min}..={max}: {seen:?}");
            } else {
                assert!(seen.len() > expected / 2, "{min}..={max}: {}", seen.len());
            }
        }
        // Different persons get different shifts (not all equal).
        let policy = DatePolicy::default();
        let first = p.date_shift_days(&policy, &persons[0]);
        assert!(persons
            .iter()
            .any(|x| p.date_shift_days(&policy, x) != first));
    }

    #[test]
    fn shift_follows_the_documented_draw() {
        let p = pseudonymiser();
        let person = people(&p, 1).remove(0);
        let draw = p.dateshift_draw(&person);
        let policy = DatePolicy::Shift(ShiftWindow::default());
        assert_eq!(
            p.date_shift_days(&policy, &person),
            -365 + (draw % 336) as i32
        );
        // Window -1..=1 without 0: index 0 -> -1, index 1 -> +1.
        let policy = DatePolicy::Shift(ShiftWindow::new(-1, 1).unwrap());
        let expected = if draw.is_multiple_of(2) { -1 } else { 1 };
        assert_eq!(p.date_shift_days(&policy, &person), expected);
    }

    #[test]
    #[should_panic(expected = "invalid ShiftWindow")]
    fn hand_made_zero_window_panics() {
        let p = pseudonymiser();
        let person = people(&p, 1).remove(0);
        let window = ShiftWindow {
            min_days: 0,
            max_days: 0,
        };
        p.date_shift_days(&DatePolicy::Shift(window), &person);
    }

    #[test]
    fn shifting_dates() {
        let d = NaiveDate::from_ymd_opt(2024, 3, 1).unwrap();
        assert_eq!(
            shift_date(d, -1),
            NaiveDate::from_ymd_opt(2024, 2, 29).unwrap()
        );
        assert_eq!(
            shift_date(d, 365),
            NaiveDate::from_ymd_opt(2025, 3, 1).unwrap()
        );
        assert_eq!(shift_date(d, 0), d);
        let dt = d.and_hms_micro_opt(13, 45, 7, 123_456).unwrap();
        let shifted = shift_datetime(dt, -30);
        assert_eq!(
            shifted,
            NaiveDate::from_ymd_opt(2024, 1, 31)
                .unwrap()
                .and_hms_micro_opt(13, 45, 7, 123_456)
                .unwrap()
        );
        assert_eq!(checked_shift_date(NaiveDate::MAX, 1), None);
        assert_eq!(checked_shift_datetime(NaiveDateTime::MIN, -1), None);
        // A person's intervals are preserved.
        let a = NaiveDate::from_ymd_opt(2020, 1, 10).unwrap();
        let b = NaiveDate::from_ymd_opt(2021, 6, 3).unwrap();
        assert_eq!(shift_date(b, -200) - shift_date(a, -200), b - a);
    }
}
