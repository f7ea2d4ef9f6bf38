//! `loop-gateway-bench [--quick] [--out FILE] [--gateway PATH]`: run the benchmark and print
//! its table (and write its JSON). Build the gateway first: `cargo build --release`.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut opts = loop_gateway_bench::Options::default();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => opts.quick = true,
            "--out" => opts.out = args.next().map(PathBuf::from),
            "--gateway" => opts.gateway = args.next().map(PathBuf::from).unwrap_or(opts.gateway),
            "--only" => opts.only = args.next(),
            "--env" => {
                if let Some((k, v)) = args.next().as_deref().and_then(|kv| kv.split_once('=')) {
                    opts.env.push((k.to_string(), v.to_string()));
                }
            }
            "-h" | "--help" => {
                println!(
                    "usage: loop-gateway-bench [--quick] [--out FILE] [--gateway PATH] [--only NAME] [--env NAME=value]...\n\
                     Runs the gateway binary (default: target/release/loop-gateway) against a\n\
                     local Messages API stand-in and prints the figures; --quick takes seconds."
                );
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("unknown argument {other}; see --help");
                return ExitCode::from(2);
            }
        }
    }
    match loop_gateway_bench::run(&opts) {
        Ok(report) => {
            println!("{}", report.table());
            if let Some(path) = &opts.out {
                if let Err(e) = std::fs::write(path, report.json()) {
                    eprintln!("cannot write {}: {e}", path.display());
                    return ExitCode::FAILURE;
                }
                println!("figures written to {}", path.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("benchmark failed: {e}");
            ExitCode::FAILURE
        }
    }
}
