//! `kiln images`: list the named images in the store.

use kiln_builder::store::Store;

use super::Failure;
use crate::printer::Printer;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print JSON (one array) instead of a table
    #[arg(long)]
    json: bool,
    /// Print only the digests
    #[arg(short, long)]
    quiet: bool,
}

pub fn run(args: Args, printer: &Printer) -> Result<(), Failure> {
    let store = Store::open_default()?;
    let images = store.images()?;
    if args.json {
        let json = serde_json::to_string_pretty(&images).expect("image entries serialise");
        printer.data(&json);
        return Ok(());
    }
    if args.quiet {
        for image in &images {
            printer.data(&image.digest.to_string());
        }
        return Ok(());
    }
    let width = images
        .iter()
        .map(|i| i.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    printer.data(&format!(
        "{:<width$}  {:<19}  {:>10}  CREATED",
        "NAME", "DIGEST", "SIZE"
    ));
    for image in &images {
        let short = format!("sha256:{}", &image.digest.hex()[..12]);
        printer.data(&format!(
            "{:<width$}  {:<19}  {:>10}  {}",
            image.name,
            short,
            human_size(image.size),
            image.created.as_deref().unwrap_or("-")
        ));
    }
    Ok(())
}

/// Sizes as docker prints them: decimal units, three significant digits.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes}B")
    } else {
        format!("{value:.3}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_owned()
            + UNITS[unit]
    }
}

#[cfg(test)]
mod tests {
    use super::human_size;

    #[test]
    fn sizes_like_docker() {
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(1_500), "1.5kB");
        assert_eq!(human_size(4_260_000), "4.26MB");
    }
}
