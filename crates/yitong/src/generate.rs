//! `yitong seed generate`: writes the seed files deterministically, for every city of the
//! network file.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use yitong_core::Network;

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Directory to write the seed files into.
    #[arg(long, default_value_os_t = crate::default_seeds())]
    out: PathBuf,
    /// The network file whose cities get rows, enabled or not; `network.toml` in `--out` by
    /// default.
    #[arg(long)]
    network: Option<PathBuf>,
    /// The random seed; the committed files were made with the default.
    #[arg(long, default_value_t = 20_261_125)]
    seed: u64,
}

pub fn run(args: GenerateArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let network_file = args
        .network
        .unwrap_or_else(|| args.out.join("network.toml"));
    let network = Network::load(&network_file)
        .with_context(|| format!("cannot load the network file {}", network_file.display()))?;
    yitong_seeds::write_seeds(&args.out, &network, args.seed)
        .context("cannot write the seed files")?;
    for file in yitong_seeds::GENERATED_FILES {
        println!("wrote {}", args.out.join(file).display());
    }
    Ok(())
}
