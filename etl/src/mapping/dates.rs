//! Strict date formats: a cell is a date only if the whole cell matches a declared format
//! exactly. Nothing is guessed: `7/1/1989` does not match `%d/%m/%Y` (two digits are
//! declared), `1993-08-2` does not match `%Y-%m-%d`, `01/07/89` is a two-digit year and matches
//! only a format with `%y` and a declared pivot year.
//!
//! Directives (a subset of strftime, each with a fixed width unless it says otherwise):
//!
//! | directive | matches |
//! |---|---|
//! | `%Y` | a year of exactly four digits |
//! | `%y` | a year of two digits (needs `pivot_year`: `yy` becomes the year in `pivot..pivot+99`) |
//! | `%m`, `%d` | month, day of exactly two digits |
//! | `%-m`, `%-d` | month, day of one or two digits (exports that do not pad) |
//! | `%b`, `%B` | English month name, abbreviated (`Jan`) or full (`January`), any case |
//! | `%H`, `%M`, `%S` | hour, minute, second of two digits |
//! | `%.f` | an optional fraction of a second (`.123`) |
//! | `%F`, `%T` | `%Y-%m-%d`, `%H:%M:%S` |
//! | `%%` | `%` |
//!
//! Any other character must appear as it is. Two pseudo-formats stand alone: `excel` (a
//! day serial number as spreadsheets store dates, days since 1899-12-30) and `fhir` (FHIR's
//! `date` and `dateTime`: `2024-05-01`, `2024-05-01T10:00:00+02:00`, kept as the local time
//! written; partial dates such as `2024-05` are refused for a day-precise column).
//!
//! A value that fails only because its day and month are in the other order (a "month" above
//! 12 that is a valid day, and a "day" that is a valid month) is reported as such: the
//! importer rejects the column's file as a whole, since such a column cannot be trusted in
//! any row.

use chrono::{NaiveDate, NaiveDateTime, NaiveTime};

/// One element of a compiled format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Item {
    Year4,
    Year2,
    Month { min: u8 },
    MonthName { full: bool },
    Day { min: u8 },
    Hour,
    Minute,
    Second,
    Fraction,
    Lit(char),
}

/// A compiled date format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DateFormat {
    Pattern {
        text: String,
        items: Vec<Item>,
        has_time: bool,
    },
    Excel,
    Fhir,
}

/// Why a format cannot be used (found by `mapping check`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("`{0}`: unknown directive `%{1}` (see the mapping reference for the supported ones)")]
    Unknown(String, String),
    #[error("`{0}` ends in a lone `%`")]
    Dangling(String),
    #[error("`{0}` has no year, month and day")]
    Incomplete(String),
    #[error("`{0}` uses a two-digit year (%y): declare `pivot_year` (e.g. 1930: 29 is 2029, 30 is 1930)")]
    NoPivot(String),
    #[error("`{0}` names a field twice")]
    Twice(String),
}

/// Why a cell is not a date (no value is ever part of the message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateError {
    /// The cell matches none of the declared formats.
    NoMatch,
    /// The cell has a two-digit year where the format declares four.
    TwoDigitYear,
    /// The cell has the shape of a format but is not a calendar date (31/02).
    Invalid,
    /// As [`DateError::Invalid`], but it would be a date with day and month swapped.
    DayMonthOrder,
    /// A FHIR date with less than day precision.
    Partial,
}

impl DateError {
    /// The reason code recorded in `registry.reject`.
    pub fn code(self) -> &'static str {
        match self {
            DateError::NoMatch => "date_format",
            DateError::TwoDigitYear => "date_two_digit_year",
            DateError::Invalid => "date_invalid",
            DateError::DayMonthOrder => "date_order",
            DateError::Partial => "date_partial",
        }
    }

    /// What to say, given the declared formats as text.
    pub fn describe(self, formats: &str) -> String {
        match self {
            DateError::NoMatch => format!("not a date in the declared format(s) {formats}"),
            DateError::TwoDigitYear => format!(
                "the year has two digits but the declared format(s) {formats} want four; \
                 declare a %y format with pivot_year if two-digit years are meant"
            ),
            DateError::Invalid => format!(
                "has the shape of {formats} but is not a calendar date (e.g. the 31st of a 30-day month)"
            ),
            DateError::DayMonthOrder => format!(
                "is a date only with day and month swapped: the column is not in {formats}"
            ),
            DateError::Partial => {
                "is a partial date (year or year and month only); the column needs a day".into()
            }
        }
    }
}

const MONTHS: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];

impl DateFormat {
    /// Compile a format string (`%d/%m/%Y`, `excel`, `fhir`).
    pub fn parse(text: &str, pivot: Option<i32>) -> Result<Self, FormatError> {
        match text {
            "excel" => return Ok(DateFormat::Excel),
            "fhir" => return Ok(DateFormat::Fhir),
            _ => {}
        }
        let mut items = Vec::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '%' {
                items.push(Item::Lit(c));
                continue;
            }
            let Some(d) = chars.next() else {
                return Err(FormatError::Dangling(text.into()));
            };
            let mut push = |i: &[Item]| items.extend_from_slice(i);
            match d {
                'Y' => push(&[Item::Year4]),
                'y' => push(&[Item::Year2]),
                'm' => push(&[Item::Month { min: 2 }]),
                'd' => push(&[Item::Day { min: 2 }]),
                'b' | 'h' => push(&[Item::MonthName { full: false }]),
                'B' => push(&[Item::MonthName { full: true }]),
                'H' => push(&[Item::Hour]),
                'M' => push(&[Item::Minute]),
                'S' => push(&[Item::Second]),
                'F' => push(&[
                    Item::Year4,
                    Item::Lit('-'),
                    Item::Month { min: 2 },
                    Item::Lit('-'),
                    Item::Day { min: 2 },
                ]),
                'T' => push(&[
                    Item::Hour,
                    Item::Lit(':'),
                    Item::Minute,
                    Item::Lit(':'),
                    Item::Second,
                ]),
                '%' => push(&[Item::Lit('%')]),
                '.' if chars.peek() == Some(&'f') => {
                    chars.next();
                    push(&[Item::Fraction]);
                }
                '-' => match chars.next() {
                    Some('m') => push(&[Item::Month { min: 1 }]),
                    Some('d') => push(&[Item::Day { min: 1 }]),
                    other => {
                        return Err(FormatError::Unknown(
                            text.into(),
                            format!("-{}", other.map(String::from).unwrap_or_default()),
                        ))
                    }
                },
                other => return Err(FormatError::Unknown(text.into(), other.to_string())),
            }
        }
        let count = |f: &dyn Fn(&Item) -> bool| items.iter().filter(|i| f(i)).count();
        let years = count(&|i| matches!(i, Item::Year4 | Item::Year2));
        let months = count(&|i| matches!(i, Item::Month { .. } | Item::MonthName { .. }));
        let days = count(&|i| matches!(i, Item::Day { .. }));
        if years == 0 || months == 0 || days == 0 {
            return Err(FormatError::Incomplete(text.into()));
        }
        let once = [
            years,
            months,
            days,
            count(&|i| *i == Item::Hour),
            count(&|i| *i == Item::Minute),
            count(&|i| *i == Item::Second),
        ];
        if once.iter().any(|&n| n > 1) {
            return Err(FormatError::Twice(text.into()));
        }
        if items.contains(&Item::Year2) && pivot.is_none() {
            return Err(FormatError::NoPivot(text.into()));
        }
        let has_time = items.contains(&Item::Hour);
        Ok(DateFormat::Pattern {
            text: text.into(),
            items,
            has_time,
        })
    }

    /// The format as written in the mapping.
    pub fn text(&self) -> &str {
        match self {
            DateFormat::Pattern { text, .. } => text,
            DateFormat::Excel => "excel",
            DateFormat::Fhir => "fhir",
        }
    }

    /// Parse a whole cell (already trimmed by the caller).
    pub fn parse_cell(&self, s: &str, pivot: Option<i32>) -> Result<NaiveDateTime, DateError> {
        match self {
            DateFormat::Excel => excel_serial(s).ok_or(DateError::NoMatch),
            DateFormat::Fhir => fhir(s),
            DateFormat::Pattern { items, .. } => {
                let f = match fields(items, s.as_bytes()) {
                    Some(f) => f,
                    None => {
                        // The same shape with two-digit years in place of four?
                        if items.contains(&Item::Year4) {
                            let two: Vec<Item> = items
                                .iter()
                                .map(|i| if *i == Item::Year4 { Item::Year2 } else { *i })
                                .collect();
                            if fields(&two, s.as_bytes()).is_some() {
                                return Err(DateError::TwoDigitYear);
                            }
                        }
                        return Err(DateError::NoMatch);
                    }
                };
                let year = match (f.year, f.year2) {
                    (Some(y), _) => y,
                    (None, Some(yy)) => {
                        let p = pivot.ok_or(DateError::TwoDigitYear)?;
                        let mut y = p - p.rem_euclid(100) + yy;
                        if y < p {
                            y += 100;
                        }
                        y
                    }
                    (None, None) => return Err(DateError::NoMatch),
                };
                let (m, d) = (f.month.unwrap_or(0), f.day.unwrap_or(0));
                let Some(date) = NaiveDate::from_ymd_opt(year, m, d) else {
                    let swapped = f.month_numeric
                        && m > 12
                        && d <= 12
                        && NaiveDate::from_ymd_opt(year, d, m).is_some();
                    return Err(if swapped {
                        DateError::DayMonthOrder
                    } else {
                        DateError::Invalid
                    });
                };
                let time = NaiveTime::from_hms_nano_opt(f.hour, f.minute, f.second, f.nanos)
                    .ok_or(DateError::Invalid)?;
                Ok(date.and_time(time))
            }
        }
    }

    /// Whether this format can hold day and month in either order (both numeric).
    pub fn has_numeric_day_and_month(&self) -> bool {
        match self {
            DateFormat::Pattern { items, .. } => {
                items.iter().any(|i| matches!(i, Item::Month { .. }))
                    && items.iter().any(|i| matches!(i, Item::Day { .. }))
            }
            _ => false,
        }
    }
}

/// The declared formats of one field, with the pivot for two-digit years.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DateFormats {
    pub formats: Vec<DateFormat>,
    pub pivot: Option<i32>,
}

impl DateFormats {
    /// Compile formats; `None` when none are declared.
    pub fn compile(texts: &[String], pivot: Option<i32>) -> Result<Self, FormatError> {
        let formats = texts
            .iter()
            .map(|t| DateFormat::parse(t, pivot))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { formats, pivot })
    }

    /// The formats for FHIR mappings.
    pub fn fhir() -> Self {
        Self {
            formats: vec![DateFormat::Fhir],
            pivot: None,
        }
    }

    /// The formats as the mapping declares them, for messages.
    pub fn describe(&self) -> String {
        self.formats
            .iter()
            .map(DateFormat::text)
            .collect::<Vec<_>>()
            .join(" or ")
    }

    /// Parse a cell with the first format that matches it; the most telling error otherwise.
    pub fn parse(&self, s: &str) -> Result<NaiveDateTime, DateError> {
        let mut worst = DateError::NoMatch;
        for f in &self.formats {
            match f.parse_cell(s, self.pivot) {
                Ok(d) => return Ok(d),
                Err(e) => {
                    if rank(e) > rank(worst) {
                        worst = e;
                    }
                }
            }
        }
        Err(worst)
    }

    /// Index of the first format that parses `s`, for `mapping check --sample`.
    pub fn which(&self, s: &str) -> Option<usize> {
        self.formats
            .iter()
            .position(|f| f.parse_cell(s, self.pivot).is_ok())
    }
}

fn rank(e: DateError) -> u8 {
    match e {
        DateError::NoMatch => 0,
        DateError::TwoDigitYear => 1,
        DateError::Partial => 2,
        DateError::Invalid => 3,
        DateError::DayMonthOrder => 4,
    }
}

#[derive(Default)]
struct Fields {
    year: Option<i32>,
    year2: Option<i32>,
    month: Option<u32>,
    month_numeric: bool,
    day: Option<u32>,
    hour: u32,
    minute: u32,
    second: u32,
    nanos: u32,
}

/// Exactly `n` ASCII digits at `pos`.
fn digits(b: &[u8], pos: &mut usize, min: usize, max: usize) -> Option<u32> {
    let start = *pos;
    let mut v: u32 = 0;
    while *pos < b.len() && *pos - start < max && b[*pos].is_ascii_digit() {
        v = v * 10 + u32::from(b[*pos] - b'0');
        *pos += 1;
    }
    (*pos - start >= min).then_some(v)
}

/// Match the whole of `b` against `items`.
fn fields(items: &[Item], b: &[u8]) -> Option<Fields> {
    let mut f = Fields::default();
    let mut pos = 0usize;
    for item in items {
        match *item {
            Item::Year4 => f.year = Some(digits(b, &mut pos, 4, 4)? as i32),
            Item::Year2 => f.year2 = Some(digits(b, &mut pos, 2, 2)? as i32),
            Item::Month { min } => {
                f.month = Some(digits(b, &mut pos, min as usize, 2)?);
                f.month_numeric = true;
            }
            Item::Day { min } => f.day = Some(digits(b, &mut pos, min as usize, 2)?),
            Item::Hour => f.hour = digits(b, &mut pos, 2, 2)?,
            Item::Minute => f.minute = digits(b, &mut pos, 2, 2)?,
            Item::Second => f.second = digits(b, &mut pos, 2, 2)?,
            Item::Fraction => {
                if b.get(pos) == Some(&b'.') {
                    pos += 1;
                    let start = pos;
                    let v = digits(b, &mut pos, 1, 9)?;
                    let n = pos - start;
                    f.nanos = v * 10u32.pow(9 - n as u32);
                }
            }
            Item::MonthName { full } => {
                let rest = std::str::from_utf8(&b[pos..]).ok()?.to_ascii_lowercase();
                let (i, len) = MONTHS.iter().enumerate().find_map(|(i, m)| {
                    let name = if full { *m } else { &m[..3] };
                    rest.starts_with(name).then_some((i, name.len()))
                })?;
                f.month = Some(i as u32 + 1);
                pos += len;
            }
            Item::Lit(c) => {
                let mut buf = [0u8; 4];
                let s = c.encode_utf8(&mut buf).as_bytes();
                if !b[pos..].starts_with(s) {
                    return None;
                }
                pos += s.len();
            }
        }
    }
    (pos == b.len()).then_some(f)
}

/// Excel serial date (days since 1899-12-30, fraction = time of day).
fn excel_serial(raw: &str) -> Option<NaiveDateTime> {
    if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    let n: f64 = raw.parse().ok()?;
    if !(1.0..2_958_466.0).contains(&n) {
        return None;
    }
    let base = NaiveDate::from_ymd_opt(1899, 12, 30)?.and_hms_opt(0, 0, 0)?;
    let secs = (n * 86_400.0).round() as i64;
    base.checked_add_signed(chrono::Duration::seconds(secs))
}

/// FHIR `date` / `dateTime`, as the local time it names (OMOP keeps local date-times).
fn fhir(s: &str) -> Result<NaiveDateTime, DateError> {
    let b = s.as_bytes();
    let mut pos = 0;
    let year = digits(b, &mut pos, 4, 4).ok_or(DateError::NoMatch)? as i32;
    if pos == b.len() {
        return Err(DateError::Partial);
    }
    if b[pos] != b'-' {
        return Err(DateError::NoMatch);
    }
    pos += 1;
    let month = digits(b, &mut pos, 2, 2).ok_or(DateError::NoMatch)?;
    if pos == b.len() {
        return if (1..=12).contains(&month) {
            Err(DateError::Partial)
        } else {
            Err(DateError::Invalid)
        };
    }
    if b[pos] != b'-' {
        return Err(DateError::NoMatch);
    }
    pos += 1;
    let day = digits(b, &mut pos, 2, 2).ok_or(DateError::NoMatch)?;
    let date = NaiveDate::from_ymd_opt(year, month, day).ok_or(DateError::Invalid)?;
    if pos == b.len() {
        return Ok(date.and_hms_opt(0, 0, 0).expect("midnight"));
    }
    if b[pos] != b'T' {
        return Err(DateError::NoMatch);
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|d| d.naive_local())
        .map_err(|_| DateError::NoMatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(t: &str) -> DateFormats {
        DateFormats::compile(&[t.to_string()], None).unwrap()
    }
    fn d(y: i32, m: u32, day: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(y, m, day)
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap()
    }

    #[test]
    fn whole_cells_only() {
        let dm = f("%d/%m/%Y");
        assert_eq!(dm.parse("07/01/1989"), Ok(d(1989, 1, 7)));
        assert_eq!(dm.parse("7/1/1989"), Err(DateError::NoMatch));
        assert_eq!(dm.parse("07/01/1989 "), Err(DateError::NoMatch));
        assert_eq!(dm.parse("07/01/1989x"), Err(DateError::NoMatch));
        assert_eq!(dm.parse("01/07/89"), Err(DateError::TwoDigitYear));
        assert_eq!(dm.parse("31/02/2019"), Err(DateError::Invalid));
        assert_eq!(dm.parse("12/25/1989"), Err(DateError::DayMonthOrder));
        assert_eq!(dm.parse("00/00/0000"), Err(DateError::Invalid));
        let iso = f("%Y-%m-%d");
        assert_eq!(iso.parse("1993-08-2"), Err(DateError::NoMatch));
        assert_eq!(iso.parse("1993-08-02"), Ok(d(1993, 8, 2)));
        assert_eq!(iso.parse("1893-08-02"), Ok(d(1893, 8, 2)));
        let loose = f("%-m/%-d/%Y");
        assert_eq!(loose.parse("7/1/1989"), Ok(d(1989, 7, 1)));
        assert_eq!(loose.parse("07/01/1989"), Ok(d(1989, 7, 1)));
        assert_eq!(loose.parse("107/1/1989"), Err(DateError::NoMatch));
    }

    #[test]
    fn two_digit_years_need_a_pivot() {
        assert_eq!(
            DateFormat::parse("%d/%m/%y", None),
            Err(FormatError::NoPivot("%d/%m/%y".into()))
        );
        let p = DateFormats::compile(&["%d/%m/%y".into()], Some(1930)).unwrap();
        assert_eq!(p.parse("01/07/89"), Ok(d(1989, 7, 1)));
        assert_eq!(p.parse("01/07/29"), Ok(d(2029, 7, 1)));
        assert_eq!(p.parse("01/07/30"), Ok(d(1930, 7, 1)));
    }

    #[test]
    fn formats_are_checked() {
        assert!(matches!(
            DateFormat::parse("%d/%q/%Y", None),
            Err(FormatError::Unknown(..))
        ));
        assert!(matches!(
            DateFormat::parse("%m/%Y", None),
            Err(FormatError::Incomplete(..))
        ));
        assert!(matches!(
            DateFormat::parse("%d/%m/%Y %", None),
            Err(FormatError::Dangling(..))
        ));
        assert!(matches!(
            DateFormat::parse("%d %d %m %Y", None),
            Err(FormatError::Twice(..))
        ));
    }

    #[test]
    fn times_names_excel_and_fhir() {
        let t = f("%Y-%m-%d %H:%M:%S%.f");
        assert_eq!(
            t.parse("2020-02-01 10:11:12.5").unwrap().to_string(),
            "2020-02-01 10:11:12.500"
        );
        assert_eq!(
            t.parse("2020-02-01 10:11:12").unwrap().to_string(),
            "2020-02-01 10:11:12"
        );
        assert_eq!(t.parse("2020-02-01 25:11:12"), Err(DateError::Invalid));
        assert_eq!(f("%d-%b-%Y").parse("07-JAN-1989"), Ok(d(1989, 1, 7)));
        assert_eq!(f("%d %B %Y").parse("07 january 1989"), Ok(d(1989, 1, 7)));
        assert_eq!(f("excel").parse("43831"), Ok(d(2020, 1, 1)));
        assert_eq!(f("excel").parse("1/1/2020"), Err(DateError::NoMatch));
        let fh = DateFormats::fhir();
        assert_eq!(fh.parse("2024-05-01"), Ok(d(2024, 5, 1)));
        assert_eq!(
            fh.parse("2024-05-01T10:00:00+02:00").unwrap().to_string(),
            "2024-05-01 10:00:00"
        );
        assert_eq!(fh.parse("2024-05"), Err(DateError::Partial));
        assert_eq!(fh.parse("2024"), Err(DateError::Partial));
        assert_eq!(fh.parse("2024-02-30"), Err(DateError::Invalid));
        assert_eq!(fh.parse("May 2024"), Err(DateError::NoMatch));
    }

    #[test]
    fn several_formats_report_the_most_telling_error() {
        let two = DateFormats::compile(&["%Y-%m-%d".into(), "%d/%m/%Y".into()], None).unwrap();
        assert_eq!(two.parse("2020-02-01"), Ok(d(2020, 2, 1)));
        assert_eq!(two.parse("01/02/2020"), Ok(d(2020, 2, 1)));
        assert_eq!(two.parse("02/13/2020"), Err(DateError::DayMonthOrder));
        assert_eq!(two.which("01/02/2020"), Some(1));
        assert_eq!(two.describe(), "%Y-%m-%d or %d/%m/%Y");
    }
}
