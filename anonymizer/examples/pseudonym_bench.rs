//! Throughput of `Pseudonymiser::person` on one thread.
//!
//! ```text
//! cargo run --release -p registrar-anonymizer --example pseudonym_bench -- [N]
//! ```
//!
//! Generates N (default 10,000,000) synthetic valid NISS numbers up front, then times
//! `person(Niss, ..)` over them and prints `pseudonyms/s`. The key is fixed (32 bytes of
//! 0x42, domain `person`) and the i-th NISS is the 9 digits of `i * 2654435761 mod 10^9`
//! followed by their mod-97 check, so `bench/pseudonyms.sh` can recompute the first and
//! last pseudonyms independently and compare.

use std::fmt::Write as _;
use std::hint::black_box;
use std::time::Instant;

use registrar_anonymizer::{IdentifierType, Key};

fn synthetic_niss(i: u64) -> String {
    let base = (i * 2_654_435_761) % 1_000_000_000;
    format!("{base:09}{:02}", 97 - base % 97)
}

fn main() {
    let n: usize = match std::env::args().nth(1) {
        None => 10_000_000,
        Some(arg) => arg.parse().unwrap_or_else(|_| {
            eprintln!("usage: pseudonym_bench [N]  (N: number of pseudonyms)");
            std::process::exit(2)
        }),
    };
    if n == 0 {
        eprintln!("N must be at least 1");
        std::process::exit(2);
    }

    // All inputs in one buffer of 11-byte records, built before timing.
    let mut buffer = String::with_capacity(n * 11);
    for i in 0..n as u64 {
        write!(buffer, "{}", synthetic_niss(i)).expect("writing to a String");
    }
    let inputs: Vec<&str> = (0..n).map(|i| &buffer[i * 11..(i + 1) * 11]).collect();

    let key = Key::from_bytes([0x42; 32]);
    let pseudonymiser = key.domain("person").expect("valid domain").pseudonymiser();

    let first = pseudonymiser
        .person(IdentifierType::Niss, inputs[0])
        .expect("valid NISS");
    let last = pseudonymiser
        .person(IdentifierType::Niss, inputs[n - 1])
        .expect("valid NISS");

    let start = Instant::now();
    let mut checksum = 0u64;
    for raw in &inputs {
        let p = pseudonymiser
            .person(IdentifierType::Niss, black_box(raw))
            .expect("valid NISS");
        checksum = checksum.wrapping_add(u64::from(p.as_str().as_bytes()[0]));
        black_box(&p);
    }
    let secs = start.elapsed().as_secs_f64();
    black_box(checksum);

    let rate = n as f64 / secs;
    println!("rust: {n} pseudonyms in {secs:.3} s on one thread");
    println!("rust: {rate:.0} pseudonyms/s");
    println!("first: {}", first.as_str());
    println!("last: {}", last.as_str());
}
