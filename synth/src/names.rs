//! Fictitious people and places. The lists mix Belgian, European and other names so that the
//! encodings are exercised: some characters (`ọ`, `Ż`, `ı`, `ł`, `ễ`) are outside Windows-1252
//! and the HIS export transliterates them, as such systems do; FHIR and the workbook keep them.

pub(crate) const LAST_NAMES: &[&str] = &[
    "Dubois",
    "Peeters",
    "Janssens",
    "Maes",
    "Lefèvre",
    "Müller",
    "Dupont",
    "Ngọc",
    "Żak",
    "Jacobs",
    "Mertens",
    "Willems",
    "Claes",
    "Goossens",
    "Wouters",
    "De Smet",
    "Lambert",
    "Martin",
    "Dumont",
    "Leclercq",
    "Laurent",
    "Simon",
    "Vandenberghe",
    "Van den Broeck",
    "D'Hondt",
    "Nguyễn",
    "El Amrani",
    "Yılmaz",
    "Kowalska",
    "Öztürk",
    "Šimić",
    "García",
    "Çelik",
    "Desmet",
    "Renard",
    "François",
    "Hermans",
    "Michiels",
    "Pauwels",
    "Verstraete",
    "Lemaître",
    "Gérard",
    "Noël",
    "Bogaert",
    "Van Dyck",
    "Aït Benali",
    "Brabançon",
    "Coppens",
    "Mathieu",
    "Stévenart",
    "Wiśniewska",
    "Fernández",
    "Rossi",
    "Schröder",
    "Ødegaard",
];

pub(crate) const FEMALE_FIRST_NAMES: &[&str] = &[
    "Anaïs",
    "Chloé",
    "Hélène",
    "Zoë",
    "Maëlle",
    "Sofía",
    "Marie",
    "Sophie",
    "Julie",
    "Emma",
    "Louise",
    "Lotte",
    "Fien",
    "Nathalie",
    "Isabelle",
    "Françoise",
    "Agnieszka",
    "Fatima",
    "Aïcha",
    "Inès",
    "Léa",
    "Renée",
    "Ana",
    "Małgorzata",
    "Thị Linh",
    "Annelies",
    "Griet",
    "Kübra",
    "Noémie",
    "Mélanie",
    "Anne-Sophie",
    "Els",
    "Martine",
    "Véronique",
    "Brigitte",
    "Ingrid",
    "Geneviève",
    "Joëlle",
    "Mireille",
    "Saskia",
];

pub(crate) const MALE_FIRST_NAMES: &[&str] = &[
    "Ünal", "Jean", "Luc", "Pieter", "Mehmet", "Rémi", "Jürgen", "Koen", "Benoît", "Ahmed",
];

/// Clinicians named in study-nurse comments (fictitious).
pub(crate) const CLINICIANS: &[&str] = &[
    "Lefèvre",
    "Vandermeulen",
    "Çelik",
    "Hendrickx",
    "Delvaux",
    "Nguyễn",
    "Moreau",
    "De Wilde",
];

/// Belgian postcodes and municipalities.
pub(crate) const PLACES: &[(&str, &str)] = &[
    ("1000", "Bruxelles"),
    ("1030", "Schaerbeek"),
    ("1040", "Etterbeek"),
    ("1050", "Ixelles"),
    ("1070", "Anderlecht"),
    ("1080", "Molenbeek-Saint-Jean"),
    ("1180", "Uccle"),
    ("1190", "Forest"),
    ("1200", "Woluwe-Saint-Lambert"),
    ("1300", "Wavre"),
    ("1348", "Louvain-la-Neuve"),
    ("1370", "Jodoigne"),
    ("1400", "Nivelles"),
    ("1420", "Braine-l'Alleud"),
    ("1500", "Halle"),
    ("1640", "Sint-Genesius-Rode"),
    ("1930", "Zaventem"),
    ("2000", "Antwerpen"),
    ("2800", "Mechelen"),
    ("3000", "Leuven"),
    ("3080", "Tervuren"),
    ("3500", "Hasselt"),
    ("4000", "Liège"),
    ("4800", "Verviers"),
    ("5000", "Namur"),
    ("6000", "Charleroi"),
    ("6700", "Arlon"),
    ("7000", "Mons"),
    ("7190", "Écaussinnes"),
    ("7500", "Tournai"),
    ("8000", "Brugge"),
    ("8500", "Kortrijk"),
    ("9000", "Gent"),
    ("9100", "Sint-Niklaas"),
];

/// Free-text comments without any name.
pub(crate) const PLAIN_COMMENTS: &[&str] = &[
    "",
    "",
    "",
    "",
    "Missed visit W6",
    "Consent re-signed (amendment 2)",
    "Lab values faxed to sponsor",
    "Randomisation delayed (holiday)",
    "Withdrew from QoL questionnaires",
    "CRF query resolved",
    "Transport arranged by the hospital",
];

/// Transliteration of characters outside Windows-1252 / ISO-8859-1, as HIS exports do.
pub(crate) fn transliterate(c: char) -> &'static str {
    match c {
        'ọ' | 'ỏ' | 'ố' | 'ồ' => "o",
        'ễ' | 'ệ' | 'ế' | 'ề' => "e",
        'ị' => "i",
        'ı' => "i",
        'İ' => "I",
        'Ż' | 'Ź' | 'Ž' => "Z",
        'ż' | 'ź' | 'ž' => "z",
        'ł' => "l",
        'Ł' => "L",
        'ć' => "c",
        'Ć' => "C",
        'ś' => "s",
        'Ś' | 'Š' => "S",
        'š' | 'ş' | 'ș' => "s",
        'ř' => "r",
        'ğ' => "g",
        'ń' => "n",
        'ą' => "a",
        'ę' => "e",
        'ț' => "t",
        'Œ' => "OE",
        'œ' => "oe",
        'Ÿ' => "Y",
        '€' => "EUR",
        '–' | '—' => "-",
        '‘' | '’' => "'",
        '“' | '”' => "\"",
        _ => "?",
    }
}

/// ASCII slug of a name (`Hôpital Sainte-Élise` -> `hopital-sainte-elise`).
pub(crate) fn slug(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        let base = match c {
            'à' | 'á' | 'â' | 'ä' | 'ã' | 'å' | 'À' | 'Á' | 'Â' | 'Ä' => 'a',
            'ç' | 'Ç' => 'c',
            'è' | 'é' | 'ê' | 'ë' | 'È' | 'É' | 'Ê' | 'Ë' => 'e',
            'ì' | 'í' | 'î' | 'ï' | 'Î' | 'Ï' => 'i',
            'ò' | 'ó' | 'ô' | 'ö' | 'Ô' | 'Ö' => 'o',
            'ù' | 'ú' | 'û' | 'ü' | 'Û' | 'Ü' => 'u',
            c if c.is_ascii_alphanumeric() => c.to_ascii_lowercase(),
            _ => '-',
        };
        if base == '-' {
            if !out.is_empty() && !out.ends_with('-') {
                out.push('-');
            }
        } else {
            out.push(base);
        }
    }
    while out.ends_with('-') {
        out.pop();
    }
    if out.is_empty() {
        out.push_str("hospital");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        assert_eq!(slug("Hôpital Sainte-Élise"), "hopital-sainte-elise");
        assert_eq!(slug("  AZ Sint-Jan  "), "az-sint-jan");
        assert_eq!(slug("!!"), "hospital");
    }

    #[test]
    fn names_have_no_separator() {
        for s in LAST_NAMES
            .iter()
            .chain(FEMALE_FIRST_NAMES)
            .chain(MALE_FIRST_NAMES)
        {
            assert!(!s.contains(';') && !s.contains('"'));
        }
        for (_, city) in PLACES {
            assert!(!city.contains(';'));
        }
    }
}
