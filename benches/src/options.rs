//! Command-line options of `e2e-latency`.

use anyhow::{bail, Context};

/// Fewest blocks per target: fewer would make the median of blocks meaningless.
pub const MIN_BLOCKS: usize = 5;

pub const USAGE: &str = "\
usage: e2e-latency [--iterations N] [--warmup N] [--blocks N] [--block-warmup N] [--spin]

  --iterations N    round trips per mode in each block (default 2000)
  --warmup N        round trips per mode on each connection before measuring (default 1000)
  --blocks N        blocks per target, run as A B A B ... (default 20, at least 5)
  --block-warmup N  round trips per mode discarded at the start of each block (default 100)
  --spin            one idle-priority busy loop per core while measuring (chrt --idle 0)";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub iterations: usize,
    pub warmup: usize,
    pub blocks: usize,
    pub block_warmup: usize,
    pub spin: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            iterations: 2000,
            warmup: 1000,
            blocks: 20,
            block_warmup: 100,
            spin: false,
        }
    }
}

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    Run(Options),
    Help,
}

/// Parses the arguments after the program name.
///
/// # Errors
/// An unknown flag, a missing or malformed number, zero iterations, or too few blocks.
pub fn parse<I: IntoIterator<Item = String>>(args: I) -> anyhow::Result<Parsed> {
    let mut opts = Options::default();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) => (f.to_owned(), Some(v.to_owned())),
            None => (arg.clone(), None),
        };
        let mut number = |name: &str| -> anyhow::Result<usize> {
            let text = match inline.clone() {
                Some(v) => v,
                None => args
                    .next()
                    .with_context(|| format!("{name} needs a number"))?,
            };
            text.parse::<usize>()
                .with_context(|| format!("{name}: {text:?} is not a whole number"))
        };
        match flag.as_str() {
            "--iterations" => opts.iterations = number("--iterations")?,
            "--warmup" => opts.warmup = number("--warmup")?,
            "--blocks" => opts.blocks = number("--blocks")?,
            "--block-warmup" => opts.block_warmup = number("--block-warmup")?,
            "--spin" if inline.is_none() => opts.spin = true,
            "-h" | "--help" => return Ok(Parsed::Help),
            _ => bail!("unknown argument {arg:?}\n{USAGE}"),
        }
    }
    if opts.iterations == 0 {
        bail!("--iterations must be at least 1");
    }
    if opts.blocks < MIN_BLOCKS {
        bail!("--blocks must be at least {MIN_BLOCKS}");
    }
    Ok(Parsed::Run(opts))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> anyhow::Result<Parsed> {
        parse(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn defaults_without_arguments() {
        assert_eq!(run(&[]).unwrap(), Parsed::Run(Options::default()));
    }

    #[test]
    fn every_flag_in_both_spellings() {
        let parsed = run(&[
            "--iterations",
            "200",
            "--warmup=50",
            "--blocks",
            "6",
            "--block-warmup=0",
            "--spin",
        ])
        .unwrap();
        assert_eq!(
            parsed,
            Parsed::Run(Options {
                iterations: 200,
                warmup: 50,
                blocks: 6,
                block_warmup: 0,
                spin: true,
            })
        );
    }

    #[test]
    fn refusals_name_the_problem() {
        let err = |args: &[&str]| run(args).unwrap_err().to_string();
        assert!(err(&["--blocks", "4"]).contains("at least 5"));
        assert!(err(&["--iterations", "0"]).contains("at least 1"));
        assert!(err(&["--warmup", "x"]).contains("not a whole number"));
        assert!(err(&["--warmup"]).contains("needs a number"));
        assert!(err(&["--fast"]).contains("unknown argument"));
        assert!(err(&["--spin=yes"]).contains("unknown argument"));
        assert_eq!(run(&["--help"]).unwrap(), Parsed::Help);
    }
}
