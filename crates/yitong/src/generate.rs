//! `yitong seed generate`: writes the seed files deterministically.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Directory to write the seed files into.
    #[arg(long, default_value_os_t = crate::default_seeds())]
    out: PathBuf,
    /// The random seed; the committed files were made with the default.
    #[arg(long, default_value_t = 20_261_125)]
    seed: u64,
}

pub fn run(args: GenerateArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    yitong_seeds::write_persons(&args.out, args.seed).context("cannot write persons.csv")?;
    yitong_seeds::write_catalog_seeds(&args.out, args.seed)
        .context("cannot write the catalog seeds")?;
    for file in ["persons.csv", "catalog_items.csv", "policies.csv"] {
        println!("wrote {}", args.out.join(file).display());
    }
    Ok(())
}
