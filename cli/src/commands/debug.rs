//! `kiln debug parse FILE`: print a Dockerfile's parse tree in BuildKit's dump format.

use std::path::PathBuf;

use kiln_builder::frontend::dockerfile;

use super::Failure;
use crate::printer::Printer;

#[derive(Debug, clap::Subcommand)]
pub enum Args {
    /// Print the parse tree of a Dockerfile as BuildKit's parser tests dump it
    Parse {
        /// The Dockerfile
        file: PathBuf,
    },
}

pub fn run(args: Args, printer: &Printer) -> Result<(), Failure> {
    match args {
        Args::Parse { file } => {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| Failure::new(format!("{}: {e}", file.display())))?;
            let name = file.display().to_string();
            let ast = dockerfile::parse(&text, &name).map_err(|e| {
                let failure = Failure::new(e.to_string());
                match e.hint() {
                    Some(h) => failure.with_hint(h),
                    None => failure,
                }
            })?;
            print!("{}", dockerfile::dump(&ast));
            let _ = printer;
            Ok(())
        }
    }
}
