//! The leak guard: no text value reaches the registry holding the person's identifiers or
//! names.
//!
//! Every text a mapping would write (a `*_source_value` code, a free-text column, a value
//! looked up in a value or concept map, which may be kept as an unmapped code) is checked,
//! before anything is stored or counted, against:
//!
//! - the row's own identifiers (the `[person] identifiers` columns): an identifier with a
//!   letter is looked for in the text with everything but letters and digits removed
//!   (`MRN-000 1234` finds `mrn0001234`); an all-digit one (at least 5 digits) in the text's
//!   numbers, read across the separators people write in numbers (`.`, `-`, `/`, space);
//! - the row's names (`[person] names = [...]`, columns that are never stored and only
//!   serve this guard): a word of the text equal to a word of a name, case and accents
//!   aside (`MULLER`, `Müller`, `muller`);
//! - any number in the text shaped like a NISS with valid check digits, whoever's it is.
//!
//! A hit refuses the cell with reason code `identifier_in_text`; the reason never quotes the
//! value. What the guard cannot know: a name of someone else, or of the person when the
//! source row carries no name column (declare `names` wherever an export has them).

use super::check::{Compiled, IdSource};
use crate::sources::SourceRow;
use registrar_anonymizer::pseudonym::is_valid_niss;
use std::collections::HashMap;
use unicode_normalization::UnicodeNormalization;

/// The guard of one mapping over one file's header.
#[derive(Debug, Clone, Default)]
pub struct Guard {
    identifiers: Vec<usize>,
    names: Vec<usize>,
    /// The needles of the row last checked (a row has several text fields), with the raw
    /// identifier and name cells they were made from.
    row: Option<(Vec<String>, Needles)>,
}

/// What is looked for in a row's texts.
#[derive(Debug, Clone, Default)]
struct Needles {
    /// All-digit identifiers (at least 5 digits).
    digits: Vec<String>,
    /// Identifiers with a letter (at least 4 characters), letters and digits only, folded.
    alnum: Vec<String>,
    /// The words of the row's names (at least 2 letters), folded.
    name_words: Vec<String>,
}

/// Lower case, accents removed.
fn fold(s: &str) -> String {
    s.nfd()
        .filter(|c| !unicode_normalization::char::is_combining_mark(*c))
        .flat_map(char::to_lowercase)
        .map(|c| match c {
            'ß' => 's',
            'ø' => 'o',
            'ł' => 'l',
            'đ' => 'd',
            'æ' => 'a',
            'œ' => 'o',
            _ => c,
        })
        .collect()
}

/// The words (runs of letters) of a text, folded.
fn words(s: &str) -> impl Iterator<Item = String> + '_ {
    s.split(|c: char| !c.is_alphabetic())
        .filter(|w| !w.is_empty())
        .map(fold)
}

/// Letters and digits only, folded.
fn alnum(s: &str) -> String {
    fold(s).chars().filter(|c| c.is_alphanumeric()).collect()
}

/// The numbers of a text, read across the separators people write in numbers (one `.`,
/// `-`, `/` or space between digit groups): for each run of groups, every concatenation of
/// consecutive groups (`C50 85.01.02-125.55` gives `50`, `5085`, ..., `85010212555`, ...).
fn numbers(s: &str) -> Vec<String> {
    let mut runs: Vec<Vec<String>> = Vec::new();
    let mut groups: Vec<String> = Vec::new();
    let mut cur = String::new();
    let mut pending_sep = false;
    for c in s.chars() {
        if c.is_ascii_digit() {
            cur.push(c);
            pending_sep = false;
        } else if !cur.is_empty() && !pending_sep && matches!(c, '.' | '-' | '/' | ' ') {
            groups.push(std::mem::take(&mut cur));
            pending_sep = true;
        } else {
            if !cur.is_empty() {
                groups.push(std::mem::take(&mut cur));
            }
            if !groups.is_empty() {
                runs.push(std::mem::take(&mut groups));
            }
            pending_sep = false;
        }
    }
    if !cur.is_empty() {
        groups.push(cur);
    }
    if !groups.is_empty() {
        runs.push(groups);
    }
    let mut out = Vec::new();
    for run in runs {
        // A run is short in practice; cap the work on a hostile cell of many groups.
        let run = &run[..run.len().min(64)];
        for i in 0..run.len() {
            let mut n = String::new();
            for g in &run[i..] {
                n.push_str(g);
                if n.len() > 64 {
                    break;
                }
                out.push(n.clone());
            }
        }
    }
    out
}

impl Guard {
    /// The guard of `c` over a file with this header (columns it lacks guard nothing; the
    /// header check reports them).
    pub fn new(c: &Compiled, cols: &HashMap<&str, usize>) -> Guard {
        let identifiers = c
            .identifiers
            .iter()
            .filter_map(|id| match &id.source {
                IdSource::Column(col) => cols.get(col.as_str()).copied(),
                IdSource::RowNumber => None,
            })
            .collect();
        let names = c
            .name_columns
            .iter()
            .filter_map(|n| cols.get(n.as_str()).copied())
            .collect();
        Guard {
            identifiers,
            names,
            row: None,
        }
    }

    fn needles(&self, row: &SourceRow) -> Needles {
        let mut n = Needles::default();
        for raw in self.identifiers.iter().filter_map(|&i| row.fields.get(i)) {
            let id = alnum(raw);
            if id.chars().all(|c| c.is_ascii_digit()) {
                if id.len() >= 5 {
                    n.digits.push(id);
                }
            } else if id.chars().count() >= 4 {
                n.alnum.push(id);
            }
        }
        n.name_words = self
            .names
            .iter()
            .filter_map(|&i| row.fields.get(i))
            .flat_map(|v| words(v).collect::<Vec<_>>())
            .filter(|w| w.chars().count() >= 2)
            .collect();
        n
    }

    /// Whether `text` holds an identifier or a name of the row's person, or a NISS.
    pub fn hits(&mut self, row: &SourceRow, text: &str) -> bool {
        let nums = numbers(text);
        if nums.iter().any(|n| n.len() == 11 && is_valid_niss(n)) {
            return true;
        }
        let same = self.row.as_ref().is_some_and(|(cells, _)| {
            self.identifiers
                .iter()
                .chain(&self.names)
                .map(|&i| row.fields.get(i).map(String::as_str).unwrap_or(""))
                .eq(cells.iter().map(String::as_str))
        });
        if !same {
            let cells = self
                .identifiers
                .iter()
                .chain(&self.names)
                .map(|&i| row.fields.get(i).cloned().unwrap_or_default())
                .collect();
            self.row = Some((cells, self.needles(row)));
        }
        let n = &self.row.as_ref().expect("just set").1;
        if n.digits
            .iter()
            .any(|id| nums.iter().any(|x| x.contains(id.as_str())))
        {
            return true;
        }
        if !n.alnum.is_empty() {
            let t = alnum(text);
            if n.alnum.iter().any(|id| t.contains(id.as_str())) {
                return true;
            }
        }
        !n.name_words.is_empty() && words(text).any(|w| n.name_words.contains(&w))
    }
}

/// Whether a code column's value looks like a code: at most 50 characters, letters, digits
/// and the punctuation codes and units are written with. Anything else (a sentence, a
/// control character, a very long cell) is refused as `not_code_shaped`.
pub fn code_like(s: &str) -> bool {
    s.chars().count() <= 50
        && s.chars()
            .all(|c| c.is_alphanumeric() || " ._-+/()%<>=:,#*'&;[]≥≤µ°²³^".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_read_across_separators() {
        let n = numbers("C50 85.01.02-125.55");
        assert!(n.contains(&"85010212555".to_string()), "{n:?}");
        assert!(n.contains(&"50".to_string()));
        assert_eq!(numbers("a 12 b 3"), vec!["12", "3"]);
        assert_eq!(numbers("1-"), vec!["1"]);
        assert_eq!(
            numbers("12  3"),
            vec!["12", "3"],
            "two separators end a number"
        );
    }

    #[test]
    fn folding_ignores_case_and_accents() {
        assert_eq!(fold("MÜLLER Hélène"), "muller helene");
        assert_eq!(
            words("PTV MÜLLER, boost").collect::<Vec<_>>(),
            ["ptv", "muller", "boost"]
        );
        assert_eq!(alnum("MRN-000 1234"), "mrn0001234");
    }

    #[test]
    fn codes_are_short_and_made_of_code_characters() {
        assert!(code_like("C50.9"));
        assert!(code_like("Ki-67 ≥ 20%"));
        assert!(!code_like("a\u{7}b"));
        assert!(!code_like(&"x".repeat(51)));
    }
}
