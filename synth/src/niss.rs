//! Belgian national numbers (NISS / INSZ / SSIN): `YY.MM.DD-XXX.CC`.
//!
//! `XXX` is a day serial (odd for men, even for women) and `CC` is `97 - (N mod 97)` where `N`
//! is the first nine digits read as a number, prefixed with a `2` for births from 2000 on.

use chrono::{Datelike, NaiveDate};

/// The eleven digits of the national number of someone born on `birth` with day serial
/// `serial` (1..=998).
pub fn niss_digits(birth: NaiveDate, serial: u16) -> String {
    assert!((1..=998).contains(&serial), "serial {serial} out of range");
    let yy = birth.year().rem_euclid(100) as u64;
    let base = yy * 10_000_000
        + u64::from(birth.month()) * 100_000
        + u64::from(birth.day()) * 1000
        + u64::from(serial);
    let checked = if birth.year() >= 2000 {
        2_000_000_000 + base
    } else {
        base
    };
    let check = 97 - checked % 97;
    format!("{base:09}{check:02}")
}

/// The national number formatted as `YY.MM.DD-XXX.CC`.
pub fn format_niss(digits: &str) -> String {
    assert_eq!(digits.len(), 11);
    format!(
        "{}.{}.{}-{}.{}",
        &digits[0..2],
        &digits[2..4],
        &digits[4..6],
        &digits[6..9],
        &digits[9..11]
    )
}

/// True when `niss` (11 digits, or formatted with `.` and `-`) has a valid check number for a
/// birth in the 1900s or in the 2000s.
pub fn niss_is_valid(niss: &str) -> bool {
    let digits: String = niss.chars().filter(|c| *c != '.' && *c != '-').collect();
    if digits.len() != 11 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let base: u64 = digits[..9].parse().unwrap_or(0);
    let check: u64 = digits[9..].parse().unwrap_or(0);
    check == 97 - base % 97 || check == 97 - (2_000_000_000 + base) % 97
}

/// True when the day serial of a valid national number marks a man (odd).
pub fn niss_is_male(niss: &str) -> bool {
    let digits: String = niss.chars().filter(|c| c.is_ascii_digit()).collect();
    digits.len() == 11 && digits.as_bytes()[8] % 2 == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_check_digits() {
        // 1985-07-30, serial 033: 850730033 mod 97 = 69 -> 28.
        let d = niss_digits(NaiveDate::from_ymd_opt(1985, 7, 30).unwrap(), 33);
        assert_eq!(d, "85073003328");
        assert_eq!(format_niss(&d), "85.07.30-033.28");
        assert!(niss_is_valid("85.07.30-033.28"));
        assert!(niss_is_male("85.07.30-033.28"));
        assert!(!niss_is_valid("85.07.30-033.27"));
    }

    #[test]
    fn births_from_2000_use_the_prefix() {
        let d = niss_digits(NaiveDate::from_ymd_opt(2001, 2, 3).unwrap(), 2);
        let base: u64 = d[..9].parse().unwrap();
        let check: u64 = d[9..].parse().unwrap();
        assert_eq!(check, 97 - (2_000_000_000 + base) % 97);
        assert!(niss_is_valid(&d));
        assert!(!niss_is_male(&d));
    }
}
