//! Scratch driver until `registrar synth` is wired:
//! `cargo run --release -p registrar-synth --example synth -- --patients 1000 --seed 1 --out /tmp/x`.

use clap::Parser;
use registrar_synth::{generate, SynthArgs};

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: SynthArgs,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let start = std::time::Instant::now();
    let report = generate(&cli.args.to_options(), &|done| {
        if done % 10_000 == 0 {
            eprintln!("{done} patients");
        }
    })?;
    eprintln!("done in {:.2?}", start.elapsed());
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
