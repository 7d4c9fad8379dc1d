//! `yitong keygen --city <code>`: fresh secrets for one city's identity node.
//!
//! Prints the three secrets as environment variables for `yitong serve identity`, and the public
//! half of the e-voucher key for the city's `e_voucher_key` in the network file. Keys come from
//! the operating system's random source; nothing is written to disk.

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use clap::Args;
use rand::TryRngCore;
use yitong_core::PoolCode;
use yitong_identity::VoucherSigner;

#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Region code of the city the keys are for.
    #[arg(long)]
    city: String,
}

fn secret() -> anyhow::Result<[u8; 32]> {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng
        .try_fill_bytes(&mut bytes)
        .context("the operating system's random source failed")?;
    Ok(bytes)
}

pub fn run(args: KeygenArgs) -> anyhow::Result<()> {
    let city =
        PoolCode::parse(&args.city).map_err(|invalid| anyhow::anyhow!("--city {invalid}"))?;
    let signing = secret()?;
    let signer = VoucherSigner::new(city, signing);
    println!(
        "# Secrets of city {city}'s identity node: keep them in a secret store, never in git."
    );
    println!("YITONG_PII_SEAL_KEY={}", BASE64.encode(secret()?));
    println!("YITONG_PII_HASH_KEY={}", BASE64.encode(secret()?));
    println!("YITONG_E_VOUCHER_SIGNING_KEY={}", BASE64.encode(signing));
    println!("# Public: the city's entry in the network file every node reads.");
    println!("e_voucher_key = \"{}\"", signer.public_key_base64());
    Ok(())
}
